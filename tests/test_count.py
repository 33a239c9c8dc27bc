from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lesioncount.count import (
    count_by_class,
    count_by_region,
    decode_lesions,
    find_peaks,
    gags_label,
    gags_score,
    grades,
    hayashi_grade,
    soft_count,
    strongest_acne,
)
from lesioncount.types import Lesion


def _les(cls: str, region: str = "other", x: float = 0.0) -> Lesion:
    return Lesion(cls, x, 0.0, 1.0, (0.0, 0.0, 1.0, 1.0), 0.9, region)


def test_find_peaks_golden() -> None:
    prob = np.zeros((7, 9), np.float32)
    prob[1, 2] = 0.9
    prob[5, 6] = 0.5
    prob[5, 7] = 0.4  # neighbour of a higher peak: not a peak
    prob[3, 8] = 0.2  # under the threshold
    peaks = find_peaks(prob, 0.3)
    np.testing.assert_allclose(peaks, [[2, 1, 0.9], [6, 5, 0.5]])


def test_plateau_gives_one_peak_at_its_centroid() -> None:
    prob = np.zeros((6, 6), np.float32)
    prob[2, 2:4] = 0.6  # two equal neighbours (what bf16 inference produces)
    peaks = find_peaks(prob, 0.1)
    assert len(peaks) == 1
    np.testing.assert_allclose(peaks[0], [2.5, 2.0, 0.6])


def test_find_peaks_matches_scipy_maximum_filter_on_random_maps() -> None:
    rng = np.random.default_rng(3)
    prob = rng.random((40, 50)).astype(np.float32)  # ties have probability ~0
    mine = {(int(x), int(y)) for x, y, _ in find_peaks(prob, 0.5)}
    ref = (prob == ndimage.maximum_filter(prob, size=3, mode="nearest")) & (prob >= 0.5)
    assert mine == {(int(x), int(y)) for y, x in zip(*np.nonzero(ref), strict=True)}


def test_find_peaks_edge_cases() -> None:
    assert find_peaks(np.zeros((0, 0), np.float32), 0.1).shape == (0, 3)
    assert find_peaks(np.zeros((5, 5), np.float32), 0.1).shape == (0, 3)
    one = np.zeros((1, 1), np.float32) + 0.8
    assert len(find_peaks(one, 0.5)) == 1
    with pytest.raises(ValueError, match="HxW"):
        find_peaks(np.zeros((2, 3, 3), np.float32), 0.1)
    prob = np.zeros((5, 5), np.float32)
    prob[2, 2] = 0.5
    before = prob.copy()
    find_peaks(prob, 0.1)
    np.testing.assert_array_equal(prob, before)


def test_decode_lesions_best_class_wins_and_maps_to_input_pixels() -> None:
    heat = np.zeros((3, 8, 8), np.float32)
    heat[0, 4, 3] = 0.7
    heat[1, 4, 3] = 0.4  # same place, weaker class: dropped
    heat[2, 1, 6] = 0.5
    log_size = np.zeros((2, 8, 8), np.float32)
    log_size[:, 4, 3] = np.log([10.0, 6.0])
    out = decode_lesions(heat, log_size, {"inflammatory": 0.3, "comedone": 0.3, "scar": 0.3}, stride=2)
    assert [o[0] for o in out] == ["inflammatory", "scar"]
    cls, x, y, w, h, s = out[0]
    assert (x, y) == (7.0, 9.0) and w == pytest.approx(10) and h == pytest.approx(6) and s == pytest.approx(0.7)


def test_plausible_grades_span_the_retake_band() -> None:
    from lesioncount.count import hayashi_plausible_grades

    # max(2 lesions, 15%) each way: 4 could be 6 (moderate); 10 stays moderate; 18 could be 21 (severe);
    # 0 stays mild; 60 could be 51 or 69, both very severe; 45 could be 51.75 -> 52 (very severe).
    assert hayashi_plausible_grades(4) == [0, 1]
    assert hayashi_plausible_grades(10) == [1]
    assert hayashi_plausible_grades(18) == [1, 2]
    assert hayashi_plausible_grades(0) == [0]
    assert hayashi_plausible_grades(60) == [3]
    assert hayashi_plausible_grades(45) == [2, 3]


