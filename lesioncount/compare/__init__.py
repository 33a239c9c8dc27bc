"""Compare one patient's visits: comparability, registration, lesion matching, change from baseline.

Public entry points (the CLI and the web app call these)::

    from lesioncount.compare import Visit, compare_visits, read_manifest, load_visits
    comparison = compare_visits(visits)          # -> VisitComparison
    comparison.to_dict()                         # JSON, schema in docs/compare.md
    from lesioncount.report.visits_html import render_visits_html, render_visits_pdf

Each module holds one step and works on plain arrays and ``Lesion``/``CountResult`` values, so every step
can be used and tested without a model.
"""

from lesioncount.compare.comparability import Comparability, PhotoStats, assess_comparability, photo_stats
from lesioncount.compare.core import COMPARE_SCHEMA_VERSION, PairComparison, VisitComparison, compare_visits
from lesioncount.compare.match import LesionMatch, match_lesions
from lesioncount.compare.register import Registration, register
from lesioncount.compare.visits import ManifestError, Visit, VisitRecord, load_visits, read_manifest
from lesioncount.endpoints import Change, Durability, count_change, durability_curve

__all__ = [
    "COMPARE_SCHEMA_VERSION",
    "Change",
    "Comparability",
    "Durability",
    "LesionMatch",
    "ManifestError",
    "PairComparison",
    "PhotoStats",
    "Registration",
    "Visit",
    "VisitComparison",
    "VisitRecord",
    "assess_comparability",
    "compare_visits",
    "count_change",
    "durability_curve",
    "load_visits",
    "match_lesions",
    "photo_stats",
    "read_manifest",
    "register",
]
