"""``lesioncount compare``: a thin wrapper over ``compare_visits`` and the visits report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lesioncount.compare.visits import ManifestError, VisitRecord, parse_date
from lesioncount.types import TOTAL_ACNE

if TYPE_CHECKING:
    from rich.console import Console

    from lesioncount.compare.core import VisitComparison

log = logging.getLogger(__name__)


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare a patient's visits: change from baseline, lesion by lesion",
        description=(
            "Compare follow-up photos with the baseline of the same view: comparability checks, alignment, "
            "resolved/persisting/new lesions, change per class and region, responders, durability. Give the "
            "photos in visit order (BASELINE FOLLOWUP...) or a per-patient manifest (YAML or CSV; see "
            "docs/compare.md). Writes OUT/comparison.json, OUT/report.html and, with --pdf, OUT/report.pdf."
        ),
    )
    p.add_argument("photos", nargs="*", metavar="PHOTO", help="baseline photo, then follow-up photos")
    p.add_argument("--manifest", help="per-patient manifest (.yaml/.yml/.csv) instead of PHOTO arguments")
    p.add_argument(
        "--demo", action="store_true", help="compare a made-up patient (planted lesions, no model; needs scikit-image)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--date", action="append", default=[], metavar="YYYY-MM-DD", help="visit date, once per photo (default: EXIF)"
    )
    p.add_argument("--view", choices=("front", "left", "right"), help="view of every photo (default: detected)")
    p.add_argument("--age", type=float, help="patient age in years at baseline")
    p.add_argument("--treatment", help="treatment given at baseline, e.g. 'botulinum toxin 20 U forehead'")
    p.add_argument("--tolerance-px", type=float, help="lesion matching tolerance (default: 2%% of face height)")
    p.add_argument("--responder-pct", type=float, default=50.0, help="responder rule: percent fewer (default 50)")
    p.add_argument("--title", default="Treatment response", help="report title (a patient code, not a name)")
    p.add_argument("--pdf", action="store_true", help="also write OUT/report.pdf (WeasyPrint)")
    p.add_argument("--model", help="ONNX model (default: the shipped model)")
    p.add_argument("--int8", action="store_true", help="use the int8 model")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.set_defaults(func=run_compare)


def records_from_args(args: argparse.Namespace) -> list[VisitRecord]:
    """Visit records from a manifest or from PHOTO arguments with --date/--view/--age/--treatment."""
    from lesioncount.compare.visits import read_manifest

    if args.manifest and args.photos:
        raise ManifestError("give either PHOTO arguments or --manifest, not both")
    if args.manifest:
        return read_manifest(args.manifest)
    if len(args.photos) < 2:
        raise ManifestError("give a baseline and at least one follow-up photo (or --manifest)")
    if args.date and len(args.date) != len(args.photos):
        raise ManifestError(f"{len(args.date)} --date value(s) for {len(args.photos)} photos: give one per photo")
    dates = [parse_date(d, "--date: ") for d in args.date] or [None] * len(args.photos)
    return [
        VisitRecord(
            path=str(Path(photo)),
            date=date,
            view=args.view,
            age_years=args.age,  # the age at baseline stands for the series: the under-18 check needs it
            treatment=args.treatment if i == 0 else None,
        )
        for i, (photo, date) in enumerate(zip(args.photos, dates, strict=True))
    ]


def run_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lesioncount.compare.core import compare_visits
    from lesioncount.compare.visits import load_visits
    from lesioncount.io import ImageReadError

    console = Console(stderr=True, soft_wrap=True)
    try:
        if args.demo:
            if args.photos or args.manifest:
                raise ManifestError("--demo takes no PHOTO arguments and no --manifest")
            try:
                from lesioncount.compare.demo import synthetic_patient
            except ImportError as e:  # pragma: no cover - depends on the install
                raise ManifestError(f"the demo needs scikit-image: pip install 'lesioncount[demo]' ({e})") from e
            with console.status("making and comparing a made-up patient"):
                visits, _ = synthetic_patient()
                comparison = compare_visits(visits, responder_threshold_pct=args.responder_pct)
            return _write_outputs(args, comparison, console)
        records = records_from_args(args)
        counter = None
        if any(r.counts_path is None for r in records):
            from lesioncount.pipeline import LesionCounter

            counter = LesionCounter(args.model, int8=args.int8, threads=args.threads)
        count = None if counter is None else (lambda image, path: counter.count(path))
        # Follow-ups the model counted here are counted again in their baseline's frame (the same skin at
        # the same scale); saved counts (perhaps corrected by hand) are compared as they are.
        recount = counter if all(r.counts_path is None for r in records) else None
        with console.status("counting and comparing"):
            visits = load_visits(records, count)
            comparison = compare_visits(
                visits, tolerance_px=args.tolerance_px, responder_threshold_pct=args.responder_pct, counter=recount
            )
    except (ManifestError, ImageReadError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    return _write_outputs(args, comparison, console)


def _write_outputs(args: argparse.Namespace, comparison: VisitComparison, console: Console) -> int:
    from rich.console import Console
    from rich.table import Table

    from lesioncount.io import write_json
    from lesioncount.report.visits_html import render_visits_html, render_visits_pdf

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", comparison.to_dict())
    (out / "report.html").write_text(render_visits_html(comparison, title=args.title), encoding="utf-8")
    if args.pdf:
        (out / "report.pdf").write_bytes(render_visits_pdf(comparison, title=args.title))

    table = Table(title="change from baseline")
    cols = (
        "follow-up",
        "view",
        "days",
        "inflammatory",
        "comedone",
        "total acne",
        "resolved / persisting / new / uncertain",
        "comparable",
    )
    for col in cols:
        table.add_column(
            col, justify="left" if col in ("follow-up", "view", "comparable") else "right", overflow="fold"
        )
    for pair in comparison.pairs:
        cells = []
        for k in ("inflammatory", "comedone", TOTAL_ACNE):
            c = pair.change[k]
            cells.append(f"{c.baseline}→{c.followup} ({'n/a' if c.percent is None else f'{c.percent:+.0f}%'})")
        fates = "-"
        if pair.match is not None:
            t = pair.match.tally()[TOTAL_ACNE]
            fates = f"{t['resolved']}/{t['persisting']}/{t['new']}/{t['uncertain']}"
        comp = pair.comparability
        verdict = "-" if comp is None else f"{'yes' if comp.comparable else 'NO'} ({comp.score:.2f})"
        days = "" if pair.days is None else f"{pair.days:.0f}"
        table.add_row(comparison.visits[pair.followup_index].name, pair.view, days, *cells, fates, verdict)
    Console().print(table)
    for pair in comparison.pairs:
        if pair.comparability is not None:
            for w in pair.comparability.warnings:
                console.print(f"[yellow]{comparison.visits[pair.followup_index].name}:[/yellow] {w}")
    hints = {f"{view}: {d.hint}": None for view, ds in comparison.durability.items() for d in ds.values() if d.hint}
    for hint in hints:  # the botulinum toxin reminder is the same for every class: say it once
        console.print(f"[yellow]{hint}[/yellow]")
    for w in comparison.warnings:
        console.print(f"[red]warning:[/red] {w}")
    written = [out / "comparison.json", out / "report.html", *([out / "report.pdf"] if args.pdf else [])]
    console.print(f"wrote {', '.join(map(str, written[:-1]))} and {written[-1]}")
    return 0
