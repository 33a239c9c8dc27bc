"""Reduce second: per-photo records -> the metrics dict written to ``metrics.json``.

Detection numbers are micro-averaged (match counts summed over photos, then divided); count numbers
compare per-photo counts; intervals come from resampling source faces (``lesioncount.bootstrap``): the
copies of one photo in a Roboflow export are drawn together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lesioncount.bootstrap import bootstrap_ci
from lesioncount.count import HAYASHI_LABELS
from lesioncount.data import source_face
from lesioncount.evaluate.image_eval import (
    ALL,
    BACKGROUND,
    SIZE_BINS,
    TOLERANCE_SWEEP,
    EvalConfig,
    ImageEval,
    concat_scores,
)
from lesioncount.evaluate.metrics import (
    average_precision,
    confusion_matrix,
    count_agreement,
    detection_scores,
    grade_agreement,
    icc,
    pearson_r,
    precision_recall_curve,
    quadratic_weighted_kappa,
)
from lesioncount.types import CLASSES

#: Headline numbers that get bootstrap intervals.
HEADLINE = (
    "precision",
    "recall",
    "f1",
    "ap",
    "box_ap50",
    "count_mae",
    "count_pearson_r",
    "count_icc_2_1",
    "grade_accuracy",
    "grade_qwk",
)
#: How the numbers are averaged, as metrics.json states it.
AVERAGING = (
    "headline and 'all': every lesion as one class, matches summed over photos (micro average); "
    "'map' and 'box_map50': the mean over the classes the reference marks of each class's AP"
)
#: What the intervals resample, as metrics.json states it.
BOOTSTRAP_UNIT = (
    "source face: the copies of one photo in a Roboflow export (name_jpg.rf.<hash>.jpg) are drawn together; "
    "any other photo is its own face"
)
#: Most points of the PR curve kept in metrics.json.
PR_POINTS = 200

NAN = float("nan")


def reported_groups(records: Sequence[ImageEval], cfg: EvalConfig) -> list[str]:
    """``all`` plus every class the reference has, unless the reference is untyped or the run class-agnostic.

    A class the reference never marks (scars against ACNE04's boxes) is not scored: its precision would be 0
    by construction. ``skipped_classes`` says which were left out.
    """
    if cfg.class_agnostic or not records:
        return [ALL]
    typed_ref = sum(r.groups[c].n_ref for r in records for c in CLASSES)
    if typed_ref == 0:
        return [ALL]  # the reference gives no lesion type (expert points): per-class numbers would be empty
    return [ALL] + [c for c in CLASSES if any(r.groups[c].n_ref for r in records)]


def skipped_classes(records: Sequence[ImageEval], groups: Sequence[str]) -> dict[str, str]:
    """Classes predicted but left out because the reference has none of them, with the reason."""
    out = {}
    for c in CLASSES:
        n_pred = sum(r.groups[c].n_pred for r in records)
        if c not in groups and n_pred and not sum(r.groups[c].n_ref for r in records):
            out[c] = f"the reference marks no {c} lesions ({n_pred} predicted): not scored"
    return out


def _group_arrays(records: Sequence[ImageEval], group: str) -> dict[str, npt.NDArray[np.int64]]:
    gs = [r.groups[group] for r in records]
    return {
        "n_pred": np.array([g.n_pred for g in gs], np.int64),
        "n_ref": np.array([g.n_ref for g in gs], np.int64),
        "tp": np.array([g.tp for g in gs], np.int64),
    }


def _has_boxes(records: Sequence[ImageEval], group: str) -> bool:
    return bool(records) and all(r.groups[group].box_tp is not None for r in records)


def _detection(records: Sequence[ImageEval], group: str, scored: bool) -> dict[str, Any]:
    a = _group_arrays(records, group)
    tp, n_pred, n_ref = int(a["tp"].sum()), int(a["n_pred"].sum()), int(a["n_ref"].sum())
    out: dict[str, Any] = {
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_ref - tp,
        **detection_scores(tp, n_pred - tp, n_ref - tp),
    }
    if scored:
        s, t, _ = concat_scores(records, group)
        out["ap"] = average_precision(s, t, n_ref)
        out |= _sweep(records, group, n_ref)
    if _has_boxes(records, group):
        btp = sum(int(r.groups[group].box_tp or 0) for r in records)
        box: dict[str, Any] = {
            "tp": btp,
            "fp": n_pred - btp,
            "fn": n_ref - btp,
            **detection_scores(btp, n_pred - btp, n_ref - btp),
        }
        if scored:
            s, t, _ = concat_scores(records, group, box=True)
            box["ap50"] = average_precision(s, t, n_ref)
        out["box"] = box
    return out


def _sweep(records: Sequence[ImageEval], group: str, n_ref: int) -> dict[str, Any]:
    """AP and recall over the tolerance sweep (``TOLERANCE_SWEEP``): the point analogue of COCO's AP and AR.

    ``ap_sweep`` is the mean AP over the tolerances (as COCO's AP is the mean over IoU 0.50:0.95),
    ``ap_strict`` the AP at half the tolerance, ``ar`` the mean over the tolerances of the recall with every
    prediction kept; ``sweep`` lists AP and recall per tolerance factor.
    """
    scores = [r.groups[group].scores for r in records]
    flags = [r.groups[group].sweep_tp for r in records]
    if not records or any(f is None for f in flags):
        return {}
    s = np.concatenate(scores) if scores else np.zeros(0)
    rows = []
    for k, factor in enumerate(TOLERANCE_SWEEP):
        t = np.concatenate([f[k] for f in flags if f is not None]) if s.size else np.zeros(0, bool)
        recall = float(t.sum() / n_ref) if n_ref else NAN
        rows.append({"factor": factor, "ap": average_precision(s, t, n_ref), "recall": recall})
    finite = lambda key: [r[key] for r in rows if np.isfinite(r[key])]  # noqa: E731
    return {
        "ap_sweep": float(np.mean(finite("ap"))) if finite("ap") else NAN,
        "ap_strict": rows[0]["ap"],
        "ar": float(np.mean(finite("recall"))) if finite("recall") else NAN,
        "sweep": rows,
    }


def by_size(records: Sequence[ImageEval]) -> list[dict[str, Any]]:
    """Recall per reference size bin (class-agnostic): which lesion sizes the model finds."""
    rows = []
    for name, _, _ in SIZE_BINS:
        n = sum(r.sizes.get(name, (0, 0))[0] for r in records)
        hit = sum(r.sizes.get(name, (0, 0))[1] for r in records)
        rows.append({"size": name, "n_ref": n, "found": hit, "recall": hit / n if n else NAN})
    return rows


def class_confusion_table(records: Sequence[ImageEval]) -> dict[str, Any]:
    """The class confusion matrix with background, summed over photos: rows reference, columns predicted."""
    total: dict[tuple[str, str], int] = {}
    for r in records:
        for key, v in r.confusion.items():
            total[key] = total.get(key, 0) + v
    names = sorted({k for pair in total for k in pair} - {BACKGROUND})
    labels = [*names, BACKGROUND]
    matrix = [[total.get((a, b), 0) for b in labels] for a in labels]
    return {"labels": labels, "matrix": matrix, "rows": "reference", "columns": "predicted"}


def best_f1(records: Sequence[ImageEval]) -> dict[str, float] | None:
    """The score threshold with the best F1 (all lesions as one class), with its precision and recall."""
    s, t, _ = concat_scores(records, ALL)
    n_ref = sum(r.groups[ALL].n_ref for r in records)
    if not len(s) or not n_ref:
        return None
    r, p, thr = precision_recall_curve(s, t, n_ref)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    k = int(np.argmax(f1))
    return {"threshold": float(thr[k]), "f1": float(f1[k]), "precision": float(p[k]), "recall": float(r[k])}


def _pr_curve(records: Sequence[ImageEval]) -> dict[str, list[float]]:
    s, t, _ = concat_scores(records, ALL)
    n_ref = sum(r.groups[ALL].n_ref for r in records)
    recall, precision, thr = precision_recall_curve(s, t, n_ref)
    if len(recall) > PR_POINTS:
        keep = np.unique(np.linspace(0, len(recall) - 1, PR_POINTS).round().astype(int))
        recall, precision, thr = recall[keep], precision[keep], thr[keep]
    return {"recall": recall.tolist(), "precision": precision.tolist(), "threshold": thr.tolist()}


def _bootstrap(records: Sequence[ImageEval], faces: list[str], cfg: EvalConfig, scored: bool) -> dict[str, Any]:
    """The headline numbers' intervals, resampling ``faces`` (each photo's source face)."""
    a = _group_arrays(records, ALL)
    n = len(records)
    s, t, ix = concat_scores(records, ALL)
    has_box = scored and _has_boxes(records, ALL)
    box_sets: dict[str, tuple[npt.NDArray[Any], ...]] = {}
    if has_box:
        # The headline rule: all lesions as one class.
        box_sets[ALL] = (*concat_scores(records, ALL, box=True), _group_arrays(records, ALL)["n_ref"])
    ref_grade = np.array([r.ref_grade for r in records])
    pred_grade = np.array([r.pred_grade for r in records])

    def stat(idx: npt.NDArray[np.intp]) -> dict[str, float]:
        tp, n_pred, n_ref = a["tp"][idx].sum(), a["n_pred"][idx].sum(), a["n_ref"][idx].sum()
        out = detection_scores(int(tp), int(n_pred - tp), int(n_ref - tp))
        m = np.bincount(idx, minlength=n).astype(np.float64)
        if scored:
            out["ap"] = average_precision(s, t, float(n_ref), weights=m[ix])
        if has_box:
            bs, bt, bix, bn = box_sets[ALL]
            out["box_ap50"] = average_precision(bs, bt, float(bn[idx].sum()), weights=m[bix])
        pc, rc = a["n_pred"][idx].astype(np.float64), a["n_ref"][idx].astype(np.float64)
        out["count_mae"] = float(np.abs(pc - rc).mean())
        out["count_pearson_r"] = pearson_r(pc, rc)
        out["count_icc_2_1"] = icc(np.column_stack([rc, pc]), "2,1")
        out["grade_accuracy"] = float((ref_grade[idx] == pred_grade[idx]).mean())
        out["grade_qwk"] = quadratic_weighted_kappa(confusion_matrix(ref_grade[idx], pred_grade[idx], 4))
        return out

    ci = bootstrap_ci(n, stat, n_boot=cfg.bootstrap, rng=cfg.seed, groups=faces)
    return {k: list(ci[k]) for k in HEADLINE if k in ci}


def source_faces(records: Sequence[ImageEval]) -> list[str]:
    """The source face of each photo (``data.source_face``): the unit the bootstrap resamples."""
    return [source_face(r.file_name) for r in records]


def summarize(records: Sequence[ImageEval], cfg: EvalConfig) -> dict[str, Any]:
    """All metrics of a run.

    Args:
        records: one ``ImageEval`` per photo.
        cfg: the run's settings (bootstrap count and seed, class-agnostic switch).

    Returns:
        A JSON-ready dict (nan where a metric is undefined): ``n_images``, ``groups`` (per group: detection
        and count agreement), ``map``/``box_map50``, ``grades``, ``per_grade``, ``headline``, ``ci95``,
        ``pr_curve``.
    """
    n = len(records)
    faces = source_faces(records)
    scored = n > 0 and all(r.scored for r in records)
    groups = reported_groups(records, cfg)
    out: dict[str, Any] = {
        "n_images": n,
        "n_faces": len(set(faces)),
        "bootstrap_unit": BOOTSTRAP_UNIT,
        "scored": scored,
        "averaging": AVERAGING,
        "skipped_classes": skipped_classes(records, groups) if not cfg.class_agnostic else {},
        "groups": {},
    }
    for g in groups:
        a = _group_arrays(records, g)
        out["groups"][g] = {
            "n_pred": int(a["n_pred"].sum()),
            "n_ref": int(a["n_ref"].sum()),
            "detection": _detection(records, g, scored),
            "count": count_agreement(a["n_pred"], a["n_ref"]),
        }
    per_class = [g for g in groups if g != ALL] or [ALL]
    det = {g: out["groups"][g]["detection"] for g in per_class}
    out["map"] = (
        float(np.nanmean([d["ap"] for d in det.values()]))
        if scored and n and any(np.isfinite(d["ap"]) for d in det.values())
        else NAN
    )
    boxes = [d["box"].get("ap50", NAN) for d in det.values() if "box" in d]
    out["box_map50"] = float(np.nanmean(boxes)) if scored and boxes and np.isfinite(boxes).any() else NAN

    ref_grade = [r.ref_grade for r in records]
    pred_grade = [r.pred_grade for r in records]
    out["grades"] = {
        "scale": "hayashi",
        "labels": list(HAYASHI_LABELS),
        "reference_source": {src: sum(r.ref_grade_source == src for r in records) for src in ("labels", "counts")},
        **grade_agreement(ref_grade, pred_grade, 4),
    }
    per_grade: dict[str, Any] = {}
    for k in range(4):
        sub = [r for r in records if r.ref_grade == k]
        ga = _group_arrays(sub, ALL) if sub else None
        per_grade[str(k)] = {
            "label": HAYASHI_LABELS[k],
            "n_images": len(sub),
            "detection": _detection(sub, ALL, scored) if sub else None,
            "count": count_agreement(ga["n_pred"], ga["n_ref"]) if ga is not None else None,
        }
    out["per_grade"] = per_grade

    d_all, c_all = out["groups"][ALL]["detection"], out["groups"][ALL]["count"]
    out["headline"] = {
        "precision": d_all["precision"],
        "recall": d_all["recall"],
        "f1": d_all["f1"],
        "ap": d_all.get("ap", NAN),
        "ap_sweep": d_all.get("ap_sweep", NAN),
        "ap_strict": d_all.get("ap_strict", NAN),
        "ar": d_all.get("ar", NAN),
        "box_ap50": d_all.get("box", {}).get("ap50", NAN) if "box" in d_all else NAN,
        "count_mae": c_all["mae"],
        "count_pearson_r": c_all["pearson_r"],
        "count_icc_2_1": c_all["icc_2_1"],
        "grade_accuracy": out["grades"]["accuracy"],
        "grade_qwk": out["grades"]["quadratic_weighted_kappa"],
    }
    out["ci95"] = _bootstrap(records, faces, cfg, scored) if n else {}
    out["pr_curve"] = _pr_curve(records) if scored and n else None
    out["best_f1"] = best_f1(records) if scored and n else None
    out["class_confusion"] = class_confusion_table(records)
    out["by_size"] = by_size(records)
    return out
