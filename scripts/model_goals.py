"""The lesion model's goal figures, measured through the whole counting pipeline, with bootstrap intervals.

    python scripts/model_goals.py --model models/lesioncount-unet24.onnx \
        --int8 models/lesioncount-unet24.int8.onnx --valid ../shared/data/acne04/valid --out runs/goals.json

On every photo of ``--valid`` (VOC boxes beside each JPEG, ``expert_points.coco.json`` beside them):

- the count and the Hayashi grade the tool reports, against the file-name grade and the box counts;
- F1 against the experts' points (centres within max(radius, 8 px), Hungarian matching) and count r, of
  the expert-style marks when the model has an experts' heatmap, else of the counted marks;
- a simulated re-take (rotation <= 3 degrees, zoom 1.04-1.12x, +-0.3 stop, JPEG 90; seeded): mean
  |difference|, share within max(2 lesions, 15%), share with the same reported grade;
- the photo one stop darker (linear light): total count change;
- the int8 model against fp32: total count change;
- the raw network on the whole frame (``whole_frame``) for comparison with the full pipeline.

Intervals are 95% percentile bootstraps over photos (1000 resamples).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from lesioncount.bootstrap import bootstrap_ci
from lesioncount.count import hayashi_grade
from lesioncount.data import (
    AnnotationError,
    hayashi_grade_from_name,
    read_coco,
    read_voc_file,
    source_face,
    split_half,
    voc_files,
)
from lesioncount.evaluate.metrics import pearson_r
from lesioncount.evaluate.retake import retake
from lesioncount.matching import match_centres, reference_tolerance_px
from lesioncount.pipeline import LesionCounter
from lesioncount.synth import change_exposure
from lesioncount.types import ACNE_CLASSES, CountResult


def _acne(r: CountResult) -> np.ndarray:
    return np.array([(les.x, les.y) for les in r.lesions if les.cls in ACNE_CLASSES]).reshape(-1, 2)


def _grade(r: CountResult) -> int:
    h = r.grades.get("hayashi")
    return int(h["grade"]) if h else -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--int8", default=None)
    ap.add_argument("--valid", type=Path, default=Path("../shared/data/acne04/valid"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time flip averaging on or off (default: as the model's contract says)",
    )
    ap.add_argument("--acne-threshold", type=float, default=None, help="override the model's acne threshold")
    ap.add_argument(
        "--half",
        type=int,
        choices=(1, 2),
        default=None,
        help="only this fixed half of the photos' source faces (lesioncount.data.split_half): report a model "
        "trained on the other half's expert points",
    )
    args = ap.parse_args()
    try:
        xmls = voc_files(args.valid, limit=args.limit)
    except AnnotationError as e:
        print(e, file=sys.stderr)
        return 2
    if args.half is not None:
        xmls = [x for x in xmls if split_half(x.name) == args.half]
    experts = {a.file_name: a for a in read_coco(args.valid / "expert_points.coco.json", {"acne": "inflammatory"})}
    opts = {"threads": args.threads, "flip_average": args.flip_average}
    fp32 = LesionCounter(args.model, **opts)
    whole = LesionCounter(args.model, whole_frame=True, **opts)
    int8 = LesionCounter(args.int8, **opts) if args.int8 else None
    with_experts = fp32.predictor.has_experts and fp32.spec.expert_threshold > 0
    if args.acne_threshold is not None:
        for counter in (fp32, whole, int8):
            if counter is not None:  # only the acne classes: the scar threshold stays the model's
                counter.thresholds |= dict.fromkeys(ACNE_CLASSES, args.acne_threshold)
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.perf_counter()
    for xml in track(xmls, description="photos"):
        ann = read_voc_file(xml)
        path = xml.with_name(ann.file_name)
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        r = fp32.count(image, name=str(path))
        again = fp32.count(retake(image, rng).image)
        dark = fp32.count(change_exposure(image, -1.0))
        raw = whole.count(image)
        row = {
            "file": ann.file_name,
            "grade_ref": hayashi_grade_from_name(ann.file_name),
            "n_boxes": len(ann.lesions),
            "n": r.counts["total_acne"],
            "grade": _grade(r),
            "n_retake": again.counts["total_acne"],
            "grade_retake": _grade(again),
            "n_dark": dark.counts["total_acne"],
            "n_raw": raw.counts["total_acne"],
            "face_found": r.face.found,
        }
        if int8 is not None:
            row["n_int8"] = int8.count(image).counts["total_acne"]
        ex = experts.get(ann.file_name)
        if ex is not None:
            ref = np.array([(les.x, les.y) for les in ex.lesions]).reshape(-1, 2)
            tol = reference_tolerance_px([les.radius or 0.0 for les in ex.lesions], mode="radius", min_px=8.0)
            # A model with an experts' heatmap answers the experts with its expert-style marks; otherwise
            # the counted marks answer them.
            pred = _acne(r) if not with_experts else np.array([(m.x, m.y) for m in r.expert_marks]).reshape(-1, 2)
            i, _, _ = match_centres(pred, ref, tol)
            row |= {
                "n_expert": len(ref),
                "n_vs_experts": len(pred),
                "tp": len(i),
                "fp": len(pred) - len(i),
                "fn": len(ref) - len(i),
            }
        rows.append(row)
    elapsed = time.perf_counter() - t0
    figs, cis = _figures(rows, args.seed)
    _print(figs, cis, len(rows), elapsed)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"figures": figs, "intervals": cis, "rows": rows}, indent=1))
    return 0


def _figures(rows: list[dict], seed: int) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    def stats(idx: np.ndarray) -> dict[str, float]:
        sel = [rows[i] for i in idx]
        n = np.array([r["n"] for r in sel], float)
        g = np.array([r["grade"] for r in sel])
        gref = np.array([r["grade_ref"] for r in sel])
        boxes = np.array([r["n_boxes"] for r in sel], float)
        n_rt = np.array([r["n_retake"] for r in sel], float)
        g_rt = np.array([r["grade_retake"] for r in sel])
        raw = np.array([r["n_raw"] for r in sel], float)
        diff = np.abs(n_rt - n)
        out = {
            "hayashi_acc": float(np.mean(g == gref)),
            "count_r_boxes": pearson_r(n, boxes),
            "raw_hayashi_acc": float(np.mean([hayashi_grade(int(v)) == gr for v, gr in zip(raw, gref, strict=True)])),
            "raw_count_r_boxes": pearson_r(raw, boxes),
            "retake_mean_abs_diff": float(diff.mean()),
            "retake_within": float(np.mean(diff <= np.maximum(2, 0.15 * np.maximum(n, n_rt)))),
            "retake_same_grade": float(np.mean(g_rt == g)),
            "dark_change": float(sum(r["n_dark"] for r in sel) / max(1, n.sum()) - 1),
            "face_found": float(np.mean([r["face_found"] for r in sel])),
        }
        if "n_int8" in sel[0]:
            out["int8_change"] = float(sum(r["n_int8"] for r in sel) / max(1, n.sum()) - 1)
        ex = [r for r in sel if "n_expert" in r]
        if ex:
            tp, fp, fn = (sum(r[k] for r in ex) for k in ("tp", "fp", "fn"))
            out["f1_experts"] = 2 * tp / max(1, 2 * tp + fp + fn)
            out["count_r_experts"] = pearson_r([r.get("n_vs_experts", r["n"]) for r in ex], [r["n_expert"] for r in ex])
        return out

    figs = stats(np.arange(len(rows)))
    # Copies of one face (a Roboflow export's) are drawn together; valid holds one photo per face.
    faces = [source_face(r["file"]) for r in rows]
    return figs, bootstrap_ci(len(rows), stats, n_boot=1000, rng=seed, groups=faces)


GOALS = {
    "hayashi_acc": ("Hayashi grade accuracy (reported grade)", ">=", 0.85),
    "count_r_boxes": ("count r vs VOC boxes", ">=", 0.92),
    "f1_experts": ("F1 vs expert points", ">=", 0.40),
    "count_r_experts": ("count r vs expert points", ">=", 0.65),
    "retake_mean_abs_diff": ("re-take mean |difference| (lesions)", "<=", 1.0),
    "retake_within": ("re-takes within max(2, 15%)", ">=", 0.90),
    "retake_same_grade": ("re-takes with the same grade", ">=", 0.95),
    "dark_change": ("total count change, one stop darker", "abs<=", 0.15),
    "int8_change": ("total count change, int8 vs fp32", "abs<=", 0.02),
    "raw_hayashi_acc": ("raw network, whole frame: Hayashi accuracy", "", None),
    "raw_count_r_boxes": ("raw network, whole frame: count r vs boxes", "", None),
    "face_found": ("face found", "", None),
}


def _print(figs: dict[str, float], cis: dict[str, tuple[float, float]], n: int, elapsed: float) -> None:
    t = Table(title=f"model goals on {n} photos ({elapsed:.0f} s)")
    for c in ("figure", "value", "95% interval", "goal", "met"):
        t.add_column(c)
    for key, (label, op, goal) in GOALS.items():
        if key not in figs:
            continue
        v = figs[key]
        lo, hi = cis.get(key, (float("nan"), float("nan")))
        met = ""
        if goal is not None:
            ok = v >= goal if op == ">=" else (v <= goal if op == "<=" else abs(v) <= goal)
            met = "yes" if ok else "no"
        t.add_row(label, f"{v:.3f}", f"{lo:.3f} - {hi:.3f}", f"{op} {goal}" if goal is not None else "", met)
    Console().print(t)


if __name__ == "__main__":
    raise SystemExit(main())
