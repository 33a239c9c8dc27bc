"""One-to-one matching of lesion centres and boxes: evaluation, visit comparison and training use it.

scipy's Hungarian solver is imported when a match is made, so the counting core can import this module
without the extras.

Two rules:

* **centre matching**: a prediction may match a reference lesion when its centre lies within that
  reference's tolerance (its radius or half its box diagonal, times a scale, never under a minimum in
  pixels). Among all allowed pairs the Hungarian algorithm picks the largest set of one-to-one matches
  and, among those, the one with the smallest total distance.
* **box matching**: both sides have boxes; a pair is allowed when IoU >= a threshold, and the Hungarian
  algorithm picks the largest set with the largest total IoU.

``greedy_match_by_score`` is the VOC/COCO rule used for average precision: predictions in descending
score order each take the best still-free reference. AP needs it because a threshold sweep must not
re-assign references that higher-scoring predictions already hold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

ToleranceMode = Literal["radius", "half_diagonal", "fixed"]
TOLERANCE_MODES: tuple[str, ...] = ("radius", "half_diagonal", "fixed")


def reference_tolerance_px(
    radius_px: npt.ArrayLike,
    box_wh_px: npt.ArrayLike | None = None,
    *,
    mode: ToleranceMode = "radius",
    scale: float = 1.0,
    min_px: float = 8.0,
) -> FloatArray:
    """Matching radius of each reference lesion.

    Args:
        radius_px: (N,) reference radii in pixels (points: the drawn circle; boxes: half the smaller side).
        box_wh_px: (N, 2) box width/height in pixels, needed for ``half_diagonal`` (rows of NaN fall back
            to the radius).
        mode: ``radius`` (the reference radius), ``half_diagonal`` (half the box diagonal) or ``fixed``
            (``min_px`` for every lesion).
        scale: factor applied to the radius or half diagonal.
        min_px: tolerance floor in pixels (and the fixed tolerance).

    Returns:
        (N,) float64 tolerances in pixels.
    """
    r = np.asarray(radius_px, dtype=np.float64).reshape(-1)
    if mode == "fixed":
        return np.full(r.shape, float(min_px))
    if mode == "radius":
        base = r
    elif mode == "half_diagonal":
        if box_wh_px is None:
            raise ValueError("mode='half_diagonal' needs box_wh_px")
        wh = np.asarray(box_wh_px, dtype=np.float64).reshape(-1, 2)
        base = np.hypot(wh[:, 0], wh[:, 1]) / 2
        base = np.where(np.isfinite(base), base, r)
    else:
        raise ValueError(f"unknown tolerance mode {mode!r}; use one of {', '.join(TOLERANCE_MODES)}")
    return np.maximum(base * float(scale), float(min_px))


def _hungarian(allowed: npt.NDArray[np.bool_], cost: FloatArray) -> tuple[IntArray, IntArray]:
    """Maximum-cardinality, then minimum-cost, one-to-one assignment restricted to allowed pairs."""
    if not allowed.any():
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    # Only rows/columns with some allowed pair take part: keeps the problem small on busy photos.
    rows = np.flatnonzero(allowed.any(axis=1))
    cols = np.flatnonzero(allowed.any(axis=0))
    sub_ok = allowed[np.ix_(rows, cols)]
    sub_cost = cost[np.ix_(rows, cols)]
    # A forbidden pair costs more than every allowed pair together, so no solution ever trades a match
    # away to save distance: the optimum has the maximum number of allowed pairs.
    from scipy.optimize import linear_sum_assignment

    big = float(np.abs(sub_cost[sub_ok]).sum()) + 1.0
    c = np.where(sub_ok, sub_cost, big)
    i, j = linear_sum_assignment(c)
    keep = sub_ok[i, j]
    return rows[i[keep]], cols[j[keep]]


def match_centres(
    pred_xy: npt.ArrayLike, ref_xy: npt.ArrayLike, tolerance_px: npt.ArrayLike
) -> tuple[IntArray, IntArray, FloatArray]:
    """Hungarian one-to-one matching of centres within each reference's tolerance.

    Args:
        pred_xy: (P, 2) predicted centres ``(x, y)`` in pixels.
        ref_xy: (R, 2) reference centres in pixels.
        tolerance_px: (R,) matching radius of each reference (or a scalar for all).

    Returns:
        ``(pred_idx, ref_idx, dist_px)``: matched pairs, sorted by ``pred_idx``.
    """
    p = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    r = np.asarray(ref_xy, dtype=np.float64).reshape(-1, 2)
    tol = np.broadcast_to(np.asarray(tolerance_px, dtype=np.float64), (len(r),))
    if len(p) == 0 or len(r) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
    d = np.hypot(p[:, None, 0] - r[None, :, 0], p[:, None, 1] - r[None, :, 1])
    i, j = _hungarian(d <= tol[None, :], d)
    order = np.argsort(i, kind="stable")
    i, j = i[order], j[order]
    return i, j, d[i, j]


def box_iou(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> FloatArray:
    """Pairwise IoU of ``(x, y, w, h)`` boxes.

    Args:
        boxes_a: (A, 4) boxes, top-left corner first, in pixels.
        boxes_b: (B, 4) boxes.

    Returns:
        (A, B) float64 IoU in [0, 1]; 0 where both boxes have zero area.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(
    pred_boxes: npt.ArrayLike, ref_boxes: npt.ArrayLike, iou_threshold: float = 0.5
) -> tuple[IntArray, IntArray, FloatArray]:
    """Hungarian one-to-one matching of boxes with IoU >= ``iou_threshold``.

    Returns:
        ``(pred_idx, ref_idx, iou)``: matched pairs, sorted by ``pred_idx``.
    """
    iou = box_iou(pred_boxes, ref_boxes)
    if iou.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
    i, j = _hungarian(iou >= iou_threshold, 1.0 - iou)
    order = np.argsort(i, kind="stable")
    i, j = i[order], j[order]
    return i, j, iou[i, j]


def greedy_match_by_score(
    scores: npt.ArrayLike, allowed: npt.ArrayLike, quality: npt.ArrayLike
) -> npt.NDArray[np.bool_]:
    """VOC/COCO matching for AP: by descending score, each prediction takes its best free reference.

    Args:
        scores: (P,) prediction scores.
        allowed: (P, R) bool, which pairs may match (within tolerance / IoU over threshold).
        quality: (P, R) float, higher is better (IoU, or minus the distance).

    Returns:
        (P,) bool: whether each prediction (in the input order) is a true positive.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    ok = np.asarray(allowed, dtype=bool)
    q = np.asarray(quality, dtype=np.float64)
    if ok.ndim != 2 or ok.shape[0] != len(s) or q.shape != ok.shape:
        raise ValueError(f"allowed {ok.shape} and quality {q.shape} must both be (P={len(s)}, R)")
    tp = np.zeros(len(s), bool)
    taken = np.zeros(ok.shape[1], bool)
    for i in np.argsort(-s, kind="stable"):
        cand = ok[i] & ~taken
        if cand.any():
            j = int(np.flatnonzero(cand)[np.argmax(q[i, cand])])
            taken[j] = True
            tp[i] = True
    return tp
