"""Detection, count and grade metrics on plain arrays (numpy + scipy; no I/O).

Conventions: ``pred`` is the method under test, ``ref`` the reference (labels, or rater A). A metric that
is undefined on its input (precision with no predictions, a correlation of a constant) is ``nan``, never
a warning or an exception; the JSON writer turns ``nan`` into ``null``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]
NAN = float("nan")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else NAN


# ---------------------------------------------------------------- detection


def detection_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from summed match counts.

    Returns:
        ``{"precision", "recall", "f1"}``; precision is nan without predictions, recall without
        references. F1 is 2 TP / (2 TP + FP + FN), which is 2PR / (P + R) where both are defined and 0 when
        one side is empty and the other is not (a model that finds nothing has F1 0, not "undefined"); nan
        only with neither predictions nor references.
    """
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def precision_recall_curve(
    scores: npt.ArrayLike, is_tp: npt.ArrayLike, n_ref: float, weights: npt.ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision and recall as the score threshold falls through every prediction.

    Args:
        scores: (P,) prediction scores.
        is_tp: (P,) bool, whether each prediction matched a reference (score-ordered greedy matching).
        n_ref: number of reference lesions.
        weights: (P,) optional prediction weights (a bootstrap draws a photo several times).

    Returns:
        ``(recall, precision, threshold)``, each (P,), ordered by descending threshold. Ties in score
        are taken together (one point per distinct score).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(is_tp, dtype=bool).reshape(-1)
    if s.shape != t.shape:
        raise ValueError(f"scores {s.shape} and is_tp {t.shape} differ in shape")
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, t, w = s[order], t[order], w[order]
    ctp = np.cumsum(w * t)
    cfp = np.cumsum(w * ~t)
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)  # end of each tie group
    ctp, cfp, thr = ctp[last], cfp[last], s[last]
    recall = ctp / n_ref if n_ref > 0 else np.full(len(ctp), NAN)
    tot = ctp + cfp
    precision = np.divide(ctp, tot, out=np.zeros_like(tot, dtype=np.float64), where=tot > 0)
    return recall.astype(np.float64), precision.astype(np.float64), thr


def average_precision(
    scores: npt.ArrayLike, is_tp: npt.ArrayLike, n_ref: float, weights: npt.ArrayLike | None = None
) -> float:
    """Area under the precision-recall curve with the all-point monotone envelope (VOC 2010+ rule).

    Returns nan when there is no reference lesion; 0 when there are references but no true positive.
    """
    if n_ref <= 0:
        return NAN
    recall, precision, _ = precision_recall_curve(scores, is_tp, n_ref, weights)
    if len(recall) == 0:
        return 0.0
    r = np.r_[0.0, recall]
    p = np.r_[precision[0], precision]
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: best precision at any recall at least this high
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


# ---------------------------------------------------------------- counts


def _is_constant(a: FloatArray) -> bool:
    return len(a) == 0 or bool(np.all(a == a[0]))


