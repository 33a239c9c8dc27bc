"""The patient's visit report: counts per visit, change from baseline, the toxin warning; one HTML file.

When the compare helper's report (``lesioncount.report.visits_html``) is importable it is used for the
lesion-by-lesion comparison; this module's own report needs only the stored counts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(loader=PackageLoader("lesioncount.web", "templates"), autoescape=select_autoescape(["html"]))


def counts_report_html(summary: dict[str, Any], clinic_name: str) -> str:
    """A self-contained HTML report (no scripts, no external files) of a patient's counts over time.

    Args:
        summary: ``services.patient_summary`` output.
        clinic_name: printed in the header.
    """
    return _env.get_template("report.html").render(
        s=summary, clinic=clinic_name, generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    )
