"""Dense maps -> lesion instances -> counts and grades (numpy/OpenCV only).

Peaks are local maxima of each class heatmap above its threshold. Neighbouring pixels with exactly the
same value (a plateau, common after low-precision inference) form one peak at their centroid, so one
lesion never gives two adjacent peaks. A pixel that is a peak in several classes keeps its best class.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.types import ACNE_CLASSES, CLASSES, NEAR_THRESHOLD_FRACTION, REGIONS, TOTAL_ACNE, Lesion

#: Hayashi grades (ACNE04): lesion count on one half face -> grade.
HAYASHI_BOUNDS: tuple[int, int, int] = (5, 20, 50)
HAYASHI_LABELS: tuple[str, ...] = ("mild", "moderate", "severe", "very severe")
#: The count's test-retest band: on simulated re-takes of unchanged faces (ACNE04 valid, the shipped model;
#: see models/MODEL_CARD.md) 97.5% of counts stayed within max(2 lesions, 15% of the count) with model 2.2.0's
#: soft count (93.3% with 2.1.0's hard count, 94.3% then with the re-take counted in the baseline's frame,
#: docs/compare.md); the band is kept as measured with 2.1.0, so it errs wide. A change inside this band is reported as
#: within re-take noise, and a grade whose band crosses a grade boundary as borderline.
RETEST_NOISE: tuple[int, float] = (2, 0.15)
#: GAGS region weights; chest and back are not on a facial photo.
GAGS_WEIGHTS: dict[str, int] = {"forehead": 2, "right_cheek": 2, "left_cheek": 2, "nose": 1, "chin": 1}
#: GAGS lesion scores for our classes (papule 2 is the floor for "inflammatory": we do not split
#: papules, pustules and nodules, so GAGS here is a lower bound when pustules or nodules dominate).
GAGS_LESION_SCORE: dict[str, int] = {"comedone": 1, "inflammatory": 2}


def find_peaks(prob: npt.NDArray[np.float32], threshold: float, *, min_distance_px: int = 1) -> npt.NDArray[np.float32]:
    """Local maxima of one heatmap.

    Args:
        prob: HxW float32 heatmap in [0, 1].
        threshold: minimum peak value (inclusive).
        min_distance_px: a peak must be the maximum within this Chebyshev radius.

    Returns:
        (N, 3) float32 rows ``(x, y, score)`` in map pixels, x/y at the pixel centre convention of the map
        (integer = pixel index; plateaus give their centroid), sorted by score descending.
    """
    if prob.ndim != 2:
        raise ValueError(f"prob must be HxW, got shape {prob.shape}")
    if prob.size == 0:
        return np.zeros((0, 3), np.float32)
    k = 2 * min_distance_px + 1
    dil = cv2.dilate(prob, np.ones((k, k), np.uint8))
    peak = (prob >= dil) & (prob >= threshold)
    if not peak.any():
        return np.zeros((0, 3), np.float32)
    n, labels, _, centroids = cv2.connectedComponentsWithStats(peak.astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(peak)
    scores = np.zeros(n, np.float32)
    np.maximum.at(scores, labels[ys, xs], prob[ys, xs])
    out = np.column_stack([centroids[1:, 0], centroids[1:, 1], scores[1:]]).astype(np.float32)
    return out[np.argsort(-out[:, 2], kind="stable")]


def decode_lesions(
    heatmaps: npt.NDArray[np.float32],
    log_size: npt.NDArray[np.float32],
    thresholds: Mapping[str, float],
    classes: Sequence[str] = CLASSES,
    *,
    stride: int = 2,
    merge_radius_px: float = 1.5,
) -> list[tuple[str, float, float, float, float, float]]:
    """Turn model output maps into lesions in input (working) pixels.

    Args:
        heatmaps: (C, h, w) float32 class heatmaps.
        log_size: (2, h, w) float32 log box width/height in input pixels.
        thresholds: class -> minimum peak score.
        classes: channel names.
        stride: input pixels per map pixel.
        merge_radius_px: peaks of different classes closer than this (map pixels) are one lesion; the
            higher-scoring class wins.

    Returns:
        ``(class, x, y, w, h, score)`` per lesion, x/y/w/h in input pixels.
    """
    cand = []
    for c, name in enumerate(classes):
        if name not in thresholds:
            continue
        for x, y, s in find_peaks(heatmaps[c], thresholds[name]):
            cand.append((float(s), name, float(x), float(y)))
    cand.sort(key=lambda t: -t[0])
    kept: list[tuple[float, str, float, float]] = []
    # A grid of kept peaks (cells of merge_radius_px) makes the neighbour check O(1) per candidate.
    cell = max(merge_radius_px, 1e-6)
    grid: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for s, name, x, y in cand:
        gx, gy = int(x // cell), int(y // cell)
        near = (p for dx in (-1, 0, 1) for dy in (-1, 0, 1) for p in grid.get((gx + dx, gy + dy), ()))
        if any((x - kx) ** 2 + (y - ky) ** 2 <= merge_radius_px**2 for kx, ky in near):
            continue
        kept.append((s, name, x, y))
        grid.setdefault((gx, gy), []).append((x, y))
    h, w = log_size.shape[1:]
    out = []
    for s, name, x, y in kept:
        ix, iy = min(w - 1, max(0, int(round(x)))), min(h - 1, max(0, int(round(y))))
        bw, bh = float(np.exp(log_size[0, iy, ix])), float(np.exp(log_size[1, iy, ix]))
        out.append((name, (x + 0.5) * stride, (y + 0.5) * stride, bw, bh, s))
    return out


def soft_count(scores: npt.ArrayLike, threshold: float, softness: float) -> float:
    """The expected number of lesions among peaks of these scores: each counts the chance that it is one,
    ``sigmoid((score - threshold) / softness)``; with ``softness`` 0, the peaks reaching ``threshold``.

    A peak near the threshold moves this by a fraction when a re-take nudges its score, where a hard
    threshold moves the count by one (see ``ModelSpec.count_softness``).
    """
    s = np.asarray(scores, np.float64)
    if softness <= 0:
        return float((s >= threshold).sum())
    return float((0.5 + 0.5 * np.tanh((s - threshold) / (2 * softness))).sum())  # the logistic, overflow-free


def strongest_acne(lesions: Sequence[Lesion], n: int) -> tuple[list[Lesion], list[Lesion]]:
    """The ``n`` highest-scoring acne lesions beside every lesion of another class, and the acne left over.

    Returns:
        ``(kept, left)``: ``kept`` in reading order (top to bottom, then left to right); ``left`` by score.
    """
    acne = sorted((les for les in lesions if les.cls in ACNE_CLASSES), key=lambda les: -les.score)
    n = max(0, n)
    kept = [*acne[:n], *(les for les in lesions if les.cls not in ACNE_CLASSES)]
    kept.sort(key=lambda les: (les.y, les.x))
    return kept, acne[n:]


def soft_marks(found: Sequence[Lesion], thresholds: Mapping[str, float], softness: float) -> tuple[list[Lesion], float]:
    """A soft acne count (``ModelSpec.count_softness``) and its marks, from peaks found at or under half
    the thresholds: the acne peaks scoring at least ``NEAR_THRESHOLD_FRACTION`` of their class threshold
    each count ``soft_count``; the marks are the rounded sum's number of the strongest of them, beside every
    lesion of another class.

    Returns:
        ``(marks, expected)``: the marks in reading order and the unrounded expected acne count.
    """
    seen = [
        les
        for les in found
        if les.cls not in ACNE_CLASSES or les.score >= NEAR_THRESHOLD_FRACTION * thresholds[les.cls]
    ]
    expected = sum(
        soft_count([les.score for les in seen if les.cls == c], thresholds[c], softness) for c in ACNE_CLASSES
    )
    marks, _ = strongest_acne(seen, round(expected))
    return marks, expected


def count_by_class(lesions: Iterable[Lesion]) -> dict[str, int]:
    """Counts per class plus ``total_acne`` (inflammatory + comedone)."""
    counts = dict.fromkeys(CLASSES, 0)
    for les in lesions:
        counts[les.cls] = counts.get(les.cls, 0) + 1
    counts[TOTAL_ACNE] = sum(counts[c] for c in ACNE_CLASSES)
    return counts


def count_by_region(lesions: Iterable[Lesion]) -> dict[str, dict[str, int]]:
    """Per region: counts per class plus ``total_acne``."""
    by: dict[str, list[Lesion]] = {r: [] for r in REGIONS}
    for les in lesions:
        by.setdefault(les.region, []).append(les)
    return {r: count_by_class(v) for r, v in by.items()}


def hayashi_grade(n_acne: int) -> int:
    """Hayashi grade 0-3 from the acne lesion count of one half face (0-5, 6-20, 21-50, over 50)."""
    if n_acne < 0:
        raise ValueError("a lesion count cannot be negative")
    return int(sum(n_acne > b for b in HAYASHI_BOUNDS))


def retest_band(n: int) -> float:
    """Half-width of the count's test-retest band around a count of ``n`` (``RETEST_NOISE``: max(2, 15%))."""
    lesions, share = RETEST_NOISE
    return max(lesions, share * n)