def pearson_r(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Pearson r (scipy.stats.pearsonr); nan with fewer than 2 pairs or a constant side."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(a) < 2 or _is_constant(a) or _is_constant(b):
        return NAN
    return float(stats.pearsonr(a, b).statistic)


def spearman_r(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr); nan with fewer than 2 pairs or a constant side."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(a) < 2 or _is_constant(a) or _is_constant(b):
        return NAN
    return float(stats.spearmanr(a, b).statistic)


def icc(ratings: npt.ArrayLike, kind: Literal["2,1", "3,1"] = "2,1") -> float:
    """Single-measure intraclass correlation (Shrout and Fleiss 1979) from a two-way ANOVA.

    ICC(2,1): two-way random effects, absolute agreement (a constant offset between raters lowers it).
    ICC(3,1): two-way mixed effects, consistency (a constant offset does not).

    Args:
        ratings: (n_subjects, k_raters) ratings; here (photos, 2) counts.
        kind: ``"2,1"`` or ``"3,1"``.

    Returns:
        The ICC, or nan with fewer than 2 subjects or no variance at all.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (n_subjects, k_raters >= 2), got shape {x.shape}")
    n, k = x.shape
    if n < 2:
        return NAN
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_err = np.sum((x - grand) ** 2) - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    if kind == "2,1":
        den = msr + (k - 1) * mse + k * (msc - mse) / n
    elif kind == "3,1":
        den = msr + (k - 1) * mse
    else:
        raise ValueError(f"unknown ICC kind {kind!r}; use '2,1' or '3,1'")
    return float((msr - mse) / den) if den > 0 else NAN


def bland_altman(pred: npt.ArrayLike, ref: npt.ArrayLike) -> dict[str, float]:
    """Bland-Altman agreement of two measurements of the same photos.

    Returns:
        ``bias`` (mean of pred - ref), ``sd`` (its sample standard deviation), ``loa_low``/``loa_high``
        (bias -/+ 1.96 sd: the 95% limits of agreement). sd and limits are nan with fewer than 2 photos.
    """
    d = np.asarray(pred, np.float64) - np.asarray(ref, np.float64)
    if len(d) == 0:
        return {"bias": NAN, "sd": NAN, "loa_low": NAN, "loa_high": NAN}
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else NAN
    return {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}


def count_agreement(pred: npt.ArrayLike, ref: npt.ArrayLike) -> dict[str, float]:
    """Every count-agreement number the field reports, for per-photo counts.

    Args:
        pred: (N,) counts of the method under test.
        ref: (N,) reference counts of the same photos.

    Returns:
        ``n``, ``mae``, ``rmse``, ``bias`` (mean pred - ref), ``pearson_r``, ``spearman_r``, ``icc_2_1``,
        ``icc_3_1`` and Bland-Altman ``ba_sd``, ``ba_loa_low``, ``ba_loa_high``.
    """
    p, r = np.asarray(pred, np.float64).reshape(-1), np.asarray(ref, np.float64).reshape(-1)
    if p.shape != r.shape:
        raise ValueError(f"pred {p.shape} and ref {r.shape} differ in shape")
    d = p - r
    n = len(d)
    ba = bland_altman(p, r)
    pair = np.column_stack([r, p])
    return {
        "n": n,
        "mae": float(np.abs(d).mean()) if n else NAN,
        "rmse": float(np.sqrt((d**2).mean())) if n else NAN,
        "bias": ba["bias"],
        "pearson_r": pearson_r(p, r),
        "spearman_r": spearman_r(p, r),
        "icc_2_1": icc(pair, "2,1") if n else NAN,
        "icc_3_1": icc(pair, "3,1") if n else NAN,
        "ba_sd": ba["sd"],
        "ba_loa_low": ba["loa_low"],
        "ba_loa_high": ba["loa_high"],
    }


# ---------------------------------------------------------------- grades


def confusion_matrix(ref: npt.ArrayLike, pred: npt.ArrayLike, n_classes: int) -> npt.NDArray[np.int64]:
    """(n_classes, n_classes) counts; rows are the reference grade, columns the predicted grade."""
    r = np.asarray(ref, np.int64).reshape(-1)
    p = np.asarray(pred, np.int64).reshape(-1)
    if r.shape != p.shape:
        raise ValueError(f"ref {r.shape} and pred {p.shape} differ in shape")
    bad = (r < 0) | (r >= n_classes) | (p < 0) | (p >= n_classes)
    if bad.any():
        raise ValueError(f"grades must lie in 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (r, p), 1)
    return cm


def quadratic_weighted_kappa(cm: npt.ArrayLike) -> float:
    """Cohen's kappa with quadratic weights from a confusion matrix; nan when chance agreement is total."""
    o = np.asarray(cm, np.float64)
    k = o.shape[0]
    n = o.sum()
    if n == 0:
        return NAN
    i, j = np.indices((k, k))
    w = (i - j) ** 2 / max((k - 1) ** 2, 1)
    e = np.outer(o.sum(axis=1), o.sum(axis=0)) / n
    den = float((w * e).sum())
    return 1.0 - float((w * o).sum()) / den if den > 0 else NAN


def grade_agreement(ref: npt.ArrayLike, pred: npt.ArrayLike, n_classes: int = 4) -> dict[str, object]:
    """Accuracy, confusion matrix (rows ref), quadratic weighted kappa and per-grade recall."""
    cm = confusion_matrix(ref, pred, n_classes)
    n = int(cm.sum())
    support = cm.sum(axis=1)
    return {
        "n": n,
        "accuracy": _ratio(np.trace(cm), n),
        "within_one": _ratio(sum(cm[i, j] for i in range(n_classes) for j in range(n_classes) if abs(i - j) <= 1), n),
        "quadratic_weighted_kappa": quadratic_weighted_kappa(cm),
        "confusion": cm.tolist(),
        "recall_per_grade": [_ratio(cm[g, g], support[g]) for g in range(n_classes)],
        "support_per_grade": support.tolist(),
    }