def test_grades_say_when_a_grade_is_borderline() -> None:
    near = grades([_les("inflammatory", "other")] * 5, regions_known=False)["hayashi"]
    clear = grades([_les("inflammatory", "other")] * 12, regions_known=False)["hayashi"]
    assert near["grade"] == 0 and near["borderline"] and near["plausible_grades"] == [0, 1]
    assert clear["grade"] == 1 and not clear["borderline"] and clear["plausible_grades"] == [1]


def test_hayashi_bounds() -> None:
    assert [hayashi_grade(n) for n in (0, 5, 6, 20, 21, 50, 51)] == [0, 0, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError):
        hayashi_grade(-1)


def test_gags_worst_lesion_times_weight() -> None:
    lesions = [
        _les("comedone", "forehead"),
        _les("inflammatory", "forehead"),
        _les("comedone", "nose"),
        _les("inflammatory", "other"),
        _les("scar", "chin"),
    ]
    assert gags_score(lesions) == 2 * 2 + 1 * 1
    assert gags_label(0) == "none" and gags_label(18) == "mild" and gags_label(19) == "moderate"
    assert gags_label(31) == "severe" and gags_label(39) == "very severe"


def test_counts_by_class_and_region() -> None:
    lesions = [_les("comedone", "nose"), _les("inflammatory", "nose"), _les("scar", "chin")]
    c = count_by_class(lesions)
    assert c == {"inflammatory": 1, "comedone": 1, "scar": 1, "total_acne": 2}
    r = count_by_region(lesions)
    assert r["nose"]["total_acne"] == 2 and r["chin"]["scar"] == 1 and r["forehead"]["total_acne"] == 0
    g = grades(lesions, regions_known=False)
    assert g["gags"] is None and g["hayashi"]["grade"] == 0
    assert count_by_class([]) == {"inflammatory": 0, "comedone": 0, "scar": 0, "total_acne": 0}


def test_soft_count_golden_values() -> None:
    """Each peak counts sigmoid((score - threshold) / softness); softness 0 is the hard count."""
    scores = [0.9, 0.5, 0.1]
    assert soft_count(scores, 0.5, 0.1) == pytest.approx(1 / (1 + np.exp(-4)) + 0.5 + 1 / (1 + np.exp(4)))
    assert soft_count(scores, 0.5, 0.0) == 2.0  # reaching the threshold counts
    assert soft_count(scores, 0.5, 1e-6) == pytest.approx(1.5)  # the peak on the threshold is a coin toss
    assert soft_count([], 0.5, 0.1) == 0.0
    assert soft_count([1e6, -1e6], 0.5, 1e-3) == pytest.approx(1.0)  # no overflow far from the threshold


def test_soft_count_moves_by_a_fraction_where_the_hard_count_jumps() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.05, 0.4, 200)
    nudged = scores + rng.normal(0, 0.01, scores.size)  # a re-take nudges every score a little
    hard = abs(soft_count(nudged, 0.15, 0.0) - soft_count(scores, 0.15, 0.0))
    soft = abs(soft_count(nudged, 0.15, 0.03) - soft_count(scores, 0.15, 0.03))
    assert soft < hard
    assert soft_count(scores + 0.01, 0.15, 0.03) > soft_count(scores, 0.15, 0.03)  # monotone in every score


def test_strongest_acne_keeps_other_classes_and_reading_order() -> None:
    def les(cls: str, x: float, y: float, score: float) -> Lesion:
        return Lesion(cls, x, y, 1.0, (x, y, 1.0, 1.0), score)

    found = [les("comedone", 5, 1, 0.2), les("inflammatory", 1, 9, 0.9), les("scar", 3, 3, 0.05)]
    found += [les("inflammatory", 2, 1, 0.4)]
    kept, left = strongest_acne(found, 2)
    assert [(k.cls, k.score) for k in kept] == [("inflammatory", 0.4), ("scar", 0.05), ("inflammatory", 0.9)]
    assert [k.score for k in left] == [0.2]
    kept, left = strongest_acne(found, 1)
    assert [k.score for k in kept] == [0.05, 0.9] and [k.score for k in left] == [0.4, 0.2]
    kept, left = strongest_acne(found, 0)
    assert [k.cls for k in kept] == ["scar"] and len(left) == 3
    assert strongest_acne(found, 10)[0] == strongest_acne(found, 3)[0]
    assert strongest_acne([], 3) == ([], [])