def hayashi_plausible_grades(n_acne: int) -> list[int]:
    """The Hayashi grades a re-take of the same face could be given: those of every count within the
    test-retest band ``RETEST_NOISE`` of ``n_acne`` (max(2 lesions, 15%); 98% of re-takes stay inside it).

    One grade means the grade is clear of the re-take noise; two or more mean it is borderline (4 lesions
    is mild, but a re-take could count 6, moderate). On the ACNE04 valid photos the band of the count
    crossed a boundary on 36% of them, and held 87% of the grades that changed on a re-take.
    """
    d = retest_band(n_acne)
    lo, hi = max(0, math.floor(n_acne - d)), math.ceil(n_acne + d)
    return list(range(hayashi_grade(lo), hayashi_grade(hi) + 1))


def gags_score(lesions: Iterable[Lesion]) -> int:
    """GAGS facial score: sum over regions of weight x the region's worst lesion score."""
    worst: dict[str, int] = {}
    for les in lesions:
        s = GAGS_LESION_SCORE.get(les.cls, 0)
        if les.region in GAGS_WEIGHTS and s > worst.get(les.region, 0):
            worst[les.region] = s
    return sum(GAGS_WEIGHTS[r] * s for r, s in worst.items())


def gags_label(score: int) -> str:
    """GAGS severity: 0 none, 1-18 mild, 19-30 moderate, 31-38 severe, 39+ very severe."""
    if score == 0:
        return "none"
    return "mild" if score <= 18 else "moderate" if score <= 30 else "severe" if score <= 38 else "very severe"


