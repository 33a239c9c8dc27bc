"""``lesioncount evaluate``: score a model or a rater against labels (a thin wrapper over ``evaluate.run``)."""

from __future__ import annotations

import argparse
import math
from typing import Any

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_cli(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate",
        help="score counts and detections against labelled photos (metrics.json, per_image.csv, report.html)",
        description=(
            "Score the counting core (--photos), saved count JSON predictions (--predictions) or a second label "
            "set (--against, inter-rater) against reference LABELS: a COCO .json (boxes or point + radius), a "
            "folder of Pascal VOC .xml or a folder of YOLO .txt. Writes metrics.json, per_image.csv and "
            "report.html to --out and prints the headline numbers."
        ),
    )
    p.add_argument("labels", help="reference labels: COCO .json, VOC folder or YOLO folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--photos", help="folder of photos: count them with the model, then score")
    src.add_argument("--predictions", help="folder of count JSON files (what lesioncount count --out writes) to score")
    src.add_argument("--against", metavar="LABELS_B", help="a second label set, scored against LABELS (inter-rater)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--config", help="YAML file of evaluation settings (keys of EvalConfig); flags override it")
    p.add_argument("--image-folder", help="photos for the report gallery (and YOLO image sizes)")
    p.add_argument(
        "--tolerance",
        choices=["radius", "half_diagonal", "fixed"],
        dest="tolerance_mode",
        help="centre tolerance: reference radius (default), half its box diagonal, or fixed px",
    )
    p.add_argument("--tolerance-scale", type=float, help="factor on the radius or half diagonal (default 1)")
    p.add_argument("--min-tolerance-px", type=float, help="tolerance floor in label pixels (default 8)")
    p.add_argument("--iou", type=float, dest="iou_threshold", help="box IoU for a box match and mAP (default 0.5)")
    p.add_argument("--class-agnostic", action="store_true", default=None, help="report class-agnostic numbers only")
    p.add_argument(
        "--class-map",
        action="append",
        default=[],
        metavar="NAME=CLASS",
        help="map a source class name to ours (inflammatory, comedone, scar, lesion); repeatable",
    )
    p.add_argument("--yolo-names", help="comma-separated YOLO class names (else data.yaml beside the labels)")
    p.add_argument(
        "--grade-from",
        choices=["auto", "labels", "counts"],
        help="reference Hayashi grade: from the labels where given (auto), labels only, or counts",
    )
    p.add_argument(
        "--marks",
        choices=["counted", "expert"],
        help="score the counted lesions (default) or the expert-style marks of a model with an experts' heatmap",
    )
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples for 95%% intervals (default 1000; 0: none)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default 0)")
    p.add_argument("--worst", type=int, help="photos in the report's worst-photo gallery (default 12)")
    p.add_argument(
        "--skip-missing",
        action="store_const",
        const="skip",
        dest="missing",
        help="leave out labelled photos with no prediction/photo instead of failing",
    )
    p.add_argument("--model", help="model .onnx for --photos (default: $LESIONCOUNT_MODEL or the shipped model)")
    p.add_argument("--threshold", type=float, help="one score threshold for all classes (--photos)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for --photos (default 1)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per process for --photos")
    p.add_argument("--save-predictions", help="with --photos: also write each photo's count JSON here")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument(
        "--coco",
        action="store_true",
        help="also write reference.coco.json and predictions.coco.json (COCO results: pycocotools, CVAT, Label Studio)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run_evaluate)


_CONFIG_FLAGS = (
    "tolerance_mode",
    "tolerance_scale",
    "min_tolerance_px",
    "iou_threshold",
    "class_agnostic",
    "grade_from",
    "bootstrap",
    "seed",
    "worst",
    "missing",
    "marks",
)


def _config(args: argparse.Namespace) -> Any:
    from lesioncount.config import from_dict, load_yaml
    from lesioncount.evaluate.image_eval import EvalConfig, EvaluateError

    over: dict[str, Any] = {k: getattr(args, k) for k in _CONFIG_FLAGS if getattr(args, k, None) is not None}
    if args.class_map:
        cmap = {}
        for item in args.class_map:
            name, sep, cls = item.partition("=")
            if not sep or not name.strip() or not cls.strip():
                raise EvaluateError(f"--class-map {item!r}: expected NAME=CLASS, e.g. 'papule=inflammatory'")
            cmap[name.strip()] = cls.strip()
        over["class_map"] = cmap
    if args.config:
        return load_yaml(EvalConfig, args.config, over)
    return from_dict(EvalConfig, over, where="evaluate flags")


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``lesioncount evaluate``; exit 0 on success, 2 when an input is unusable."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lesioncount.config import ConfigError
    from lesioncount.data import AnnotationError
    from lesioncount.evaluate import run
    from lesioncount.evaluate.image_eval import EvaluateError
    from lesioncount.io import ImageReadError
    from lesioncount.report.evaluate_html import matching_rule, run_facts, write_evaluation

    console = Console(stderr=True)
    try:
        import matplotlib  # noqa: F401
        import scipy  # noqa: F401
    except ImportError as e:
        console.print(f"error: evaluate needs the 'eval' extra ({e}): pip install 'lesioncount[eval]'", markup=False)
        return EXIT_BAD_INPUT
    bar = Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.no_progress,
    )
    task = bar.add_task("photos", total=None)

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total or None)

    try:
        cfg = _config(args)
        yolo = [n.strip() for n in args.yolo_names.split(",")] if args.yolo_names else None
        labels = run.load_labels(args.labels, class_map=cfg.class_map, yolo_names=yolo, image_folder=args.image_folder)
        with bar:
            if args.photos:
                result = run.evaluate_photos(
                    labels,
                    args.photos,
                    cfg,
                    model=args.model,
                    threshold=args.threshold,
                    jobs=args.jobs,
                    threads=args.threads,
                    progress=progress,
                    save_predictions=args.save_predictions,
                )
            elif args.predictions:
                result = run.evaluate_predictions(
                    labels, args.predictions, cfg, photos=args.image_folder, progress=progress
                )
            else:
                other = run.load_labels(
                    args.against, class_map=cfg.class_map, yolo_names=yolo, image_folder=args.image_folder
                )
                result = run.evaluate_raters(labels, other, cfg, photos=args.image_folder, progress=progress)
        paths = write_evaluation(result, args.out, report=not args.no_report)
        if args.coco:
            paths |= run.write_coco_pair(result, args.out)
    except (AnnotationError, EvaluateError, ConfigError, ImageReadError, FileNotFoundError) as e:
        console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT

    out = Console()
    out.print(headline_table(result.metrics))
    for line in [matching_rule(result.metrics), *run_facts(result.metrics)]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for name, path in paths.items():
        console.print(f"{name}: {path}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def headline_table(metrics: dict[str, Any]) -> Any:
    """The terminal summary: headline numbers with their 95% intervals, then one row per class group."""
    from rich.table import Table

    from lesioncount.report.evaluate_html import photos_and_faces

    t = Table(title=f"lesioncount evaluate: {photos_and_faces(metrics)} ({metrics['mode']})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    ci = metrics.get("ci95", {})
    for k, v in metrics["headline"].items():
        if k in ("ap", "ap_sweep", "ap_strict", "ar", "box_ap50") and not metrics.get("scored"):
            continue
        lo, hi = ci.get(k, (None, None))
        t.add_row(k, _fmt(v), f"{_fmt(lo)} – {_fmt(hi)}" if lo is not None else "–")
    for g, m in metrics["groups"].items():
        d, c = m["detection"], m["count"]
        t.add_row(f"{g}: ref/pred lesions", f"{m['n_ref']}/{m['n_pred']}", "")
        t.add_row(f"{g}: P / R / F1", f"{_fmt(d['precision'])} / {_fmt(d['recall'])} / {_fmt(d['f1'])}", "")
        t.add_row(
            f"{g}: count MAE / r / ICC(2,1)", f"{_fmt(c['mae'])} / {_fmt(c['pearson_r'])} / {_fmt(c['icc_2_1'])}", ""
        )
    return t
