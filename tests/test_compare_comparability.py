"""Comparability warnings fire on darkened, blurred, rotated, rescaled and colour-cast follow-ups and stay
quiet on a clean pair; colour normalisation; shine and redness."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from lesioncount.compare import demo
from lesioncount.compare.comparability import (
    assess_comparability,
    linear_to_srgb,
    normalise_colour,
    photo_stats,
    srgb_to_linear,
)
from lesioncount.compare.register import register
from lesioncount.compare.secondary import compare_measures, skin_measures


@pytest.fixture(scope="module")
def pair_maker():
    clean = data.astronaut()
    base, planted = demo.baseline(clean, 1)
    base_stats = photo_stats(base)

    def make(**kw):
        fu = demo.follow_up(clean, planted, 2, **kw)
        reg = register(base, fu.image)
        return assess_comparability(base_stats, photo_stats(fu.image), reg), fu

    return make


def test_clean_pair_is_quiet(pair_maker) -> None:
    shape = (512, 512, 3)
    comp, _ = pair_maker(matrix=demo.similarity(shape, shift_px=(5.0, 3.0)))
    assert comp.warnings == ()
    assert comp.comparable and comp.lighting_comparable and comp.score > 0.95
    assert abs(comp.exposure_stops) < 0.1 and 0.9 < comp.sharpness_ratio < 1.1


def test_darkened_follow_up(pair_maker) -> None:
    comp, _ = pair_maker(stops=-1.8)
    assert comp.exposure_stops == pytest.approx(-1.8, abs=0.15)
    assert any("stops darker than baseline" in w for w in comp.warnings)
    assert not comp.lighting_comparable and not comp.comparable
    assert comp.warnings[0].startswith("follow-up is 1.") and "stops darker" in comp.warnings[0]


def test_blurred_follow_up(pair_maker) -> None:
    comp, _ = pair_maker(blur_sigma_px=2.0)
    assert comp.sharpness_ratio < 0.5
    assert any("blurrier than baseline" in w for w in comp.warnings)
    assert not comp.comparable and comp.lighting_comparable  # blur does not spoil colour measures


def test_rotated_follow_up(pair_maker) -> None:
    comp, _ = pair_maker(matrix=demo.similarity((512, 512, 3), rotation_deg=12.0))
    assert comp.rotation_deg == pytest.approx(12.0, abs=0.3)
    assert any("rotated 12° counter-clockwise" in w for w in comp.warnings)
    comp2, _ = pair_maker(matrix=demo.similarity((512, 512, 3), rotation_deg=-7.0))
    assert any("rotated 7° clockwise" in w for w in comp2.warnings)


def test_rescaled_follow_up(pair_maker) -> None:
    comp, _ = pair_maker(matrix=demo.similarity((512, 512, 3), scale=0.7))
    assert comp.scale_ratio == pytest.approx(0.7, abs=0.01)
    assert any("30% smaller in the follow-up" in w for w in comp.warnings)


def test_counted_at_different_face_scales_is_not_comparable() -> None:
    """A re-take zoomed 1.2x is counted at a working scale 1/1.2 as large: consistent, comparable. Counted at
    the baseline's scale instead (its face measured 15% too small), it is not."""
    clean = data.astronaut()
    base, planted = demo.baseline(clean, 1)
    fu = demo.follow_up(clean, planted, 2, matrix=demo.similarity((512, 512, 3), scale=1.2))
    reg = register(base, fu.image)
    assert reg.scale == pytest.approx(1 / 1.2, abs=0.02)
    b, f = photo_stats(base), photo_stats(fu.image)
    ok = assess_comparability(b, f, reg, counting_scales=(1.0, 1 / 1.2))
    assert not any("counted at different scales" in w for w in ok.warnings)
    bad = assess_comparability(b, f, reg, counting_scales=(1.0, 1 / 1.2 * 1.15))
    assert not bad.comparable and bad.score == 0.0
    assert any(
        "measured 15% smaller in the follow-up" in w and "counted at different scales" in w for w in bad.warnings
    )


def test_colour_cast_and_view_mismatch() -> None:
    clean = data.astronaut()
    warm = linear_to_srgb(srgb_to_linear(clean) * np.array([1.25, 1.0, 0.8], np.float32))
    b = photo_stats(clean)
    comp = assess_comparability(b, photo_stats(warm))
    assert any("warmer" in w for w in comp.warnings) and not comp.lighting_comparable
    assert comp.wb_shift_log2[0] == pytest.approx(np.log2(1.25), abs=0.05)
    other = photo_stats(clean, view="left")
    front = photo_stats(clean, view="front")
    mismatch = assess_comparability(front, other)
    assert not mismatch.comparable and mismatch.score == 0.0 and "views differ" in mismatch.warnings[0]


