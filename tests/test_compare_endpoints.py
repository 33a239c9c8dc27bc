"""Endpoints on hand-computed cases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lesioncount.endpoints import (
    Change,
    contraindication_warnings,
    count_change,
    durability_curve,
    grade_change,
    is_botulinum_toxin,
    region_change,
    responder_flags,
)


def test_count_change_hand_computed() -> None:
    ch = count_change(
        {"inflammatory": 40, "comedone": 60, "scar": 5, "total_acne": 100},
        {"inflammatory": 18, "comedone": 66, "scar": 5},
    )
    assert ch["inflammatory"].absolute == -22 and ch["inflammatory"].percent == pytest.approx(-55.0)
    assert ch["comedone"].absolute == 6 and ch["comedone"].percent == pytest.approx(10.0)
    assert ch["scar"].percent == 0.0
    assert ch["total_acne"] == Change(100, 84)  # follow-up total derived from its classes
    assert ch["total_acne"].percent == pytest.approx(-16.0)
    assert Change(0, 3).percent is None and Change(0, 3).absolute == 3
    assert Change(0, 3).to_dict() == {
        "baseline": 0,
        "followup": 3,
        "absolute": 3,
        "percent": None,
        "within_retest_noise": False,
    }


def test_region_change_includes_regions_of_either_visit() -> None:
    rc = region_change({"nose": {"inflammatory": 4}}, {"chin": {"comedone": 2}})
    assert set(rc) == {"nose", "chin"}
    assert rc["nose"]["inflammatory"] == Change(4, 0) and rc["chin"]["comedone"] == Change(0, 2)


def test_responder_flags() -> None:
    ch = count_change({"inflammatory": 30, "comedone": 20, "scar": 0}, {"inflammatory": 15, "comedone": 11, "scar": 2})
    flags = responder_flags(ch)
    assert flags["inflammatory"] is True  # exactly -50% counts
    assert flags["comedone"] is False  # -45%
    assert flags["scar"] is None  # baseline 0: undefined
    assert responder_flags(ch, threshold_pct=40)["comedone"] is True


def test_grade_change() -> None:
    b = {"hayashi": {"grade": 2, "label": "severe", "n_lesions": 30}, "gags": {"score": 20, "label": "moderate"}}
    f = {"hayashi": {"grade": 1, "label": "moderate", "n_lesions": 10}, "gags": {"score": 9, "label": "mild"}}
    g = grade_change(b, f)
    assert g["hayashi"]["change"] == -1 and g["gags"]["change"] == -11 and g["gags"]["followup_label"] == "mild"
    assert grade_change(b, {"hayashi": f["hayashi"], "gags": None})["gags"] is None


def test_durability_rebound_after_toxin() -> None:
    # Baseline 40, nadir 10 at day 60 (-75%), 18 at day 150, 28 at day 200: improvement 30, half is 15.
    d = durability_curve([40, 20, 10, 18, 28], [0, 30, 60, 150, 200], treatment="Botox 20 U forehead", age_years=30)
    assert d.nadir_index == 2 and d.best_reduction_pct == pytest.approx(75.0)
    assert d.percent_change == (0.0, -50.0, -75.0, -55.0, -30.0)
    assert d.rebound and d.rebound_index == 4  # 18 - 10 = 8 < 15; 28 - 10 = 18 >= 15
    assert d.regained_fraction == pytest.approx(18 / 30)
    # Slope from nadir to last visit: 18 lesions / 140 days; 30 to regain -> day 60 + 30 * 140 / 18.
    assert d.days_to_baseline == pytest.approx(60 + 30 * 140 / 18)
    assert d.hint is not None and "re-treatment" in d.hint and "botulinum" in d.hint


def test_durability_rising_but_not_yet_rebound_and_sustained() -> None:
    d = durability_curve([40, 10, 14], [0, 60, 120])
    assert not d.rebound and d.hint is not None and "rising again" in d.hint
    assert d.days_to_baseline == pytest.approx(60 + 30 * 60 / 4)
    sustained = durability_curve([40, 12, 10, 9], [0, 30, 60, 90])
    assert not sustained.rebound and sustained.hint is None and sustained.nadir_index == 3
    watch = durability_curve(
        [40, 12, 10], [0, 60, 130], treatment="onabotulinumtoxinA", days_since_treatment=130, age_years=30
    )
    assert watch.hint is not None and "4-6 months" in watch.hint
    # The minimum-lesion rule stops a 1 -> 2 wobble from being called a rebound.
    assert not durability_curve([3, 1, 2]).rebound
    # No improvement: nothing to rebound from.
    flat = durability_curve([0, 0, 3])
    assert not flat.rebound and flat.best_reduction_pct is None and flat.regained_fraction is None


@pytest.mark.parametrize("age", [None, 16, 17.9])
def test_no_treatment_is_suggested_under_18_or_at_an_unknown_age(age: float | None) -> None:
    toxin = durability_curve([40, 20, 10, 18, 28], [0, 30, 60, 150, 200], treatment="Botox 20 U", age_years=age)
    other = durability_curve([40, 20, 10, 18, 28], [0, 30, 60, 150, 200], treatment="doxycycline", age_years=age)
    for d in (toxin, other):
        assert d.rebound and d.hint is not None and "climbing back" in d.hint  # the facts stay
        assert "re-treatment" not in d.hint and "consider" not in d.hint and "no treatment is suggested" in d.hint
    watch = durability_curve(
        [40, 12, 10], [0, 60, 130], treatment="onabotulinumtoxinA", days_since_treatment=130, age_years=age
    )
    assert watch.hint is None
    adult = durability_curve([40, 20, 10, 18, 28], [0, 30, 60, 150, 200], treatment="doxycycline", age_years=18)
    assert adult.hint is not None and "consider re-treatment" in adult.hint


def test_durability_errors() -> None:
    with pytest.raises(ValueError, match="at least 3 visits"):
        durability_curve([4, 2])
    with pytest.raises(ValueError, match="days has 2 entries"):
        durability_curve([4, 2, 1], [0, 1])
    with pytest.raises(ValueError, match="negative"):
        durability_curve([4, -2, 1])


def test_toxin_under_18_warning() -> None:
    assert is_botulinum_toxin("Botox 20U") and is_botulinum_toxin("incobotulinumtoxinA (Xeomin)")
    assert not is_botulinum_toxin("isotretinoin 20 mg") and not is_botulinum_toxin(None)
    w = contraindication_warnings(
        [("botulinum toxin 30 U", 16, dt.date(2026, 3, 1)), ("botox", 25, None), ("doxycycline", 15, None)]
    )
    assert len(w) == 1 and "aged 16" in w[0] and "contraindicated under 18" in w[0] and "2026-03-01" in w[0]
    assert contraindication_warnings([("botox", None, None)]) == []  # age unknown: no claim either way


@given(st.integers(0, 200), st.integers(0, 200))
def test_change_properties(b: int, f: int) -> None:
    c = Change(b, f)
    assert c.absolute == f - b
    if b == 0:
        assert c.percent is None
    else:
        assert c.percent is not None and np.sign(c.percent) == np.sign(c.absolute) and c.percent >= -100.0
        assert responder_flags({"x": c})["x"] == (f <= 0.5 * b)


@given(st.lists(st.integers(0, 80), min_size=3, max_size=8))
def test_durability_properties(counts: list[int]) -> None:
    d = durability_curve(counts)
    assert d.counts[d.nadir_index] == min(counts[1:]) and d.nadir_index >= 1
    if sorted(counts[1:], reverse=True) == counts[1:]:  # never rising after the first follow-up: no rebound
        assert not d.rebound
    if d.rebound:
        k = d.rebound_index
        assert k is not None and k > d.nadir_index and counts[k] - counts[d.nadir_index] >= 3


def test_rebound_above_baseline_wording() -> None:
    d = durability_curve([6, 2, 9], [0, 60, 170])
    assert d.rebound and d.regained_fraction == pytest.approx(7 / 4)
    assert d.hint is not None and d.hint.startswith("inflammatory lesions are back at or above baseline (6 at baseline")


def test_toxin_warning_is_said_once_for_many_visits() -> None:
    visits = [("botox 20 U", 16, dt.date(2026, 1, d)) for d in range(1, 9)]
    w = contraindication_warnings(visits)
    assert len(w) == 1 and w[0].count("2026-01-0") == 8 and "aged 16" in w[0]


def test_changes_within_retest_noise_are_flagged() -> None:
    from lesioncount.endpoints import Change

    assert Change(10, 12).within_retest_noise and not Change(10, 13).within_retest_noise  # max(2, 1.5)
    assert Change(40, 46).within_retest_noise and not Change(40, 47).within_retest_noise  # 15% of 40 = 6
    assert Change(0, 0).within_retest_noise and Change(0, 2).to_dict()["within_retest_noise"]


@pytest.mark.parametrize(
    "text", ["BTX-A 20 U", "btx", "BoNT/A", "BTA glabella", "Nuceiva", "Alluzience", "Meditoxin", "Nabota", "Letybo"]
)
def test_toxin_abbreviations_and_brands_are_recognised(text: str) -> None:
    assert is_botulinum_toxin(text)


@pytest.mark.parametrize("text", ["doxycycline", "isotretinoin", "benzoyl peroxide", "BPO 5%", "tretinoin"])
def test_other_treatments_are_not_toxin(text: str) -> None:
    assert not is_botulinum_toxin(text)
