"""CLI wrappers for the core subcommands: ``count``, ``train``, ``calibrate``, ``export``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lesioncount.io import DEFAULT_MAX_MEGAPIXELS, ImageReadError, find_images, load_image, write_image, write_json
from lesioncount.types import CLASSES, COUNT_KEYS, TOTAL_ACNE, CountResult


def add_count(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "count",
        help="count lesions in photos or folders",
        description=(
            "Count acne lesions and scars. Writes OUT/<name>.json per photo, where <name> is the photo's path "
            "inside the folder given (or its file name), extension included; summary.csv (every result in OUT, "
            "kept current as the run goes) and failures.csv; with --overlay OUT/<name>.overlay.jpg."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="photos or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overlay", action="store_true", help="also write OUT/<name>.overlay.jpg")
    p.add_argument("--model", help="ONNX model (default: the shipped model)")
    p.add_argument("--int8", action="store_true", help="use the int8 model (faster, counts within ~2%%)")
    p.add_argument("--threshold", type=float, help="one score threshold for every class (default: the model's)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_MEGAPIXELS,
        help="refuse larger photos (default %(default)g)",
    )
    p.add_argument(
        "--whole-frame",
        action="store_true",
        help="count everywhere in the frame, with no face or skin test (close-ups you vouch for)",
    )
    p.set_defaults(func=run_count)


def run_count(args: argparse.Namespace) -> int:
    import errno

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lesioncount.io import remove_stale_temps, scan_inputs, show_path
    from lesioncount.pipeline import LesionCounter
    from lesioncount.results import (
        OutputError,
        Summary,
        check_output_folder,
        file_as_folder,
        result_names,
        write_failures,
    )

    # soft wrap: error lines stay whole for grep and logs; no markup or highlighting of file names
    console = Console(stderr=True, soft_wrap=True, highlight=False)

    def error(msg: str) -> None:
        console.print(f"[red]error:[/red] {escape(msg)}")

    out = Path(args.out)
    problem = file_as_folder(out)
    if problem:
        error(problem)
        return 2
    try:
        inputs = scan_inputs(args.paths, exclude=[out])
        names = result_names(inputs.names, inputs.photos)
    except OutputError as e:
        error(str(e))
        return 2
    if not inputs.photos:
        error(
            "no photos found in the given paths" + (f" ({len(inputs.skipped)} files skipped)" if inputs.skipped else "")
        )
        _print_skipped(console, inputs.skipped)
        return 2
    try:
        counter = LesionCounter(
            args.model,
            int8=args.int8,
            threads=args.threads,
            threshold=args.threshold,
            max_megapixels=args.max_megapixels,
            whole_frame=args.whole_frame,
        )
    except (FileNotFoundError, ValueError) as e:
        error(str(e))
        return 2
    try:  # created only now: a refused model or an empty input leaves no empty folder behind
        check_output_folder(out)
    except OutputError as e:
        error(str(e))
        return 2
    remove_stale_temps(out)
    summary = Summary(out)
    results: list[tuple[str, CountResult]] = []
    failures: list[tuple[Path, str]] = []
    fatal: str | None = None
    interrupted = False
    t0 = time.perf_counter()
    try:
        summary.flush()  # a summary left by an earlier run now agrees with the JSONs in the folder
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=len(inputs.photos) < 2,
        ) as progress:
            task = progress.add_task("counting", total=len(inputs.photos))
            for path, rel in zip(inputs.photos, names, strict=True):
                try:
                    result = counter.count(path)
                except ImageReadError as e:
                    failures.append((path, e.reason))
                except (ValueError, OSError) as e:
                    failures.append((path, str(e).splitlines()[0] if str(e) else e.__class__.__name__))
                else:
                    try:
                        doc = _write_result(out, rel, path, result, args)
                    except (ImageReadError, OSError) as e:
                        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                            fatal = f"cannot write in {show_path(out)}: {e.strerror}; stopped after {len(results)}"
                            break
                        failures.append((path, f"result not written ({getattr(e, 'reason', None) or e})"))
                    else:
                        summary.add(rel, doc)
                        results.append((rel, result))
                progress.advance(task)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            summary.flush()
            write_failures(out, failures)
        except OSError as e:
            fatal = fatal or f"cannot write summary.csv in {show_path(out)}: {e.strerror or e} (a rerun rebuilds it)"
    _print_results(results, time.perf_counter() - t0)
    _print_skipped(console, inputs.skipped)
    if failures:
        console.print(f"[red]{len(failures)} photo(s) failed[/red] (listed in failures.csv):")
        for path, why in failures:
            console.print(f"  {escape(show_path(path))}: {escape(why)}")
    if fatal:
        error(fatal)
    if interrupted:
        console.print(f"interrupted: {len(results)} result(s) written, summary.csv lists every result in the folder")
        return 130
    return 1 if failures or fatal else 0


def _write_result(out: Path, rel: str, path: Path, result: CountResult, args: argparse.Namespace) -> dict[str, Any]:
    """Write one photo's overlay (with --overlay) and then its JSON, the mark of a finished photo."""
    from lesioncount.report.overlay import draw_overlay

    doc = result.to_dict()
    if args.overlay:
        image = load_image(path, max_megapixels=args.max_megapixels).image
        overlay = draw_overlay(
            image,
            result.lesions,
            counts=result.counts,
            face_box=result.face.box,
            expert_marks=result.expert_marks,
        )
        write_image(out / (rel.removesuffix(".json") + ".overlay.jpg"), overlay)
    write_json(out / rel, doc)
    return doc


