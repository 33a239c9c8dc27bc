"""CLI wrappers for the core subcommands: ``count``, ``train``, ``export``."""

from __future__ import annotations

import argparse
import csv
import io as _io
import os
import sys
import time
from pathlib import Path
from typing import Any

from lesioncount.io import DEFAULT_MAX_MEGAPIXELS, ImageReadError, find_images, load_image, write_image, write_json
from lesioncount.types import CLASSES, CountResult


def output_names(paths: list[Path]) -> list[str]:
    """``DIR/<name>.json`` names: the photo's file name without extension, de-duplicated with ``-2``, ``-3``..."""
    used: dict[str, int] = {}
    names = []
    for p in paths:
        stem = p.stem
        n = used.get(stem.lower(), 0) + 1
        used[stem.lower()] = n
        names.append(stem if n == 1 else f"{stem}-{n}")
    return names


def add_count(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "count",
        help="count lesions in photos or folders",
        description="Count acne lesions and scars; writes OUT/<name>.json per photo (and an overlay with --overlay).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="photos or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overlay", action="store_true", help="also write OUT/<name>.overlay.jpg")
    p.add_argument("--model", help="ONNX model (default: the shipped model)")
    p.add_argument("--int8", action="store_true", help="use the int8 model (faster, counts within ~2%%)")
    p.add_argument("--threshold", type=float, help="one score threshold for every class (default: the model's)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, help="refuse larger photos")
    p.add_argument(
        "--whole-frame",
        action="store_true",
        help="count everywhere in the frame, with no face or skin test (close-ups you vouch for)",
    )
    p.set_defaults(func=run_count)


def run_count(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from lesioncount.pipeline import LesionCounter
    from lesioncount.report.overlay import draw_overlay

    console = Console(stderr=True, soft_wrap=True)  # soft wrap: error lines stay whole for grep and logs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
        console.print(f"[red]error:[/red] {e}")
        return 2
    paths = find_images(args.paths)
    if not paths:
        console.print("[red]error:[/red] no photos found in the given paths")
        return 2
    names = output_names(paths)
    results: list[tuple[str, CountResult]] = []
    failures: list[tuple[Path, str]] = []
    t0 = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=len(paths) < 2,
    ) as progress:
        task = progress.add_task("counting", total=len(paths))
        for path, name in zip(paths, names, strict=True):
            try:
                result = counter.count(path)
                write_json(out / f"{name}.json", result.to_dict())
                if args.overlay:
                    image = load_image(path, max_megapixels=args.max_megapixels).image
                    write_image(
                        out / f"{name}.overlay.jpg",
                        draw_overlay(image, result.lesions, counts=result.counts, face_box=result.face.box),
                    )
                results.append((name, result))
            except (ImageReadError, ValueError, OSError) as e:
                failures.append((path, str(e).splitlines()[0] if str(e) else e.__class__.__name__))
            progress.advance(task)
    _write_summary_csv(out / "summary.csv", results)
    table = Table(title=f"lesioncount: {len(results)} photo(s) in {time.perf_counter() - t0:.1f} s")
    for col in ("photo", *CLASSES, "total_acne", "hayashi", "warnings"):
        table.add_column(col, justify="left" if col in ("photo", "warnings") else "right")
    for name, r in results[:40]:
        table.add_row(
            name,
            *(str(r.counts[c]) for c in CLASSES),
            str(r.counts["total_acne"]),
            str(r.grades["hayashi"]["grade"]) if r.grades.get("hayashi") else "-",
            str(len(r.warnings)),
        )
    if len(results) > 40:
        table.add_row(f"... {len(results) - 40} more in summary.csv", *[""] * 6)
    Console().print(table)
    if failures:
        console.print(f"[red]{len(failures)} photo(s) failed:[/red]")
        for path, why in failures:
            console.print(f"  {path}: {why}")
        return 1
    return 0


def _write_summary_csv(path: Path, results: list[tuple[str, CountResult]]) -> None:
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "path", *CLASSES, "total_acne", "hayashi_grade", "gags", "face_found", "n_warnings"])
    for name, r in results:
        gags = r.grades.get("gags")
        w.writerow(
            [
                name,
                r.image.path,
                *(r.counts[c] for c in CLASSES),
                r.counts["total_acne"],
                r.grades["hayashi"]["grade"] if r.grades.get("hayashi") else "",
                gags["score"] if gags else "",
                r.face.found,
                len(r.warnings),
            ]
        )
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


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

        final = train(cfg, progress=report)
    print(f"final checkpoint: {final}")
    return 0


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
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from lesioncount.train.export import ExportError, calibration_tiles, export_onnx, quantize_int8

    out = Path(args.out)
    try:
        spec, diff = export_onnx(args.checkpoint, out, version=args.version)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}: torch vs ONNX Runtime max abs difference {diff:.2e}; thresholds {spec.thresholds}")
    if args.int8:
        photos = sorted(str(p) for p in find_images([args.calib_dir])) if args.calib_dir else []
        q = out.with_name(out.name.removesuffix(".onnx") + ".int8.onnx")
        d8 = quantize_int8(out, q, calibration_tiles(photos, n_tiles=64))
        print(f"wrote {q}: int8 vs fp32 max abs heatmap difference {d8:.3f}")
    return 0
