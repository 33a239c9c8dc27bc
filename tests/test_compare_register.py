"""Registration and lesion matching on synthetic visit series with known lesion fates (no model)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data

from lesioncount.compare import demo
from lesioncount.compare.match import default_tolerance_px, match_lesions
from lesioncount.compare.register import invert, map_points, register, warp_to_base
from lesioncount.types import Lesion


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def series(clean: np.ndarray) -> tuple[np.ndarray, list, list[Lesion]]:
    base, planted = demo.baseline(clean, 1)
    assert len(planted) >= 12
    h, w = base.shape[:2]
    return base, planted, [demo.to_lesion(p, w, h) for p in planted]


CASES = {
    "clean": dict(),
    "shift": dict(shift_px=(20.0, -12.0)),
    "rotate": dict(rotation_deg=8.0, shift_px=(6.0, 4.0)),
    "rotate-ccw-scale-up": dict(rotation_deg=-5.0, scale=1.08),
    "scale-down": dict(scale=0.88, shift_px=(-10.0, 8.0)),
}
PHOTOMETRIC = {"same": (0.0, 0.0), "darker": (-1.5, 0.0), "brighter-blurred": (0.8, 1.5)}


@pytest.mark.parametrize("photo", list(PHOTOMETRIC))
@pytest.mark.parametrize("case", list(CASES))
def test_series_is_registered_and_matched_exactly(clean, series, case, photo) -> None:
    base, planted, base_lesions = series
    stops, blur = PHOTOMETRIC[photo]
    m_true = demo.similarity(clean.shape, **CASES[case])
    fu = demo.follow_up(clean, planted, 7, matrix=m_true, stops=stops, blur_sigma_px=blur)
    base_copy, follow_copy = base.copy(), fu.image.copy()
    reg = register(base, fu.image)
    assert np.array_equal(base, base_copy) and np.array_equal(fu.image, follow_copy)  # inputs untouched
    # The recovered transform maps every true follow-up lesion back onto its baseline place.
    back = map_points(reg.affine, [(les.x, les.y) for les in fu.lesions])
    truth = map_points(invert(m_true), [(les.x, les.y) for les in fu.lesions])
    assert np.abs(back - truth).max() < 1.0
    assert reg.quality > 0.95 and reg.quality_label == "good"
    assert reg.method == "features+ecc"
    assert reg.rotation_deg == pytest.approx(CASES[case].get("rotation_deg", 0.0), abs=0.3)
    assert 1 / reg.scale == pytest.approx(CASES[case].get("scale", 1.0), abs=0.01)

    match = match_lesions(
        base_lesions, fu.lesions, reg.matrix, tolerance_px=6.0, base_shape=base.shape, follow_shape=fu.image.shape
    )
    assert match.pairs == tuple(sorted(fu.persisting))
    assert match.resolved == fu.resolved
    assert match.new == fu.new
    assert match.base_out_of_view == () and match.follow_out_of_view == ()
    assert max(match.distances_px) < 1.0


def test_tally_per_class_and_region(clean, series) -> None:
    base, planted, base_lesions = series
    fu = demo.follow_up(clean, planted, 3, matrix=demo.similarity(clean.shape, shift_px=(5.0, 5.0)))
    match = match_lesions(base_lesions, fu.lesions, register(base, fu.image).matrix, tolerance_px=6.0)
    tally = match.tally()
    for cls in ("inflammatory", "comedone", "scar"):
        assert tally[cls]["resolved"] == sum(base_lesions[i].cls == cls for i in fu.resolved)
        assert tally[cls]["persisting"] == sum(base_lesions[i].cls == cls for i, _ in fu.persisting)
        assert tally[cls]["new"] == sum(fu.lesions[j].cls == cls for j in fu.new)
    assert tally["total_acne"]["new"] == tally["inflammatory"]["new"] + tally["comedone"]["new"]
    by_region = match.tally_by_region()
    total = sum(
        by_region[r][c][s] for r in by_region for c in ("inflammatory", "comedone", "scar") for s in by_region[r][c]
    )
    assert total == len(fu.resolved) + len(fu.persisting) + len(fu.new)
    assert match.status_of_base().count("persisting") == len(fu.persisting)
    assert match.status_of_follow().count("new") == len(fu.new)


def test_lesions_pushed_out_of_frame_are_not_called_resolved(clean, series) -> None:
    base, planted, base_lesions = series
    m_true = demo.similarity(clean.shape, shift_px=(150.0, 0.0))
    fu = demo.follow_up(clean, planted, 5, matrix=m_true, keep=1.0, new_counts={"papule": 0})
    fu_in = [les for les in fu.lesions if les.x < clean.shape[1] - 3]
    reg = register(base, fu.image)
    match = match_lesions(
        base_lesions, fu_in, reg.matrix, tolerance_px=6.0, base_shape=base.shape, follow_shape=fu.image.shape
    )
    assert match.resolved == ()
    assert len(match.base_out_of_view) == len(base_lesions) - len(fu_in)
    assert len(match.pairs) == len(fu_in)


def _les(cls: str, x: float, y: float) -> Lesion:
    return Lesion(cls=cls, x=x, y=y, area_px=10.0, bbox=(x - 2, y - 2, 4, 4), score=0.9, region="nose")


def test_hungarian_beats_greedy_and_respects_tolerance_and_class() -> None:
    # Greedy nearest-first would pair b0-f0 (distance 1) and leave b1 unmatched; the optimum pairs both.
    base = [_les("inflammatory", 0, 0), _les("inflammatory", 4, 0), _les("comedone", 50, 50)]
    follow = [_les("inflammatory", 1, 0), _les("inflammatory", -3, 0), _les("inflammatory", 50, 50)]
    m = match_lesions(base, follow, tolerance_px=4.0)
    assert m.pairs == ((0, 1), (1, 0))
    assert m.distances_px == (3.0, 3.0)
    # Class changed: never paired as the same lesion, and not called resolved and new either (the model saw
    # something there in both photos): uncertain; the counts per class still show the change.
    assert m.resolved == () and m.new == () and m.base_uncertain == (2,) and m.follow_uncertain == (2,)
    assert match_lesions(base, follow, tolerance_px=2.0).pairs == ((0, 0),)


def test_hysteresis_a_lesion_just_under_the_threshold_is_neither_resolved_nor_new() -> None:
    base = [_les("inflammatory", 10, 10), _les("inflammatory", 60, 60)]
    follow = [_les("inflammatory", 100, 100)]
    plain = match_lesions(base, follow, tolerance_px=4.0)
    assert plain.resolved == (0, 1) and plain.new == (0,)
    # The follow-up's model saw the first lesion just under its threshold (3 px away), the baseline's saw
    # the follow-up's lesion so; the second baseline lesion has nothing near it: it resolved.
    m = match_lesions(
        base,
        follow,
        tolerance_px=4.0,
        follow_near=[_les("comedone", 13, 10), _les("inflammatory", 60, 66)],  # 6 px: beyond the tolerance
        base_near=[_les("inflammatory", 101, 99)],
    )
    assert m.resolved == (1,) and m.new == () and m.base_uncertain == (0,) and m.follow_uncertain == (0,)
    assert m.status_of_base() == ["uncertain", "resolved"] and m.status_of_follow() == ["uncertain"]
    t = m.tally()["total_acne"]
    assert (t["resolved"], t["new"], t["uncertain"], t["persisting"]) == (1, 0, 2, 0)


def test_empty_and_bad_inputs() -> None:
    m = match_lesions([], [])
    assert m.pairs == () and m.resolved == () and m.new == ()
    assert match_lesions([_les("scar", 1, 1)], []).resolved == (0,)
    with pytest.raises(ValueError, match="tolerance_px must be positive"):
        match_lesions([], [], tolerance_px=0)
    with pytest.raises(ValueError, match="2x3"):
        match_lesions([], [], np.eye(3))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        register(np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_default_tolerance() -> None:
    assert default_tolerance_px((0, 0, 100, 1000), None) == pytest.approx(20.0)
    assert default_tolerance_px(None, (300, 400, 3)) == pytest.approx(5.0)
    assert default_tolerance_px((0, 0, 10, 10), None) == 3.0


def test_flat_images_fall_back_without_crashing() -> None:
    flat = np.full((101, 99, 3), 128, np.uint8)
    reg = register(flat, flat, base_box=(10, 10, 50, 60), follow_box=(20, 10, 50, 60))
    assert reg.method == "face-box"  # no features, and ECC cannot converge on a flat image
    assert reg.affine[0, 2] == pytest.approx(-10.0, abs=1e-6)
    assert register(flat, flat).method == "identity"


def test_warp_to_base_footprint(clean) -> None:
    m_true = demo.similarity(clean.shape, shift_px=(40.0, 0.0))
    follow = cv2.warpAffine(clean, m_true, (512, 512))
    reg = register(clean, follow)
    warped, valid = warp_to_base(follow, reg, clean.shape)
    assert warped.shape == clean.shape and valid.dtype == bool
    assert not valid[:, -30:].any() and valid[:, :460].all()


def test_mirrored_follow_up_is_registered_and_flagged(clean, series) -> None:
    from lesioncount.compare.comparability import assess_comparability, photo_stats

    base, planted, base_lesions = series
    w = clean.shape[1]
    mirror = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]])
    fu = demo.follow_up(clean, planted, 4, matrix=mirror)
    reg = register(base, fu.image)
    assert reg.mirrored and reg.quality > 0.95 and reg.to_dict()["mirrored"] is True
    assert reg.rotation_deg == pytest.approx(0.0, abs=0.3)
    match = match_lesions(base_lesions, fu.lesions, reg.matrix, tolerance_px=6.0)
    assert match.pairs == tuple(sorted(fu.persisting)) and match.new == fu.new
    comp = assess_comparability(photo_stats(base), photo_stats(fu.image), reg)
    assert any("mirror image" in w for w in comp.warnings)
    assert not register(base, base).mirrored


def test_non_square_textured_images_and_tiny_lesions() -> None:
    rng = np.random.default_rng(3)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (99, 101, 3), dtype=np.uint8), (0, 0), 1.0)
    m_true = demo.similarity(tex.shape, shift_px=(3.0, -2.0))
    follow = cv2.warpAffine(tex, m_true, (101, 99), borderMode=cv2.BORDER_REFLECT)
    reg = register(tex, follow)
    assert reg.method == "features+ecc" and reg.quality > 0.6  # the reflected border strip does not match
    inner = [(30.0, 40.0), (70.0, 60.0)]
    back = map_points(reg.affine, map_points(m_true, inner))
    assert np.abs(back - np.array(inner)).max() < 1.0
    # 1-pixel lesions match like any other.
    tiny = [Lesion("comedone", x, y, 1.0, (x, y, 1.0, 1.0), 0.5) for x, y in inner]
    moved = [Lesion("comedone", float(x), float(y), 1.0, (x, y, 1.0, 1.0), 0.5) for x, y in map_points(m_true, inner)]
    assert match_lesions(tiny, moved, reg.matrix, tolerance_px=2.0).pairs == ((0, 0), (1, 1))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 25),
    keep=st.floats(0.0, 1.0),
    n_new=st.integers(0, 10),
    rot=st.floats(-30, 30),
    scale=st.floats(0.7, 1.4),
    seed=st.integers(0, 2**16),
)
def test_matching_recovers_fates_under_any_known_similarity(n, keep, n_new, rot, scale, seed) -> None:
    """Property: with the true transform, lesions at least 4 tolerances apart are matched exactly."""
    rng = np.random.default_rng(seed)
    pts: list[tuple[float, float]] = []
    while len(pts) < n + n_new:
        p = tuple(rng.uniform(50, 450, 2))
        if all(np.hypot(p[0] - q[0], p[1] - q[1]) > 24 for q in pts):
            pts.append(p)  # type: ignore[arg-type]
    classes = [str(rng.choice(["inflammatory", "comedone", "scar"])) for _ in pts]
    base = [Lesion(classes[i], *pts[i], 20.0, (pts[i][0] - 2, pts[i][1] - 2, 4, 4), 0.9) for i in range(n)]
    kept = [i for i in range(n) if rng.random() < keep]
    m = demo.similarity((512, 512, 3), rotation_deg=rot, scale=scale)
    src = [*kept, *range(n, n + n_new)]
    moved = map_points(m, [pts[i] for i in src]) + rng.normal(0, 0.5, (len(src), 2))
    follow = [
        Lesion(classes[i], float(x), float(y), 20.0, (x - 2, y - 2, 4, 4), 0.9)
        for i, (x, y) in zip(src, moved, strict=True)
    ]
    match = match_lesions(base, follow, invert(m), tolerance_px=6.0)
    assert match.pairs == tuple((i, k) for k, i in enumerate(kept))
    assert match.resolved == tuple(i for i in range(n) if i not in kept)
    assert match.new == tuple(range(len(kept), len(src)))


def _bend(x: np.ndarray, y: np.ndarray, amp: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth non-rigid displacement (an expression, a slight turn): no affine follows it."""
    return amp * np.sin(2 * np.pi * y / 260.0), amp * np.cos(2 * np.pi * x / 300.0)


