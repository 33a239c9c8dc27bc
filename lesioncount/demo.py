"""``lesioncount demo``: a realistic photo with planted lesions of known number, counted with the shipped model.

The face is scikit-image's ``astronaut`` (Eileen Collins, NASA: public domain), enlarged to clinic size;
lesions are rendered onto its skin with ``lesioncount.synth`` at the size they have on a real face.
No network, no ../shared data.
"""

from __future__ import annotations

import argparse
import html
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesioncount import synth
from lesioncount.types import CLASSES, CountResult


@dataclass(frozen=True)
class DemoOutcome:
    """Planted vs found, and where the files went."""

    planted: dict[str, int]
    found: dict[str, int]
    matched: int
    n_planted: int
    n_found: int
    marks_counted: int
    result: CountResult
    files: dict[str, Path]


#: The astronaut with planted lesions (the function lives with the lesion renderer, in the core).
demo_photo = synth.planted_photo


def run_demo(out_dir: str | Path = "demo-out", *, model: str | None = None, seed: int = 0) -> DemoOutcome:
    """Build the demo photo, count it, write JSON, overlay and an HTML page; return planted vs found."""
    from lesioncount.io import write_image, write_json
    from lesioncount.pipeline import LesionCounter
    from lesioncount.report.overlay import draw_overlay

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image, planted = demo_photo(seed)
    photo = out / "demo_face.jpg"
    write_image(photo, image, quality=92)
    counter = LesionCounter(model)
    t = time.perf_counter()
    result = counter.count(photo)
    elapsed = time.perf_counter() - t
    write_json(out / "demo_face.json", result.to_dict())
    overlay = draw_overlay(
        image, result.lesions, counts=result.counts, face_box=result.face.box, expert_marks=result.expert_marks
    )
    write_image(out / "demo_face.overlay.jpg", overlay)
    planted_counts = {c: sum(1 for p in planted if p.cls == c) for c in CLASSES}
    # One-to-one (Hungarian) matching within 1.5 radii + 4 px, the evaluation's own matcher.
    from lesioncount.matching import match_centres

    targets = [p for p in planted if p.cls is not None]
    matched = len(
        match_centres(
            [(les.x, les.y) for les in result.lesions],
            [(p.x, p.y) for p in targets],
            [1.5 * p.radius + 4 for p in targets],
        )[0]
    )
    marks = [p for p in planted if p.cls is None]
    marks_counted = sum(
        1 for p in marks if any(np.hypot(les.x - p.x, les.y - p.y) <= p.radius + 4 for les in result.lesions)
    )
    page = out / "index.html"
    experts = (
        f" The white dots are the model's {len(result.expert_marks)} expert-style marks: where dermatologists"
        " would mark acne (they mark about twice as many places as are counted); they are not counted."
        if result.expert_marks
        else ""
    )
    rows = "".join(f"<tr><td>{c}</td><td>{planted_counts[c]}</td><td>{result.counts[c]}</td></tr>" for c in CLASSES)
    page.write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>lesioncount demo</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}</style></head>
<body><h1>lesioncount demo</h1>
<p>A public-domain face (scikit-image <code>astronaut</code>) with lesions rendered at known places.
{len(marks)} flat red/brown marks were planted too: they are not lesions and should not be counted
({marks_counted} {"was" if marks_counted == 1 else "were"}). Counted in {elapsed:.2f} s with model
{html.escape(result.model.name)} {html.escape(result.model.version)}.</p>
<table><tr><th>class</th><th>planted</th><th>found</th></tr>{rows}</table>
<p>{matched} of {len(targets)} planted lesions matched a found lesion; {len(result.lesions)} lesions found.{experts}</p>
<img src="demo_face.overlay.jpg" alt="the demo photo with every found lesion marked"></body></html>
""",
        encoding="utf-8",
    )
    return DemoOutcome(
        planted=planted_counts,
        found={c: result.counts[c] for c in CLASSES},
        matched=matched,
        n_planted=len(targets),
        n_found=len(result.lesions),
        marks_counted=marks_counted,
        result=result,
        files={"photo": photo, "json": out / "demo_face.json", "overlay": out / "demo_face.overlay.jpg", "html": page},
    )


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="count a bundled demo photo with planted lesions (no data needed)")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--model", help="ONNX model (default: the shipped model)")
    p.add_argument("--seed", type=int, default=0, help="where the lesions are planted")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    o = run_demo(args.out, model=args.model, seed=args.seed)
    t = Table(title="lesioncount demo: planted vs found")
    for col in ("class", "planted", "found"):
        t.add_column(col, justify="right")
    for c in CLASSES:
        t.add_row(c, str(o.planted[c]), str(o.found[c]))
    con = Console()
    con.print(t)
    con.print(
        f"{o.matched} of {o.n_planted} planted lesions found at their place; {o.n_found} lesions found in all; "
        + (
            "1 flat mark (not a lesion) counted by mistake."
            if o.marks_counted == 1
            else f"{o.marks_counted} flat marks (not lesions) counted by mistake."
        )
        + (f" {len(o.result.expert_marks)} expert-style marks (dots; not counted)." if o.result.expert_marks else "")
    )
    con.print(f"open {o.files['html']} to see the marked photo")
    return 0
