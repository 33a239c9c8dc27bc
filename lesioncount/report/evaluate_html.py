"""The evaluation report: one self-contained HTML page with the metrics and matplotlib plots as PNG.

Presentation only: every number and array shown comes from ``lesioncount.evaluate`` (metrics dict, plot
data, worst-photo overlays). Plots use matplotlib's object API (no pyplot global state).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lesioncount.evaluate.image_eval import Overlay

#: Longest side of a gallery photo in the report, in pixels.
GALLERY_SIDE_PX = 560

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1rem}
.gallery figure{margin:0;min-width:0}.gallery img{width:100%;display:block}
figcaption{font-size:.85rem;color:#555;overflow-wrap:anywhere;line-height:1.3;margin-top:.25rem}
.wide{overflow-x:auto;max-width:100%}.wide table{font-size:.85rem}.wide td,.wide th{padding:.2rem .4rem}
.note{color:#8a5a00}code{background:#f4f4f4;padding:0 .2rem}
"""


def _num(v: Any) -> str:
    """A setting as written (8, 0.5, 1.25), not with a metric's three decimals."""
    return f"{v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else _fmt(v)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _png(fig: Figure, fmt: str = "png") -> str:
    """The figure as a data URI (PNG for plots; JPEG for photos, a tenth of the size)."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        fig.savefig(buf, format="jpeg", dpi=100, pil_kwargs={"quality": 85})
    else:
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w_in: float = 4.6, h_in: float = 4.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(w_in, h_in))


def plot_count_scatter(ref: Sequence[float], pred: Sequence[float]) -> str:
    """Predicted vs reference count per photo, with the identity line; returns a PNG data URI."""
    fig = _figure()
    ax = fig.add_subplot()
    hi = max([1.0, *ref, *pred]) * 1.05
    ax.plot([0, hi], [0, hi], color="#888", lw=1, ls="--", label="identity")
    ax.scatter(ref, pred, s=14, alpha=0.6, color="#1f77b4")
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="reference count", ylabel="predicted count", title="Counts per photo")
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    return _png(fig)


def plot_bland_altman(
    mean: Sequence[float], diff: Sequence[float], bias: float | None, low: float | None, high: float | None
) -> str:
    """Bland-Altman plot: difference vs mean of the two counts, bias and 95% limits of agreement."""
    fig = _figure(5.2, 4.0)
    ax = fig.add_subplot()
    ax.scatter(mean, diff, s=14, alpha=0.6, color="#1f77b4")
    for v, name, ls in ((bias, "bias", "-"), (low, "-1.96 SD", "--"), (high, "+1.96 SD", "--")):
        if v is not None and math.isfinite(v):
            ax.axhline(v, color="#d62728", ls=ls, lw=1)
            ax.annotate(
                f"{name} {v:.1f}",
                xy=(1.0, v),
                xycoords=("axes fraction", "data"),
                fontsize=8,
                ha="right",
                va="bottom",
                color="#d62728",
            )
    ax.axhline(0, color="#888", lw=0.8)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.08 * (hi - lo))  # room above the upper limit's label, which sits on its line
    ax.set(xlabel="mean of reference and predicted count", ylabel="predicted - reference", title="Bland-Altman")
    return _png(fig)


def plot_pr_curve(recall: Sequence[float], precision: Sequence[float], ap: float | None) -> str:
    """Precision-recall curve as the score threshold falls."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(recall, precision, color="#1f77b4", lw=1.5, drawstyle="steps-post")
    title = "Precision-recall (centre matching)" + (f", AP {ap:.3f}" if ap is not None and math.isfinite(ap) else "")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_threshold_curves(recall: Sequence[float], precision: Sequence[float], threshold: Sequence[float]) -> str:
    """Precision, recall and F1 against the score threshold (as Ultralytics' F1 curve), best F1 marked."""
    r, p, t = (np.asarray(v, float) for v in (recall, precision, threshold))
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    fig = _figure()
    ax = fig.add_subplot()
    for y, name, colour in ((p, "precision", "#1f77b4"), (r, "recall", "#ff7f0e"), (f1, "F1", "#2ca02c")):
        ax.plot(t, y, color=colour, lw=1.5, label=name)
    if len(f1):
        k = int(np.argmax(f1))
        ax.axvline(t[k], color="#2ca02c", ls="--", lw=1)
        ax.annotate(f"best F1 {f1[k]:.2f} at {t[k]:.2f}", (t[k], f1[k]), textcoords="offset points", xytext=(4, 6))
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold", ylabel="value", title="Against the score threshold")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Grade confusion matrix, rows reference, columns predicted, with counts written in."""
    a = np.asarray(cm)
    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.imshow(a, cmap="Blues")
    k = len(labels)
    ax.set_xticks(range(k), labels, rotation=30, ha="right")
    ax.set_yticks(range(k), labels)
    hi = a.max() if a.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(a[i, j]), ha="center", va="center", color="white" if a[i, j] > hi / 2 else "black")
    ax.set(xlabel="predicted grade", ylabel="reference grade", title="Hayashi grade")
    return _png(fig)