def _print_results(results: list[tuple[str, CountResult]], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from lesioncount.io import show_path

    table = Table(title=f"lesioncount: {len(results)} photo(s) in {seconds:.1f} s")
    for col in ("photo", *COUNT_KEYS, "hayashi", "warnings"):
        # Names and headers fold onto a second line in a narrow terminal rather than lose their ends.
        table.add_column(col, justify="left" if col in ("photo", "warnings") else "right", overflow="fold")
    for rel, r in results[:40]:
        table.add_row(
            show_path(rel.removesuffix(".json")),
            *(str(r.counts[c]) for c in CLASSES),
            str(r.counts[TOTAL_ACNE]),
            _hayashi_cell(r.grades.get("hayashi")),
            str(len(r.warnings)),
        )
    if len(results) > 40:
        table.add_row(f"... {len(results) - 40} more in summary.csv", *[""] * 6)
    Console(highlight=False).print(table)


def _hayashi_cell(hayashi: dict[str, Any] | None) -> str:
    """The grade, and the grades a re-take could give when it is borderline: ``1 (0-1)``; ``-``: not graded."""
    if not hayashi:
        return "-"
    plausible = hayashi.get("plausible_grades") or [hayashi["grade"]]
    if len(plausible) < 2:
        return str(hayashi["grade"])
    return f"{hayashi['grade']} ({plausible[0]}-{plausible[-1]})"


def _print_skipped(console: Any, skipped: list[tuple[Path, str]]) -> None:
    """How many files were passed over and why, grouped by reason, with a few examples each."""
    from collections import defaultdict

    from rich.markup import escape

    from lesioncount.io import show_path

    if not skipped:
        return
    by_reason: dict[str, list[Path]] = defaultdict(list)
    for path, why in skipped:
        by_reason[why].append(path)
    console.print(f"{len(skipped)} file(s) or folder(s) skipped:")
    for why, paths in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(escape(show_path(p)) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        console.print(f"  {len(paths)} {escape(why)}: {shown}")


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a lesion model (needs the `train` extra)",
        description="Train (or resume) a model from a YAML config; see configs/.",
    )
    p.add_argument("--config", required=True, help="YAML config (configs/unet24.yaml made the shipped model)")
    p.add_argument("--steps", type=int, help="override the number of optimiser steps")
    p.add_argument("--out-dir", help="override the output folder (rerun with the same folder to resume)")
    p.add_argument("--data-dir", help="override the training data folder")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lesioncount.config import ConfigError, TrainConfig, load_yaml

    overrides: dict[str, Any] = {}
    for key in ("steps", "out_dir", "data_dir"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    try:
        cfg = load_yaml(TrainConfig, args.config, overrides)
    except ConfigError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        return 2
    from lesioncount.data import AnnotationError
    from lesioncount.train.dataset import TrainingDataError
    from lesioncount.train.loop import train

    with Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("train", total=cfg.steps, info="")

        def report(step: int, total: int, rec: dict[str, float]) -> None:
            progress.update(task, completed=step, info=f"loss {rec['loss']:.3f} {rec['crops_per_s']:.0f} crops/s")

        try:
            final = train(cfg, progress=report)
        except (FileNotFoundError, TrainingDataError, AnnotationError) as e:  # no photos or labels, bad labels
            progress.stop()
            Console(stderr=True).print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
            return 2
    print(f"final checkpoint: {final}")
    return 0


def add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="choose a checkpoint's acne threshold through the counting pipeline (needs the `train` extra)",
        description=(
            "Count the held-out training faces (the training run's split, by source face) through the whole "
            "pipeline, choose the acne threshold with the best Hayashi-grade accuracy (count r breaks ties) and "
            "write it into the checkpoint, ready for `lesioncount export`."
        ),
    )
    p.add_argument(
        "checkpoint",
        help="final.pt from `lesioncount train`, or with --soft-count an exported .onnx (rewritten in place)",
    )
    p.add_argument(
        "--soft-count",
        action="store_true",
        help="choose an exported model's acne threshold and count softness together instead; needs --config",
    )
    p.add_argument("--config", help="with --soft-count: the model's training config (names its held-out faces)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument(
        "--flip-average", action="store_true", help="count with test-time flip averaging (as the model will run)"
    )
    p.add_argument(
        "--heat-sigma",
        type=float,
        default=0.0,
        metavar="PX",
        help="count with the heatmaps smoothed by this Gaussian sigma in output pixels (as the model will run)",
    )
    p.add_argument(
        "--int8",
        metavar="INT8_ONNX",
        help="the int8 twin: give it the acne threshold that matches the fp32 count on the held-out faces",
    )
    p.add_argument(
        "--skip-speckled",
        action="store_true",
        help="leave out held-out photos sprinkled with salt-and-pepper noise (augmented copies): models then "
        "rank as on plain photos (see docs/model.md)",
    )
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lesioncount.train.calibrate import calibrate_checkpoint, calibrate_soft_count

    console = Console(stderr=True)
    if args.soft_count and not args.config:
        console.print("[red]error:[/red] --soft-count needs --config (the model's training config)")
        return 2
    with Progress(
        TextColumn("held-out faces"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        task = progress.add_task("calibrate", total=None)
        try:
            if args.soft_count:
                res = calibrate_soft_count(
                    args.checkpoint,
                    args.config,
                    heat_sigma=args.heat_sigma if args.heat_sigma > 0 else None,
                    int8=args.int8,
                    threads=args.threads,
                    skip_speckled=args.skip_speckled,
                    progress=lambda d, n: progress.update(task, completed=d, total=n),
                )
                return _print_soft(res, args)
            res = calibrate_checkpoint(
                args.checkpoint,
                threads=args.threads,
                flip_average=args.flip_average,
                heat_sigma=args.heat_sigma,
                int8=args.int8,
                skip_speckled=args.skip_speckled,
                progress=lambda d, n: progress.update(task, completed=d, total=n),
            )
        except (FileNotFoundError, ValueError) as e:
            console.print(f"[red]error:[/red] {e}")
            return 2
    print(
        f"acne threshold {res['threshold']:g} on {_held_out(res)}: Hayashi accuracy {_accuracy(res)}, count r "
        f"{res['count_r']:.3f}; written into {args.checkpoint}"
    )
    return _print_int8_threshold(res, args)


def add_train_experts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-experts",
        help="train an experts' heatmap beside a model's frozen network (needs the `train` extra)",
        description=(
            "Train a second acne heatmap on dermatologists' point labels beside the model's frozen network "
            "(its counts, grades and marks stay exactly as they are), on one fixed half of the photos' source "
            "faces with a share of them kept apart; then write the model with both outputs and choose the "
            "experts' threshold on the photos kept apart. Rerunning resumes the training."
        ),
    )
    p.add_argument("model", help="the fp32 .onnx model whose network is kept")
    p.add_argument("--points", required=True, help="COCO point labels (point + radius), photos beside the file")
    p.add_argument("--half", type=int, choices=(1, 2), default=1, help="the half of the source faces to train on")
    p.add_argument("--out", default="runs/experts", help="checkpoints, log and split (default: runs/experts)")
    p.add_argument("--write", required=True, metavar="ONNX", help="where to write the model with both outputs")
    p.add_argument(
        "--int8",
        nargs=2,
        metavar=("INT8_ONNX", "OUT"),
        help="also copy the branch into the model's int8 twin (quantised on 64 tiles of the photos trained on), "
        "written to OUT with the threshold at which its marks on the photos kept apart total the fp32 model's",
    )
    p.add_argument("--steps", type=int, default=3000, help="training steps of 8 crops (default: 3000)")
    p.add_argument("--calib-fraction", type=float, default=0.2, help="share of the half's faces kept apart")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads (default: 2)")
    p.set_defaults(func=run_train_experts)


def run_train_experts(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lesioncount.train.calibrate import calibrate_expert_threshold
    from lesioncount.train.expert import export_expert_model, graft_expert_branch, train_expert_branch

    console = Console(stderr=True)
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(TextColumn("training"), *columns, console=console) as progress:
            task = progress.add_task("train", total=args.steps)
            final = train_expert_branch(
                args.model,
                args.points,
                args.out,
                half=args.half,
                calib_fraction=args.calib_fraction,
                steps=args.steps,
                seed=args.seed,
                threads=args.threads,
                progress=lambda d, n: progress.update(task, completed=d, total=n),
            )
        diff = export_expert_model(args.model, final, args.write)
        if diff > 1e-4:
            console.print(f"[red]error:[/red] the network's own output moved by {diff:.2e} in the export")
            return 1
        split = json.loads((Path(args.out) / "split.json").read_text(encoding="utf-8"))
        if args.int8:
            from lesioncount.train.export import calibration_tiles

            tiles = calibration_tiles(split["train"], n_tiles=64, tile_px=256, seed=args.seed)
            graft_expert_branch(args.write, args.int8[0], args.int8[1], calibration_tiles=tiles)
        photos = split["calibration"]
        with Progress(TextColumn("calibration photos"), *columns, console=console) as progress:
            task = progress.add_task("calibrate", total=len(photos))
            res = calibrate_expert_threshold(
                args.write,
                args.points,
                photos,
                int8=args.int8[1] if args.int8 else None,
                threads=args.threads,
                progress=lambda d, n: progress.update(task, completed=d, total=n),
            )
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    print(
        f"experts' threshold {res['threshold']:g}: F1 {res['f1']:.3f} against {res['points']} expert points on "
        f"{res['photos']} photos kept apart; written with the model to {args.write}"
    )
    if args.int8:
        print(
            f"int8 experts' threshold {res['int8_threshold']:g}: {res['int8_marks']} marks against fp32's "
            f"{res['fp32_marks']} there; written to {args.int8[1]}"
        )
    return 0


def add_ensemble(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ensemble",
        help="make one model of two networks: one on the photo, one on its mirror (needs the `train` extra)",
        description=(
            "Write one ONNX model that runs the first network on the image and the second on its mirror image "
            "and averages their maps: an ensemble of two networks at the cost of test-time flip averaging. The "
            "first model's other outputs (its experts' heatmap) and contract are kept; calibrate the result "
            "after (`lesioncount calibrate OUT --soft-count`)."
        ),
    )
    p.add_argument("first", help="the model run on the image (.onnx; its contract and experts' heatmap are kept)")
    p.add_argument("second", help="the model run on the mirror image (.onnx; its maps only)")
    p.add_argument("--write", required=True, metavar="ONNX", help="where to write the ensemble")
    p.add_argument("--version", help="the ensemble's model version (default: the first model's)")
    p.set_defaults(func=run_ensemble)


def run_ensemble(args: argparse.Namespace) -> int:
    from lesioncount.train.ensemble import ensemble_onnx

    try:
        spec = ensemble_onnx(args.first, args.second, args.write, version=args.version)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{spec.name} {spec.version}: {args.first} on the image, {args.second} on its mirror: {args.write}")
    return 0


def _print_int8_threshold(res: dict[str, Any], args: argparse.Namespace) -> int:
    """The int8 twin's own acne threshold, when calibration gave it one; the exit code."""
    if args.int8:
        print(
            f"int8 acne threshold {res['int8_threshold']:g}: {res['int8_total']} lesions on the held-out faces "
            f"against fp32's {res['fp32_total']}; written into {args.int8}"
        )
    return 0


def _held_out(res: dict[str, Any]) -> str:
    """'288 held-out photos of 96 faces': copies of one face are not independent evidence."""
    return f"{res['held_out_photos']} held-out photos of {res['held_out_faces']} faces"


def _accuracy(res: dict[str, Any]) -> str:
    lo, hi = res["hayashi_ci95"]
    return f"{res['hayashi_acc']:.3f} (95% interval {lo:.3f}-{hi:.3f}, resampling faces)"


def _print_soft(res: dict[str, Any], args: argparse.Namespace) -> int:
    print(
        f"acne threshold {res['threshold']:g}, count softness {res['count_softness']:g} on {_held_out(res)}: "
        f"Hayashi accuracy {_accuracy(res)}, count r {res['count_r']:.3f}; written into {args.checkpoint}"
    )
    return _print_int8_threshold(res, args)


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX and verify it",
        description="Export to ONNX (dynamic size, contract in metadata), check, compare with torch.",
    )
    p.add_argument("checkpoint", help="final.pt (or last.pt) from `lesioncount train`")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--int8", action="store_true", help="also write the static int8 twin (<out>.int8.onnx)")
    p.add_argument("--calib-dir", help="photos to draw int8 calibration tiles from (default: synthetic skin)")
    p.add_argument("--version", default="0.1.0", help="model version to record")
    p.add_argument("--tile-px", type=int, default=1024, help="inference tile side in working pixels (default 1024)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from lesioncount.train.export import ExportError, calibration_tiles, export_onnx, quantize_int8

    out = Path(args.out)
    try:
        spec, diff = export_onnx(args.checkpoint, out, version=args.version, tile_px=args.tile_px)
    except (FileNotFoundError, ValueError) as e:  # no checkpoint, or a file that is none
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}: torch vs ONNX Runtime max abs difference {diff:.2e}; thresholds {spec.thresholds}")
    if args.int8:
        photos = sorted(str(p) for p in find_images([args.calib_dir])) if args.calib_dir else []
        q = out.with_name(out.name.removesuffix(".onnx") + ".int8.onnx")
        try:
            check = quantize_int8(out, q, calibration_tiles(photos, n_tiles=64, face_height_px=spec.face_height_px))
        except ExportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(
            f"wrote {q}: int8 vs fp32 on the calibration tiles: max abs heatmap difference "
            f"{check.max_abs_diff:.3f}, {check.int8_count} vs {check.fp32_count} lesions ({check.count_change:+.1%})"
        )
        if check.fp32_count == 0:
            print(
                "warning: the fp32 model found no lesion on the calibration tiles, so the int8 count check "
                "compared nothing; rerun with --calib-dir and photos with acne",
                file=sys.stderr,
            )
    return 0