@pytest.mark.parametrize("amp", [3.0, 5.0, 7.0])
def test_local_flow_follows_non_rigid_change(clean, series, amp) -> None:
    from dataclasses import replace

    base, planted, base_lesions = series
    fu = demo.follow_up(clean, planted, 2, matrix=demo.similarity(clean.shape, rotation_deg=5.0, shift_px=(4.0, 3.0)))
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    dx, dy = _bend(xx, yy, amp)
    follow = cv2.remap(fu.image, xx + dx.astype(np.float32), yy + dy.astype(np.float32), cv2.INTER_LINEAR)
    lesions = []
    for les in fu.lesions:  # where each lesion went: solve x + D(x) = old position
        x, y = les.x, les.y
        for _ in range(20):
            ddx, ddy = _bend(np.float64(x), np.float64(y), amp)
            x, y = les.x - float(ddx), les.y - float(ddy)
        lesions.append(replace(les, x=x, y=y))
    reg = register(base, follow)
    assert reg.flow is not None and reg.nonrigid_px > 1.0 and reg.to_dict()["nonrigid_px"] > 1.0
    match = match_lesions(base_lesions, lesions, reg, tolerance_px=4.0)
    assert match.pairs == tuple(sorted(fu.persisting)) and match.new == fu.new
    assert max(match.distances_px) < 2.0
    if amp >= 5.0:  # one affine alone cannot follow it
        assert match_lesions(base_lesions, lesions, reg.matrix, tolerance_px=4.0).pairs != match.pairs


def test_registration_starts_from_the_facial_landmarks(clean) -> None:
    from lesioncount.landmarks import find_landmarks

    m = demo.similarity(clean.shape, shift_px=(14.0, -9.0), rotation_deg=4.0, scale=1.08)
    follow = cv2.warpAffine(clean, m, (clean.shape[1], clean.shape[0]), borderMode=cv2.BORDER_REFLECT_101)
    lb, lf = find_landmarks(clean), find_landmarks(follow)
    assert lb is not None and lf is not None
    reg = register(clean, follow, base_landmarks=lb.points[:, :2], follow_landmarks=lf.points[:, :2], refine=False)
    assert reg.method == "landmarks" and not reg.mirrored
    # Follow-up pixels map back to where they came from, within a couple of pixels on the face.
    face_pts = lb.points[[1, 33, 263, 152, 10], :2]
    back = map_points(reg.affine, map_points(m, face_pts))
    assert np.abs(back - face_pts).max() < 3.0
