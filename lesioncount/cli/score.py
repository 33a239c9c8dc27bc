"""``lesioncount score``: score a trial manifest into tables (a thin wrapper over ``run_batch``)."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_OK, EXIT_INCOMPLETE, EXIT_BAD_MANIFEST, EXIT_CANNOT_RUN = 0, 1, 2, 3


def add_cli(subparsers: Any) -> None:
    """Add the ``score`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "score",
        help="score every photo of a trial manifest (resumable; local pool or Dask cluster)",
        description=(
            "Score every photo listed in a manifest (CSV or Parquet with subject_id, visit, visit_date, view, "
            "path; optional arm, site, age) and write per-photo, per-visit, change-from-baseline and summary "
            "tables as CSV and Parquet. Results are stored as they arrive, keyed by photo and model content: "
            "rerun the same command to resume an interrupted run."
        ),
    )
    p.add_argument("manifest", help="manifest file (.csv or .parquet)")
    p.add_argument("-o", "--out", required=True, help="output folder for tables, run.json and results.sqlite")
    p.add_argument("--store", help="results store (default OUT/results.sqlite); share it between runs to reuse results")
    p.add_argument("--root", help="folder relative photo paths start from (default: the manifest's folder)")
    p.add_argument("--workers", type=int, help="local worker processes (default: all cores; 0: in this process)")
    p.add_argument("--threads", type=int, help="compute threads per worker (default: cores // workers; Dask: nthreads)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask distributed scheduler")
    p.add_argument("--model", help="model .onnx (default: $LESIONCOUNT_MODEL or the shipped model)")
    p.add_argument("--int8", action="store_true", help="use the shipped int8 model (faster, slightly less accurate)")
    p.add_argument("--threshold", type=float, help="one score threshold for all classes (default: the model's)")
    p.add_argument("--max-megapixels", type=float, default=100.0, help="refuse larger photos (default 100)")
    p.add_argument("--force", action="store_true", help="rescore photos already in the store")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="run even if some photo files are missing (they are reported as missing)",
    )
    p.add_argument("--baseline-visit", help="visit label of baseline (default: each subject's earliest visit)")
    p.add_argument("--lesions", action="store_true", help="also write the lesions table (one row per lesion)")
    p.add_argument("--check", action="store_true", help="validate the manifest only, score nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    """Run ``lesioncount score``.

    Exit 0 when every photo scored, 1 when some did not, 2 for a bad manifest, 3 when scoring cannot start
    (no model, Dask scheduler unreachable, workers that cannot see the model or photos).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from lesioncount.batch.manifest import ManifestError, read_manifest
    from lesioncount.batch.run import run_batch
    from lesioncount.batch.worker import PipelineScorer, Scored

    console = Console(stderr=True)
    try:
        manifest = read_manifest(args.manifest, root=args.root, allow_missing=args.allow_missing)
    except ManifestError as e:
        console.print(str(e), markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_MANIFEST
    for w in manifest.warnings:
        console.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
    if args.check:
        from pathlib import Path

        from lesioncount.batch.run import same_content_warnings

        store = Path(args.store) if args.store else Path(args.out) / "results.sqlite"
        store.parent.mkdir(parents=True, exist_ok=True)
        with console.status("reading the photos to find copies filed twice..."):
            copies = same_content_warnings(manifest, store)
        for w in copies:
            console.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"{args.manifest}: {len(manifest)} photos, manifest OK", markup=False, soft_wrap=True)
        return EXIT_OK

    flag_checks = [
        (
            args.threshold is not None and not 0.0 < args.threshold < 1.0,
            f"--threshold must be between 0 and 1, got {args.threshold}",
        ),
        (args.workers is not None and args.workers < 0, f"--workers must be 0 or more, got {args.workers}"),
        (args.threads is not None and args.threads < 1, f"--threads must be 1 or more, got {args.threads}"),
    ]
    for bad, message in flag_checks:
        if bad:
            console.print(message, markup=False, soft_wrap=True)
            return EXIT_CANNOT_RUN
    try:
        scorer = PipelineScorer.create(
            args.model, int8=args.int8, threshold=args.threshold, max_megapixels=args.max_megapixels
        )
    except FileNotFoundError as e:
        console.print(f"cannot score: {e}", markup=False, soft_wrap=True)
        return EXIT_CANNOT_RUN
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[failed]}"),
        console=console,
        disable=args.no_progress,
    )
    failed = 0
    hashing = progress.add_task("hashing", total=None, rate="", failed="")
    scoring = None

    def on_hash(done: int, total: int) -> None:
        progress.update(hashing, completed=done, total=total)

    def on_start(n: int) -> None:
        nonlocal scoring
        scoring = progress.add_task("scoring", total=n, rate="", failed="")

    def on_result(s: Scored) -> None:
        nonlocal failed
        assert scoring is not None
        task = progress.tasks[scoring]
        failed += s.status != "ok"
        speed = task.finished_speed or task.speed
        progress.update(
            task.id,
            advance=1,
            rate=f"{speed * 60:.1f}/min" if speed else "",
            failed=f"{failed} failed" if failed else "",
        )

    try:
        with progress:
            report = run_batch(
                manifest,
                args.out,
                scorer=scorer,
                store_path=args.store,
                baseline_visit=args.baseline_visit,
                workers=args.workers,
                scheduler=args.scheduler,
                threads=args.threads,
                force=args.force,
                lesions=args.lesions,
                on_hash=on_hash,
                on_start=on_start,
                on_result=on_result,
            )
    except (RuntimeError, OSError) as e:  # Dask scheduler unreachable or workers unfit, store not writable
        console.print(f"cannot score: {e}", markup=False, soft_wrap=True)
        return EXIT_CANNOT_RUN

    for w in report.warnings:
        console.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
    table = Table(title=f"lesioncount score: {args.manifest}", show_header=False)
    table.add_row("photos in manifest", str(report.n_photos))
    table.add_row("already in the store", str(report.n_already_done))
    table.add_row("scored now", str(report.n_scored))
    table.add_row("failed", str(report.n_failed))
    table.add_row("missing", str(report.n_missing))
    where = f"Dask {args.scheduler}" if args.scheduler else f"{report.workers} local worker(s)"
    table.add_row(
        "throughput",
        f"{report.photos_per_minute:.1f} photos/min ({report.n_scored} in {report.scoring_s:.1f} s, {where}; "
        f"{report.steady_photos_per_minute:.1f}/min after start-up)",
    )
    names = "photos,visits,change,summary" + (",lesions" if args.lesions else "")
    table.add_row("tables", f"{args.out}/{{{names}}}.{{csv,parquet}}")
    console.print(table)
    bad = [(o, r) for o, r in zip(report.outcomes, manifest.table.itertuples(), strict=True) if o.status != "ok"]
    for o, r in bad[:20]:
        console.print(f"  row {r.row}: {o.status}: {o.error}", markup=False, highlight=False, soft_wrap=True)
    if len(bad) > 20:
        console.print(f"  ... and {len(bad) - 20} more (see the status and error columns of photos.csv)")
    return EXIT_OK if not bad else EXIT_INCOMPLETE
