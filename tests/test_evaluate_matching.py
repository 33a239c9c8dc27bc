from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from lesioncount.matching import (
    box_iou,
    greedy_match_by_score,
    match_boxes,
    match_centres,
    reference_tolerance_px,
)


def test_match_centres_pairs_each_prediction_with_its_neighbour() -> None:
    pi, ri, d = match_centres([[0, 0], [10, 0]], [[9, 0], [1, 0]], 3.0)
    assert pi.tolist() == [0, 1]
    assert ri.tolist() == [1, 0]
    np.testing.assert_allclose(d, [1, 1])


def test_hungarian_finds_more_matches_than_nearest_first() -> None:
    # Nearest-first would pair A with X (1 px) and leave B unmatched; one-to-one optimum pairs A-Y and B-X.
    pred = [[0.0, 0.0], [4.0, 0.0]]  # A, B
    ref = [[1.0, 0.0], [-3.0, 0.0]]  # X, Y
    pi, ri, _ = match_centres(pred, ref, 3.5)
    assert dict(zip(pi.tolist(), ri.tolist(), strict=True)) == {0: 1, 1: 0}


def test_each_reference_has_its_own_tolerance() -> None:
    pred = [[10.0, 0.0], [110.0, 0.0]]
    ref = [[0.0, 0.0], [100.0, 0.0]]
    tol = reference_tolerance_px([12.0, 5.0], mode="radius", min_px=8.0)
    pi, ri, _ = match_centres(pred, ref, tol)
    assert pi.tolist() == [0] and ri.tolist() == [0]  # 10 px: inside r=12, outside max(5, 8)


def test_tolerance_on_the_boundary_matches() -> None:
    pi, _, _ = match_centres([[3.0, 4.0]], [[0.0, 0.0]], 5.0)
    assert len(pi) == 1


@pytest.mark.parametrize("seed", range(6))
def test_match_count_is_the_maximum_bipartite_matching(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0, 60, (25, 2))
    ref = rng.uniform(0, 60, (20, 2))
    tol = rng.uniform(3, 9, 20)
    pi, ri, d = match_centres(pred, ref, tol)
    allowed = np.hypot(*(pred[:, None] - ref[None]).transpose(2, 0, 1)) <= tol[None]
    best = maximum_bipartite_matching(csr_matrix(allowed.astype(np.int8)), perm_type="column")
    assert len(pi) == int((best >= 0).sum())
    assert len(set(pi.tolist())) == len(pi) and len(set(ri.tolist())) == len(ri)
    assert (d <= tol[ri] + 1e-12).all()


def test_empty_sides() -> None:
    for pred, ref in (([], [[1, 1]]), ([[1, 1]], []), ([], [])):
        pi, ri, d = match_centres(pred, ref, 5.0)
        assert pi.shape == ri.shape == d.shape == (0,)
    pi, ri, iou = match_boxes(np.zeros((0, 4)), [[0, 0, 1, 1]])
    assert pi.shape == (0,)


def test_inputs_are_not_mutated() -> None:
    pred = np.array([[0.0, 0.0], [10.0, 0.0]])
    ref = np.array([[9.0, 0.0]])
    tol = np.array([3.0])
    keep = pred.copy(), ref.copy(), tol.copy()
    match_centres(pred, ref, tol)
    for a, b in zip((pred, ref, tol), keep, strict=True):
        np.testing.assert_array_equal(a, b)


def test_reference_tolerance_modes() -> None:
    r = [2.0, 20.0]
    wh = [[6.0, 8.0], [30.0, 40.0]]
    np.testing.assert_allclose(reference_tolerance_px(r, mode="radius", min_px=8), [8, 20])
    np.testing.assert_allclose(reference_tolerance_px(r, wh, mode="half_diagonal", min_px=0), [5, 25])
    np.testing.assert_allclose(reference_tolerance_px(r, wh, mode="half_diagonal", scale=2, min_px=8), [10, 50])
    np.testing.assert_allclose(reference_tolerance_px(r, mode="fixed", min_px=7), [7, 7])
    # A bare point (NaN box) falls back to its radius.
    np.testing.assert_allclose(reference_tolerance_px([9.0], [[np.nan, np.nan]], mode="half_diagonal", min_px=0), [9])
    with pytest.raises(ValueError, match="unknown tolerance mode 'box'"):
        reference_tolerance_px(r, mode="box")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs box_wh_px"):
        reference_tolerance_px(r, mode="half_diagonal")


def test_box_iou_golden() -> None:
    iou = box_iou([[0, 0, 2, 2], [10, 10, 1, 1], [0, 0, 0, 0]], [[1, 1, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0]])
    np.testing.assert_allclose(iou[0], [1 / 7, 1, 0])
    np.testing.assert_allclose(iou[1], [0, 0, 0])
    np.testing.assert_allclose(iou[2], [0, 0, 0])  # zero-area boxes: 0, not NaN
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_match_boxes_respects_the_threshold_and_maximises_iou() -> None:
    pred = [[0, 0, 10, 10], [0, 0, 10, 9]]
    ref = [[0, 0, 10, 9], [50, 50, 5, 5]]
    pi, ri, iou = match_boxes(pred, ref, 0.5)
    assert pi.tolist() == [1] and ri.tolist() == [0]  # the exact box wins over the 0.9 overlap
    np.testing.assert_allclose(iou, [1.0])
    assert len(match_boxes(pred, ref, 1.0)[0]) == 1
    assert len(match_boxes([[0, 0, 10, 10]], [[5, 0, 10, 10]], 0.5)[0]) == 0  # IoU 1/3


def test_greedy_by_score_gives_the_reference_to_the_higher_score() -> None:
    allowed = np.array([[True], [True]])
    quality = np.array([[-1.0], [-5.0]])
    assert greedy_match_by_score([0.2, 0.9], allowed, quality).tolist() == [False, True]
    # Among free references, the best quality is taken.
    tp = greedy_match_by_score(
        [0.9, 0.8], np.array([[True, True], [True, False]]), np.array([[-1.0, -2.0], [-1.0, 0.0]])
    )
    assert tp.tolist() == [True, False]
    assert greedy_match_by_score([], np.zeros((0, 3), bool), np.zeros((0, 3))).shape == (0,)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 40))
def test_jittered_and_shuffled_copies_are_all_recovered(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    ref = np.column_stack([np.arange(n) * 30.0, rng.uniform(0, 500, n)])  # 30 px apart, tolerance 8
    perm = rng.permutation(n)
    angle = rng.uniform(0, 2 * np.pi, n)
    jitter = rng.uniform(0, 7.9, n)[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    pred = (ref + jitter)[perm]
    pi, ri, _ = match_centres(pred, ref, 8.0)
    assert len(pi) == n
    assert (ri == perm[pi]).all()
