"""The data dictionary written beside the trial tables: every column of every table, its type and meaning.

A statistician loads ``columns.csv`` with the tables and knows, without the documentation, what each
column holds and how to read it (identifiers as text, so that ``001`` keeps its zeros).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from lesioncount.types import REGIONS

_CLASS_WORDS = {
    "inflammatory": "inflammatory lesions (papules, pustules, nodules)",
    "comedone": "comedones (whiteheads and blackheads)",
    "scar": "acne scars",
    "total_acne": "acne lesions (inflammatory + comedone)",
}

#: Fixed columns: their meaning (a column of several tables means the same in each).
_MEANINGS: dict[str, str] = {
    "subject_id": "the manifest's subject identifier",
    "visit": "the manifest's visit label",
    "visit_date": "date of the visit (YYYY-MM-DD)",
    "view": "the view the manifest gives the photo (front, left, right)",
    "path": "the photo's path as the manifest gives it",
    "arm": "the manifest's treatment arm",
    "site": "the manifest's site",
    "age": "the manifest's age in years",
    "manifest_row": "the photo's row in the manifest (as a spreadsheet numbers it)",
    "photo_sha256": "SHA-256 of the photo file",
    "status": "ok, failed (see error), missing (no file) or pending (not scored yet: the run was interrupted)",
    "error": "why the photo was not scored",
    "model_name": "the model that counted the photo",
    "model_version": "its version",
    "model_sha256": "SHA-256 of the model file",
    "width_px": "photo width in pixels",
    "height_px": "photo height in pixels",
    "face_found": "a face was found (false: its counts are no lesion counts, and its visit is not comparable)",
    "face_view": "the view the photo looks like (front, left, right, unknown)",
    "view_mismatch": "the photo looks like another view than the manifest says: a mislabelled photo?",
    "acne_expected": "the soft count's expected number of acne lesions before rounding (empty from a hard count)",
    "acne_expert_marks": "the number of expert-style marks (not counted in the classes; empty without such a model)",
    "hayashi_grade": "Hayashi grade 0-3 (mild, moderate, severe, very severe); empty when not graded",
    "hayashi_label": "the Hayashi grade in words",
    "hayashi_borderline": "the count's re-take band crosses a grade boundary: a re-take could be graded differently",
    "gags_score": "Global Acne Grading System score",
    "gags_label": "the GAGS score in words",
    "n_warnings": "the number of quality warnings",
    "warnings": "the quality warnings, '; '-joined",
    "time_s": "seconds the photo took to score (differs between runs)",
    "worker": "the process that scored it (differs between runs)",
    "views": "the views of the visit, '+'-joined (front+left+right)",
    "n_photos": "photos the manifest lists for the visit",
    "n_scored": "of them, photos scored",
    "complete": "every photo of the visit scored (else its counts are empty: never an undercount)",
    "all_faces_found": "a face was found in every photo of the visit (empty when not complete)",
    "baseline_visit": "the visit taken as baseline",
    "days_from_baseline": "days from the baseline visit",
    "is_baseline": "this row is the baseline itself (change 0)",
    "class": "the lesion class the row is about",
    "baseline": "the count at baseline",
    "count": "the count at this visit",
    "change": "count - baseline",
    "change_pct": "100 x change / baseline (empty when the baseline is 0)",
    "views_match": "the same views as at baseline",
    "comparable": "both visits complete, the same views and a face in every photo (empty without both counts)",
    "measure": "count, change, change_pct or ratio_pct (geometric mean of (count+1)/(baseline+1), as a percent)",
    "n": "rows summarised (comparable ones only)",
    "mean": "mean of the measure",
    "sd": "standard deviation (empty for ratio_pct: its interval carries the spread)",
    "median": "median of the measure",
    "ci95_low": "lower end of the 95% t-interval for the mean (empty for n < 2)",
    "ci95_high": "upper end of the 95% t-interval for the mean (empty for n < 2)",
    "median_days": "median days from baseline of the visit's rows (comparable or not)",
    "n_not_comparable": "rows left out of the statistics because their visits are not comparable",
    "x": "the lesion's centre, pixels from the photo's left edge",
    "bbox_x": "the lesion's box: left edge in pixels",
    "bbox_y": "the lesion's box: top edge in pixels",
    "bbox_w": "the lesion's box: width in pixels",
    "bbox_h": "the lesion's box: height in pixels",
    "y": "the lesion's centre, pixels from the photo's top edge",
    "area_px": "the lesion's area in pixels",
    "score": "the model's score for the lesion (0-1)",
    "region": "the facial region the lesion lies in (the patient's own sides)",
}

#: Columns that identify or label rather than measure: read them as text (``dtype=str`` in pandas).
_TEXT_HINT = " (read as text: pd.read_csv(..., dtype={'%s': str}) keeps leading zeros)"
_IDENTIFIERS = ("subject_id", "visit", "arm", "site")


def _meaning(column: str) -> str:
    if column in _MEANINGS:
        return _MEANINGS[column]
    if column in _CLASS_WORDS:
        return f"number of {_CLASS_WORDS[column]}"
    for region in REGIONS:
        prefix = f"{region}_"
        if column.startswith(prefix) and column[len(prefix) :] in _CLASS_WORDS:
            return f"number of {_CLASS_WORDS[column[len(prefix) :]]} in region {region.replace('_', ' ')}"
    return "a column of the manifest, carried over as it is"


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date"
    return "text"


def data_dictionary(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The data dictionary of the tables.

    Args:
        tables: name -> table, as ``build_tables`` gives them.

    Returns:
        One row per column of every table: ``table``, ``column``, ``type`` (text, integer, number, boolean,
        date) and ``meaning``. Empty cells mean "not known" in every table.
    """
    rows = []
    for name, df in tables.items():
        for column in df.columns:
            meaning = _meaning(str(column))
            if column in _IDENTIFIERS:
                meaning += _TEXT_HINT % column
            rows.append({"table": name, "column": str(column), "type": _kind(df[column]), "meaning": meaning})
    return pd.DataFrame(rows, columns=["table", "column", "type", "meaning"])