def test_normalise_colour_recovers_exposure_and_white_balance() -> None:
    clean = data.astronaut()
    box = (150.0, 40.0, 160.0, 200.0)
    dark = linear_to_srgb(srgb_to_linear(clean) * np.array([0.45, 0.5, 0.6], np.float32))
    b, f = photo_stats(clean, face_box=box), photo_stats(dark, face_box=box)
    fixed, note = normalise_colour(dark, b, f)
    assert note.startswith("normalised") and "backdrop" in note
    after = assess_comparability(b, photo_stats(fixed, face_box=box))
    # Within 0.1 log2: the two photos' backdrops clip and drop near-black pixels a little differently.
    assert abs(after.exposure_stops) < 0.1 and float(np.hypot(*after.wb_shift_log2)) < 0.1
    far = linear_to_srgb(srgb_to_linear(clean) * 0.1)
    same, note = normalise_colour(far, b, photo_stats(far, face_box=box))
    assert note.startswith("not normalised") and np.array_equal(same, far)


def test_srgb_round_trip() -> None:
    x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert np.array_equal(linear_to_srgb(srgb_to_linear(x)), x)


def test_shine_and_redness() -> None:
    rng = np.random.default_rng(0)
    skin = np.clip(rng.normal([190, 140, 120], 4, (101, 99, 3)), 0, 255).astype(np.uint8)
    mask = np.ones((101, 99), bool)
    plain = skin_measures(skin, mask)
    assert plain is not None and plain.shine_fraction < 0.005
    shiny = skin.copy()
    shiny[10:30, 10:30] = 250  # a desaturated highlight on 400 / 9999 pixels
    s = skin_measures(shiny, mask)
    assert s is not None and s.shine_fraction == pytest.approx(400 / mask.size, abs=0.002)
    redder = skin.copy()
    redder[..., 1] = (redder[..., 1] * 0.85).astype(np.uint8)
    r = skin_measures(redder, mask)
    assert r is not None and r.erythema_index > plain.erythema_index + 5
    assert skin_measures(skin, np.zeros((101, 99), bool)) is None
    with pytest.raises(ValueError, match="does not match"):
        skin_measures(skin, np.ones((10, 10), bool))


def test_secondary_withheld_when_lighting_differs(pair_maker) -> None:
    comp_dark, fu = pair_maker(stops=-1.8)
    m = skin_measures(fu.image, np.ones(fu.image.shape[:2], bool))
    out = compare_measures(m, m, comp_dark)
    assert not out["shown"] and "lighting differs" in out["reason"] and out["erythema_change"] is None
    comp_clean, _ = pair_maker()
    out = compare_measures(m, m, comp_clean)
    assert out["shown"] and out["erythema_change"] == 0.0 and out["caveat"]


@pytest.mark.parametrize("stops", [-1.0, -0.3, -0.2, 0.0, 0.2, 0.3])
def test_known_exposure_changes_read_within_a_sixth_of_a_stop(stops: float) -> None:
    """Through compare_visits: exposure (and white balance) are read on the skin both photos share."""
    import datetime as dt

    from lesioncount.compare import Visit, compare_visits
    from lesioncount.face import analyse_face
    from lesioncount.synth import change_exposure

    clean = data.astronaut()
    box = analyse_face(clean).box
    matrix = demo.similarity(clean.shape, rotation_deg=2.0, scale=1.05)
    moved = demo.follow_up(clean, [], 3, new_counts={}, matrix=matrix).image
    follow = change_exposure(moved, stops)
    day = dt.date(2026, 1, 5)
    visits = [
        Visit(demo.make_result([], clean.shape, face_box=box), clean, day),
        Visit(demo.make_result([], follow.shape, face_box=box), follow, day + dt.timedelta(days=30)),
    ]
    comp = compare_visits(visits).pairs[0].comparability
    assert comp is not None
    assert abs(comp.exposure_stops - stops) <= 0.15, comp.exposure_stops
    assert max(abs(v) for v in comp.wb_shift_log2) < 0.1  # exposure alone: no colour cast read
    if abs(stops) < 0.33:
        assert not any("stops" in w for w in comp.warnings) and not any("colour balance" in w for w in comp.warnings)


@pytest.mark.slow
@pytest.mark.shared_data
def test_exposure_of_real_retakes_reads_within_a_sixth_of_a_stop(acne04) -> None:
    """ACNE04 half faces, each re-taken (rotated, zoomed, JPEG) at a known exposure change."""
    import datetime as dt

    from lesioncount.compare import Visit, compare_visits
    from lesioncount.evaluate.retake import retake
    from lesioncount.io import read_image
    from lesioncount.pipeline import LesionCounter
    from lesioncount.synth import change_exposure

    counter = LesionCounter(threads=2)
    errors = []
    photos = sorted((acne04 / "valid").glob("*.jpg"))[::40]  # 8 photos
    for k, path in enumerate(photos):
        image = read_image(path)
        stops = (-1.0, -0.3, -0.2, 0.2, 0.3)[k % 5]
        again = change_exposure(retake(image, np.random.default_rng(k), max_stops=0.0).image, stops)
        day = dt.date(2026, 1, 5)
        visits = [Visit(counter.count(image), image, day), Visit(counter.count(again), again, day + dt.timedelta(30))]
        comp = compare_visits(visits).pairs[0].comparability
        if comp is not None:
            errors.append(comp.exposure_stops - stops)
    assert len(errors) >= 6
    assert max(abs(e) for e in errors) <= 0.15, errors
