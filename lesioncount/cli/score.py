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
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the manifest only, score nothing (the photos' hashes are cached in the store for the run)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    """Run ``lesioncount score``.

    Exit 0 when every photo scored, 1 when some did not, 2 for a bad manifest, 3 when scoring cannot start
    (no model, Dask scheduler unreachable, workers that cannot see the model or photos).
    """
    from rich.console import Console

    from lesioncount.batch.manifest import ManifestError, read_manifest
    from lesioncount.batch.run import run_batch
    from lesioncount.batch.worker import PipelineScorer

    console = Console(stderr=True)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    try:
        manifest = read_manifest(args.manifest, root=args.root, allow_missing=args.allow_missing)
    except ManifestError as e:
        say(str(e))
        return EXIT_BAD_MANIFEST
    for w in manifest.warnings:
        say(f"warning: {w}")
    problem = _bad_flag(args) or _bad_out(args)
    if problem:
        say(problem)
        return EXIT_CANNOT_RUN
    problem, warning = manifest.baseline_check(args.baseline_visit)
    if problem:
        say(problem)
        return EXIT_BAD_MANIFEST
    if warning:
        say(f"warning: {warning}")
    if args.check:
        return _check_only(args, manifest, console, say)
    try:
        scorer = PipelineScorer.create(
            args.model, int8=args.int8, threshold=args.threshold, max_megapixels=args.max_megapixels
        )
    except FileNotFoundError as e:
        say(f"cannot score: {e}")
        return EXIT_CANNOT_RUN
    progress, callbacks = _progress(console, args.no_progress)
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
                **callbacks,
            )
    except (RuntimeError, OSError) as e:  # Dask scheduler unreachable or workers unfit, store not writable
        say(f"cannot score: {e}")
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into this)
        say("interrupted: every photo scored so far is kept in the store; rerun the same command to resume")
        return 130
    for w in report.warnings:
        say(f"warning: {w}")
    console.print(_report_table(args, report))
    bad = [(o, r) for o, r in zip(report.outcomes, manifest.table.itertuples(), strict=True) if o.status != "ok"]
    for o, r in bad[:20]:
        say(f"  row {r.row}: {o.status}: {o.error}")
    if len(bad) > 20:
        say(f"  ... and {len(bad) - 20} more (see the status and error columns of photos.csv)")
    return EXIT_OK if not bad else EXIT_INCOMPLETE


def _check_only(args: argparse.Namespace, manifest: Any, console: Any, say: Any) -> int:
    """``--check``: the manifest's checks, and photos filed under two rows (hashes kept in the store)."""
    from pathlib import Path

    from lesioncount.batch.run import same_content_warnings

    store = Path(args.store) if args.store else Path(args.out) / "results.sqlite"
    store.parent.mkdir(parents=True, exist_ok=True)
    with console.status("reading the photos to find copies filed twice..."):
        copies = same_content_warnings(manifest, store)
    for w in copies:
        say(f"warning: {w}")
    say(f"{args.manifest}: {len(manifest)} photos, manifest OK")
    return EXIT_OK


def _bad_out(args: argparse.Namespace) -> str | None:
    """A message when ``--out`` or ``--store`` cannot be what they name, or None."""
    from pathlib import Path

    from lesioncount.results import file_as_folder

    problem = file_as_folder(Path(args.out))
    if problem:
        return f"{problem}: give a folder for the tables"
    if args.store and Path(args.store).is_dir():
        example = Path(args.store) / "results.sqlite"
        return f"--store {args.store} is a folder: give the results file (for example {example})"
    return None


def _bad_flag(args: argparse.Namespace) -> str | None:
    """The first flag whose value cannot run, as a message, or None."""
    checks = [
        (
            args.threshold is not None and not 0.0 < args.threshold < 1.0,
            f"--threshold must be between 0 and 1, got {args.threshold}",
        ),
        (args.workers is not None and args.workers < 0, f"--workers must be 0 or more, got {args.workers}"),
        (args.threads is not None and args.threads < 1, f"--threads must be 1 or more, got {args.threads}"),
    ]
    return next((message for bad, message in checks if bad), None)


def _progress(console: Any, disable: bool) -> tuple[Any, dict[str, Any]]:
    """The hashing and scoring bars, and the ``run_batch`` callbacks that drive them (rate, failures)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
        disable=disable,
    )
    hashing = progress.add_task("hashing", total=None, rate="", failed="")
    state: dict[str, Any] = {"scoring": None, "failed": 0}

    def on_hash(done: int, total: int) -> None:
        progress.update(hashing, completed=done, total=total)

    def on_start(n: int) -> None:
        state["scoring"] = progress.add_task("scoring", total=n, rate="", failed="")

    def on_result(s: Any) -> None:
        task = progress.tasks[state["scoring"]]
        state["failed"] += s.status != "ok"
        speed = task.finished_speed or task.speed
        progress.update(
            task.id,
            advance=1,
            rate=f"{speed * 60:.1f}/min" if speed else "",
            failed=f"{state['failed']} failed" if state["failed"] else "",
        )

    return progress, {"on_hash": on_hash, "on_start": on_start, "on_result": on_result}


def _report_table(args: argparse.Namespace, report: Any) -> Any:
    """What the run did: counts, throughput, where the tables are."""
    from rich.table import Table

    table = Table(title=f"lesioncount score: {args.manifest}", show_header=False)
    table.add_row("photos in manifest", str(report.n_photos))
    table.add_row("already in the store", str(report.n_already_done))
    table.add_row(
        "read now", f"{report.n_scored} ({report.n_scored - report.n_failed} scored, {report.n_failed} failed)"
    )
    table.add_row("missing", str(report.n_missing))
    where = f"Dask {args.scheduler}" if args.scheduler else f"{report.workers} local worker(s)"
    table.add_row(
        "throughput",
        f"{report.photos_per_minute:.1f} photos/min ({report.n_scored} in {report.scoring_s:.1f} s, {where}; "
        f"{report.steady_photos_per_minute:.1f}/min after start-up)",
    )
    names = "photos,visits,change,summary" + (",lesions" if args.lesions else "")
    table.add_row("tables", f"{args.out}/{{{names}}}.{{csv,parquet}}")
    return table
