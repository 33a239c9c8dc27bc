"""The patient's report: the compare helper's treatment-response report, built from the corrected marks.

``comparison_report_html`` hands each counted photo (with the clinician's corrections in place of the
model's lesions) to ``lesioncount.compare.compare_visits`` and renders it with
``lesioncount.report.visits_html``: registration, lesion fates, change from baseline, durability, warnings.
``counts_report_html`` is the plain fallback that needs only the stored counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from lesioncount.count import count_by_class, count_by_region, grades
from lesioncount.types import CountResult
from lesioncount.web.marks import lesions_of

_env = Environment(loader=PackageLoader("lesioncount.web", "templates"), autoescape=select_autoescape(["html"]))


@dataclass(frozen=True)
class ReportPhoto:
    """One counted photo of a visit, as the report needs it."""

    path: Path
    result: dict[str, Any]
    marks: list[dict[str, Any]]
    date: dt.date
    view: str
    treatment: str
    age_years: float | None
    label: str
    corrected: bool = False  # its marks differ from the model's (a clinician changed them)


def corrected_result(result: dict[str, Any], marks: list[dict[str, Any]]) -> CountResult:
    """The model's count result with its lesions, counts and grades replaced by the current marks."""
    base = CountResult.from_dict(result)
    lesions = lesions_of(marks)
    return dataclasses.replace(
        base,
        lesions=tuple(lesions),
        counts=count_by_class(lesions),
        counts_by_region=count_by_region(lesions),
        grades=grades(lesions, regions_known=base.grades.get("gags") is not None),
    )


def build_comparison(photos: list[ReportPhoto], counter: Any = None) -> Any:
    """``lesioncount.compare.compare_visits`` over the photos, with the corrected marks as their lesions.

    With ``counter`` (a ``LesionCounter``), each follow-up whose marks nobody corrected is counted again in
    its baseline's frame, on the same skin at the same scale, as ``lesioncount compare`` does (on no-change
    re-takes it calls less than half as many lesions resolved or new; docs/compare.md). Only where the
    counter's model counted both the follow-up and its baseline: after a model change, two models' counts
    are not mixed. Corrected marks stand as the clinician left them.

    Raises:
        ValueError: no photos, or the comparison cannot be made (the caller falls back to the counts report).
    """
    from lesioncount.compare import Visit, compare_visits
    from lesioncount.io import read_image

    if not photos:
        raise ValueError("no counted photos")
    recountable = _recountable(photos, counter)
    visits = [
        Visit(
            result=corrected_result(p.result, p.marks),
            image=read_image(p.path),
            date=p.date,
            view=p.view,
            age_years=p.age_years,
            treatment=p.treatment or None,
            label=p.label,
            recount=p in recountable,
        )
        for p in photos
    ]
    comparison = compare_visits(visits, counter=counter if recountable else None)
    mixed = _mixed_corrections(photos)
    return dataclasses.replace(comparison, warnings=(*comparison.warnings, *mixed)) if mixed else comparison


def _recountable(photos: list[ReportPhoto], counter: Any) -> list[ReportPhoto]:
    """The follow-ups the counter may count again: uncorrected, and counted, with their view's baseline, by
    the counter's own model (``LesionCounter.model_info``; a stand-in without one recounts nothing)."""
    sha = getattr(getattr(counter, "model_info", None), "sha256", None)
    if not sha:
        return []

    def by_counter(p: ReportPhoto) -> bool:
        return bool((p.result.get("model") or {}).get("sha256") == sha)

    out = []
    for view in {p.view for p in photos}:
        series = sorted((p for p in photos if p.view == view), key=lambda p: p.date)
        if by_counter(series[0]):
            out += [p for p in series[1:] if not p.corrected and by_counter(p)]
    return out


def _mixed_corrections(photos: list[ReportPhoto]) -> list[str]:
    """A warning per view where some visits' marks were corrected by hand and others' were not: their change
    then mixes a clinician's count with the model's."""
    out = []
    for view in sorted({p.view for p in photos}):
        same = [p for p in photos if p.view == view]
        fixed = [p.label for p in same if p.corrected]
        if fixed and len(fixed) < len(same):
            as_counted = [p.label for p in same if not p.corrected]
            out.append(
                f"{view}: the marks of {', '.join(fixed)} were corrected by hand and those of "
                f"{', '.join(as_counted)} were not, so the change between them mixes a clinician's count with "
                "the model's; review those visits' marks too before reading the change"
            )
    return out


def comparison_report_html(
    photos: list[ReportPhoto],
    title: str,
    clinic: str | None = None,
    clinician: str | None = None,
    counter: Any = None,
) -> str:
    """The compare helper's self-contained HTML report over every counted photo of a patient."""
    from lesioncount.report.visits_html import render_visits_html

    return render_visits_html(build_comparison(photos, counter), title=title, clinic=clinic, clinician=clinician)


def comparison_report_pdf(
    photos: list[ReportPhoto],
    title: str,
    clinic: str | None = None,
    clinician: str | None = None,
    counter: Any = None,
) -> bytes:
    """The same report as a PDF (WeasyPrint)."""
    from lesioncount.report.visits_html import render_visits_pdf

    return render_visits_pdf(build_comparison(photos, counter), title=title, clinic=clinic, clinician=clinician)


def html_to_pdf(html: str) -> bytes:
    """Any of our self-contained HTML reports as a PDF."""
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    return bytes(HTML(string=html).write_pdf())


def counts_report_html(summary: dict[str, Any], clinic_name: str, note: str = "") -> str:
    """A self-contained HTML report (no scripts, no external files) of a patient's counts over time.

    Args:
        summary: ``services.patient_summary`` output.
        clinic_name: printed in the header.
        note: why the full comparison report is not given, if that is the case.
    """
    return _env.get_template("report.html").render(
        s=summary, clinic=clinic_name, note=note, generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    )