def plot_overlay(ov: Overlay) -> str:
    """One photo with reference lesions (circles) and predictions (crosses), matched or not."""
    photo = None
    if ov.photo and Path(ov.photo).is_file():
        from lesioncount.io import ImageReadError, read_image

        try:
            photo = read_image(ov.photo)
        except ImageReadError:
            photo = None
    w = ov.width or (photo.shape[1] if photo is not None else 0)
    h = ov.height or (photo.shape[0] if photo is not None else 0)
    if not w or not h:
        pts = np.vstack([ov.pred.xy, ov.ref.xy, [[1.0, 1.0]]])
        w, h = int(pts[:, 0].max() * 1.05) + 1, int(pts[:, 1].max() * 1.05) + 1
    f = min(1.0, GALLERY_SIDE_PX / max(w, h))
    fig = _figure(5.6 * w / max(w, h), 5.6 * h / max(w, h))
    ax = fig.add_axes((0, 0, 1, 1))
    if photo is not None:
        import cv2

        small = cv2.resize(photo, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        ax.imshow(small, extent=(0, w, h, 0))
    else:
        ax.set_facecolor("#333")
    from matplotlib.patches import Circle

    for (x, y), r, hit in zip(ov.ref.xy, ov.ref_tolerance_px, ov.ref_matched, strict=True):
        ax.add_patch(
            Circle((x, y), float(r), fill=False, lw=1.2, color="#2ca02c" if hit else "#ff7f0e", ls="-" if hit else "--")
        )
    if len(ov.pred):
        hit = ov.pred_matched
        ax.scatter(ov.pred.xy[hit, 0], ov.pred.xy[hit, 1], marker="+", s=40, lw=1.2, color="#1f9bff")
        ax.scatter(ov.pred.xy[~hit, 0], ov.pred.xy[~hit, 1], marker="x", s=30, lw=1.2, color="#ff2020")
    ax.set(xlim=(0, w), ylim=(h, 0))
    ax.axis("off")
    return _png(fig, "jpeg")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _fmt(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    # Wide tables scroll inside the page instead of running past it.
    return f"<div class=wide><table><tr>{th}</tr>{body}</table></div>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _ci(ci: Mapping[str, Any], key: str) -> str:
    v = ci.get(key)
    if not v or v[0] is None or (isinstance(v[0], float) and not math.isfinite(v[0])):
        return "–"
    return f"{_fmt(v[0])} – {_fmt(v[1])}"


def grade_reference(metrics: Mapping[str, Any]) -> str:
    """Where the reference grades came from, in words: the label set's own grade or its lesion counts."""
    src = (metrics.get("grades") or {}).get("reference_source") or {}
    n_labels, n_counts = int(src.get("labels", 0)), int(src.get("counts", 0))
    words = {
        "labels": "the label set's own grade (hayashi_grade, or the ACNE04 file name)",
        "counts": "the reference's lesion counts",
    }
    if n_labels and n_counts:
        return f"{words['labels']} on {n_labels} photos, {words['counts']} on {n_counts}"
    return words["labels"] if n_labels else words["counts"]


def photos_and_faces(metrics: Mapping[str, Any]) -> str:
    """'288 photos of 96 faces' where copies of a face were drawn together for the intervals, else '283 photos'."""
    n, faces = metrics["n_images"], metrics.get("n_faces", metrics["n_images"])
    return f"{n} photos" if faces == n else f"{n} photos of {faces} faces"


def matching_rule(metrics: Mapping[str, Any]) -> str:
    """How predictions were matched to the reference, in one sentence (the terminal and the report say it)."""
    cfg = metrics.get("config", {})
    return (
        f"Centre matching within the reference {_fmt(cfg.get('tolerance_mode'))} x "
        f"{_num(cfg.get('tolerance_scale'))}, at least {_num(cfg.get('min_tolerance_px'))} px; box matching at "
        f"IoU >= {_num(cfg.get('iou_threshold'))}"
    )


def run_facts(metrics: Mapping[str, Any]) -> list[str]:
    """One line per model scored (name, version, sha256, thresholds, count softness), the averaging rule, the
    notes and the classes left out: what a reader needs to reproduce or trust the numbers."""
    lines = []
    if (metrics.get("config") or {}).get("marks") == "expert":
        lines.append("scored: the expert-style marks (--marks expert), as one untyped class, not the counted lesions")
    for m in metrics.get("models", []):
        th = m.get("thresholds") or {}
        at = ", ".join(f"{k} {v:g}" for k, v in th.items()) if th else "thresholds not recorded"
        if m.get("count_softness"):
            at += f", soft acne count (softness {m['count_softness']:g})"
        lines.append(
            f"model {m.get('name')} {m.get('version')} (sha256 {str(m.get('sha256'))[:12]}...) at {at}; "
            f"{m.get('n_images')} photos"
        )
    speed = metrics.get("speed_ms_per_photo") or {}
    if speed:
        stages = [k for k in ("decode", "face", "preprocess", "inference", "postprocess") if k in speed]
        parts = ", ".join(f"{k} {speed[k]['median_ms']:.0f}" for k in stages)
        total = f"; total {speed['total']['median_ms']:.0f} ms" if "total" in speed else ""
        lines.append(f"speed, median ms per photo as counted: {parts}{total}")
    bf = metrics.get("best_f1")
    if bf:
        lines.append(
            f"best F1 {bf['f1']:.3f} at score threshold {bf['threshold']:.3f} "
            f"(precision {bf['precision']:.3f}, recall {bf['recall']:.3f}; all lesions as one class)"
        )
    if metrics.get("averaging"):
        lines.append(f"averaging: {metrics['averaging']}")
    if metrics.get("grades"):
        lines.append(f"reference grade: {grade_reference(metrics)} (--grade-from labels or counts chooses)")
    lines += [str(n) for n in metrics.get("notes", [])]
    lines += [f"{c}: {why}" for c, why in metrics.get("skipped_classes", {}).items()]
    return lines


def render_evaluate_report(metrics: Mapping[str, Any], plots: Mapping[str, Any], worst: Sequence[Overlay]) -> str:
    """The report page as one HTML string (images inlined): headline, per class, per grade, plots, worst photos."""
    head = metrics["headline"]
    ci = metrics.get("ci95", {})
    names = {
        "precision": "Precision",
        "recall": "Recall",
        "f1": "F1",
        "ap": "AP, centre matching (all lesions as one class; over the counted lesions, so the curve ends at the "
        "recall of the counting threshold)",
        "ap_sweep": "AP over tolerances 0.5-2x (the point analogue of AP50-95)",
        "ap_strict": "AP at half the tolerance",
        "ar": "AR, recall over tolerances 0.5-2x",
        "box_ap50": "AP@0.5 IoU, boxes (all lesions as one class)",
        "count_mae": "Count MAE",
        "count_pearson_r": "Count Pearson r",
        "count_icc_2_1": "Count ICC(2,1)",
        "grade_accuracy": f"Hayashi grade accuracy (reference grade: {grade_reference(metrics)})",
        "grade_qwk": "Grade quadratic weighted kappa",
    }
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>lesioncount evaluation</title>"
        f"<style>{_CSS}</style></head><body><h1>lesioncount evaluation</h1>"
    ]
    parts.append(
        f"<p>{_fmt(photos_and_faces(metrics))}, mode <code>{_fmt(metrics.get('mode'))}</code>. "
        f"{html.escape(matching_rule(metrics))}. "
        "Intervals: 95% bootstrap over source faces (the copies of a photo in a Roboflow export are drawn "
        "together; any other photo is its own face).</p>"
    )
    for line in run_facts(metrics):
        parts.append(f"<p class='note'>{html.escape(line)}</p>")
    parts.append("<h2>Headline</h2>")
    parts.append(
        _table(["metric", "value", "95% CI"], [(names[k], head.get(k), _Raw(_ci(ci, k))) for k in names if k in head])
    )

    parts += _groups_section(metrics)
    parts += _grades_section(metrics)
    parts += _confusion_section(metrics)
    parts += _plots_section(metrics, plots)
    parts += _gallery_section(worst)
    parts.append("</body></html>")
    return "\n".join(parts)


def _groups_section(metrics: Mapping[str, Any]) -> list[str]:
    """Detection and count agreement, one row per group."""
    parts: list[str] = []
    parts.append("<h2>Detection and counts per class</h2>")
    rows: list[tuple[Any, ...]] = []
    for g, m in metrics["groups"].items():
        d, c = m["detection"], m["count"]
        rows.append(
            (
                g,
                m["n_ref"],
                m["n_pred"],
                d["precision"],
                d["recall"],
                d["f1"],
                d.get("ap"),
                d.get("box", {}).get("ap50"),
                c["mae"],
                c["rmse"],
                c["bias"],
                c["pearson_r"],
                c["spearman_r"],
                c["icc_2_1"],
                c["icc_3_1"],
                c["ba_loa_low"],
                c["ba_loa_high"],
            )
        )
    parts.append(
        _table(
            [
                "group",
                "ref",
                "pred",
                "precision",
                "recall",
                "F1",
                "AP",
                "box AP50",
                "MAE",
                "RMSE",
                "bias",
                "Pearson r",
                "Spearman r",
                "ICC(2,1)",
                "ICC(3,1)",
                "LoA low",
                "LoA high",
            ],
            rows,
        )
    )

    return parts


def _grades_section(metrics: Mapping[str, Any]) -> list[str]:
    """Detection and counts per reference grade, and grade agreement."""
    parts: list[str] = []
    parts.append("<h2>Per reference grade</h2>")
    rows = []
    for k, m in metrics["per_grade"].items():
        d, c = m.get("detection") or {}, m.get("count") or {}
        rows.append(
            (
                f"{k} {m['label']}",
                m["n_images"],
                d.get("precision"),
                d.get("recall"),
                d.get("f1"),
                c.get("mae"),
                c.get("bias"),
            )
        )
    parts.append(_table(["grade", "photos", "precision", "recall", "F1", "count MAE", "count bias"], rows))
    gr = metrics["grades"]
    parts.append(
        f"<p>Grade accuracy {_fmt(gr['accuracy'])}, within one grade {_fmt(gr['within_one'])}, quadratic "
        f"weighted kappa {_fmt(gr['quadratic_weighted_kappa'])}; reference grades from labels: "
        f"{_fmt(gr['reference_source'].get('labels'))}, from counts: {_fmt(gr['reference_source'].get('counts'))}."
        "</p>"
    )

    return parts


def _confusion_section(metrics: Mapping[str, Any]) -> list[str]:
    """Recall by reference lesion size, and the class confusion matrix with background (class-agnostic
    matching; rows reference)."""
    parts: list[str] = []
    size_rows = [(r["size"], r["n_ref"], r["found"], r["recall"]) for r in metrics.get("by_size") or [] if r["n_ref"]]
    if size_rows:
        parts += ["<h2>Recall by lesion size</h2>", _table(["reference size", "lesions", "found", "recall"], size_rows)]
    cc = metrics.get("class_confusion")
    if cc and len(cc["labels"]) >= 2:
        rows = [(f"reference {a}", *row) for a, row in zip(cc["labels"], cc["matrix"], strict=True)]
        parts += [
            "<h2>Class confusion (with background)</h2>",
            "<p>Lesions matched whatever their class; a missed reference is predicted <i>background</i>, a "
            "prediction with no reference is <i>background</i> in the reference.</p>",
            _table(["", *(f"predicted {b}" for b in cc["labels"])], rows),
        ]
    return parts


def _plots_section(metrics: Mapping[str, Any], plots: Mapping[str, Any]) -> list[str]:
    """Count scatter, Bland-Altman, precision-recall and grade confusion."""
    parts: list[str] = []
    parts.append("<h2>Plots</h2><div class='plots'>")
    c_all = metrics["groups"]["all"]["count"]
    imgs = [
        ("Predicted vs reference count (class-agnostic)", plot_count_scatter(plots["ref_count"], plots["pred_count"])),
        (
            "Bland-Altman of counts",
            plot_bland_altman(
                plots["ba_mean"], plots["ba_diff"], c_all["bias"], c_all["ba_loa_low"], c_all["ba_loa_high"]
            ),
        ),
    ]
    pr = metrics.get("pr_curve")
    if pr and pr["recall"]:
        imgs.append(("Precision-recall", plot_pr_curve(pr["recall"], pr["precision"], metrics["headline"].get("ap"))))
        imgs.append(
            (
                "Precision, recall and F1 against the score threshold",
                plot_threshold_curves(pr["recall"], pr["precision"], pr["threshold"]),
            )
        )
    gr = metrics["grades"]
    imgs.append(("Hayashi grade confusion", plot_confusion(gr["confusion"], gr["labels"])))
    for cap, uri in imgs:
        parts.append(
            f"<figure><img src='{uri}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}</figcaption></figure>"
        )
    parts.append("</div>")

    return parts


def _gallery_section(worst: Sequence[Overlay]) -> list[str]:
    """The worst photos (largest count error) with their matches drawn."""
    parts: list[str] = []
    if worst:
        parts.append(
            "<h2>Worst photos (largest count error)</h2><p>Reference lesions: circles at their matching "
            "tolerance, green when found, orange dashed when missed. Predictions: blue + when matched, "
            "red x when not.</p><div class='gallery'>"
        )
        for ov in worst:
            cap = f"{ov.file_name}: reference {ov.n_ref}, predicted {ov.n_pred} ({ov.n_pred - ov.n_ref:+d})"
            parts.append(
                f"<figure><img src='{plot_overlay(ov)}' alt='{html.escape(ov.file_name)}'>"
                f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            )
        parts.append("</div>")
    return parts


def write_evaluate_report(
    path: str | os.PathLike[str], metrics: Mapping[str, Any], plots: Mapping[str, Any], worst: Sequence[Overlay]
) -> Path:
    """Write the report page to ``path``; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_evaluate_report(metrics, plots, worst), encoding="utf-8")
    return p


def write_evaluation(result: Any, out_dir: str | os.PathLike[str], *, report: bool = True) -> dict[str, Path]:
    """``metrics.json`` and ``per_image.csv`` (``evaluate.run.write_outputs``), and ``report.html`` unless
    ``report`` is False.

    Args:
        result: an ``evaluate.run.EvalResult``.
        out_dir: the folder to write into.

    Returns:
        name -> path of each file written.
    """
    from lesioncount.evaluate.run import plot_data, write_outputs

    paths = write_outputs(result, out_dir)
    if report:
        paths["report"] = Path(out_dir) / "report.html"
        write_evaluate_report(paths["report"], result.metrics, plot_data(result), result.worst)
    return paths