def grades(
    lesions: Sequence[Lesion],
    *,
    regions_known: bool,
    hayashi_count: int | None = None,
    hayashi_basis: str = "whole photo (one half face for lateral views, as in ACNE04)",
    graded: bool = True,
) -> dict[str, object]:
    """The ``grades`` block of a count result.

    Hayashi applies to one half face: for a lateral view (as in ACNE04) the photo is the half face and
    the grade comes from all its acne lesions; for a frontal photo the caller passes the count of the
    worse half as ``hayashi_count``. GAGS needs the facial regions (``regions_known``), else it is None.
    ``graded=False`` (no face found: nothing that is not known to be a face is graded) gives no grades at all.
    """
    if not graded:
        return {"hayashi": None, "gags": None}
    n = count_by_class(lesions)[TOTAL_ACNE] if hayashi_count is None else hayashi_count
    grade = hayashi_grade(n)
    plausible = hayashi_plausible_grades(n)
    hayashi = {
        "grade": grade,
        "label": HAYASHI_LABELS[grade],
        "n_lesions": n,
        "basis": hayashi_basis,
        "plausible_grades": plausible,
        "borderline": len(plausible) > 1,
    }
    out: dict[str, object] = {
        "hayashi": hayashi,
        "gags": None,
    }
    if regions_known:
        g = gags_score(lesions)
        out["gags"] = {"score": g, "label": gags_label(g)}
    return out
