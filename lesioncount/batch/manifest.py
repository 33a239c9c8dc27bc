"""Read and validate a scoring manifest: one row per photo of one view at one visit of one subject.

A manifest is CSV or Parquet with the columns ``subject_id``, ``visit``, ``visit_date``, ``view`` and
``path``, optionally ``arm``, ``site``, ``age`` and ``treatment`` (free text; a botulinum toxin treatment
recorded for a minor is warned about). Every problem is found before anything is scored and
reported together (``ManifestError``), so a 5000-row manifest is fixed in one pass, not one error at a time.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lesioncount.endpoints import TOXIN_MIN_AGE_YEARS, is_botulinum_toxin
from lesioncount.types import VIEWS

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("subject_id", "visit", "visit_date", "view", "path")
OPTIONAL_COLUMNS: tuple[str, ...] = ("arm", "site", "age", "treatment")
#: Common spellings accepted for the views and what they mean.
VIEW_ALIASES: dict[str, str] = {
    "front": "front",
    "frontal": "front",
    "f": "front",
    "left": "left",
    "l": "left",
    "left45": "left",
    "left90": "left",
    "right": "right",
    "r": "right",
    "right45": "right",
    "right90": "right",
}
#: At most this many problems of one kind are listed one by one; the rest are summarised.
MAX_LISTED = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest.

    Attributes:
        kind: short category (``missing column``, ``bad date``, ``missing file`` ...).
        rows: 1-based data row numbers (as a spreadsheet shows them, header is row 1) or empty for the whole file.
        message: what is wrong and how to fix it.
    """

    kind: str
    rows: tuple[int, ...]
    message: str

    def __str__(self) -> str:
        where = _row_words(self.rows) if self.rows else "file"
        return f"{where}: {self.message}"


def _row_words(rows: tuple[int, ...]) -> str:
    """``row 4`` or ``rows 4, 9``."""
    return f"row {rows[0]}" if len(rows) == 1 else f"rows {_rows(rows)}"


def _rows(rows: tuple[int, ...]) -> str:
    return _listed([str(r) for r in rows], 8)


def _listed(items: list[str], limit: int) -> str:
    """``a, b, c and 4 more``: the first ``limit`` items, and how many are left unnamed."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


class ManifestError(ValueError):
    """The manifest has problems; ``problems`` lists all of them, ``str()`` is the full report."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(format_report(source, problems))


def format_report(source: str, problems: list[Problem]) -> str:
    """One readable report of all problems, grouped by kind."""
    kinds: dict[str, list[Problem]] = {}
    for p in problems:
        kinds.setdefault(p.kind, []).append(p)
    lines = [f"{source}: {len(problems)} problem{'s' * (len(problems) != 1)} found, nothing was scored"]
    for kind, ps in kinds.items():
        lines.append(f"  {kind} ({len(ps)}):")
        lines.extend(f"    {p}" for p in ps[:MAX_LISTED])
        if len(ps) > MAX_LISTED:
            lines.append(f"    ... and {len(ps) - MAX_LISTED} more")
    return "\n".join(lines)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest.

    Attributes:
        table: one row per photo with the required columns (``subject_id``, ``visit``, ``view`` as str,
            ``visit_date`` as datetime64, ``path`` absolute str), the optional ones present (``arm``/``site``
            as str, ``age`` as float) and ``row`` (1-based data row number in the source file, header is row 1).
        source: the manifest file.
        missing: indices into ``table`` of photos whose file does not exist (only when allowed).
        warnings: things worth a look that do not stop a run.
    """

    table: pd.DataFrame
    source: str
    missing: tuple[int, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.table)

    def baseline_check(self, baseline_visit: str | None) -> tuple[str | None, str | None]:
        """``(problem, warning)`` for a named baseline visit: a name no row has (a typo would empty every
        change from baseline), and the subjects that lack it (they get no change)."""
        if baseline_visit is None:
            return None, None
        visits = sorted(set(self.table["visit"].astype(str)))
        if baseline_visit not in visits:
            shown = _listed(visits, MAX_LISTED)
            return f"--baseline-visit {baseline_visit!r} is no visit of the manifest (its visits: {shown})", None
        t = self.table
        at_baseline = set(t.loc[t["visit"].astype(str) == baseline_visit, "subject_id"].astype(str))
        without = sorted(set(t["subject_id"].astype(str)) - at_baseline)
        if not without:
            return None, None
        listed = _listed(without, MAX_LISTED)
        return None, f"{len(without)} subject(s) have no visit {baseline_visit!r}, so no change from baseline: {listed}"


def _load(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet" or suffix == ".pq":
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        # Everything as text: IDs like 007 keep their zeros, dates are parsed by us with a clear message.
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    if suffix == ".tsv":
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    raise ManifestError(
        str(path), [Problem("file type", (), f"unknown manifest type {suffix!r}; use .csv or .parquet")]
    )


def _as_text(col: pd.Series) -> pd.Series:
    """Text form of a column, '' for missing; integral floats from Parquet lose their '.0'."""

    def one(v: object) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, (datetime.date, pd.Timestamp)):  # Parquet date/timestamp columns
            return v.strftime("%Y-%m-%d")
        return str(v).strip()

    return col.map(one).astype(object)


def read_manifest(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    allow_missing: bool = False,
) -> Manifest:
    """Read and validate a manifest.

    Args:
        path: CSV (``.csv``, ``.tsv``) or Parquet (``.parquet``) file.
        root: folder that relative photo paths are relative to; default the manifest's own folder.
        allow_missing: when True, photos whose file does not exist do not stop the run; they are listed in
            ``Manifest.missing`` and reported as missing in the tables.

    Returns:
        The validated manifest.

    Raises:
        ManifestError: listing every problem found (missing columns, empty cells, bad dates, unknown views,
            duplicate subject/visit/view rows, a visit with two dates, a subject in two arms, missing files).
    """
    src = Path(path)
    if src.is_dir():
        raise ManifestError(
            str(src), [Problem("missing manifest", (), "a folder: give the manifest file (.csv or .parquet)")]
        )
    if not src.is_file():
        raise ManifestError(str(src), [Problem("missing manifest", (), "no such file")])
    try:
        raw = _load(src)
    except ManifestError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types for a malformed file
        raise ManifestError(str(src), [Problem("unreadable", (), f"cannot read: {e}")]) from e
    return validate_manifest(
        raw, source=str(src), root=Path(root) if root is not None else src.parent, allow_missing=allow_missing
    )


def validate_manifest(
    raw: pd.DataFrame,
    *,
    source: str = "manifest",
    root: str | os.PathLike[str] = ".",
    allow_missing: bool = False,
) -> Manifest:
    """Validate a manifest already in a DataFrame (see ``read_manifest``); the input is not modified."""
    problems: list[Problem] = []
    warnings: list[str] = []
    cols = {str(c).strip().lower(): c for c in raw.columns}
    missing_cols = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing_cols:
        have = ", ".join(map(str, raw.columns)) or "none"
        problems.append(Problem("missing column", (), f"needs column(s) {', '.join(missing_cols)} (has: {have})"))
        raise ManifestError(source, problems)
    unknown = [str(c) for k, c in cols.items() if k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        warnings.append(f"extra column(s) ignored: {', '.join(unknown)}")
    if len(raw) == 0:
        raise ManifestError(source, [Problem("empty", (), "the manifest has no rows")])

    df = pd.DataFrame({"row": range(2, len(raw) + 2)})
    for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        if name in cols:
            df[name] = _as_text(raw[cols[name]]).to_numpy()
    found = _Findings(problems, warnings)
    _check_empty(df, found)
    _parse_dates(df, found)
    _parse_views(df, found)
    if "age" in df:
        _parse_ages(df, found)
    _check_consistency(df, found)
    missing_idx = _resolve_paths(df, Path(root), allow_missing, found)

    if problems:
        raise ManifestError(source, problems)
    for w in warnings:
        log.info("%s: %s", source, w)
    return Manifest(
        table=df.reset_index(drop=True), source=source, missing=tuple(missing_idx), warnings=tuple(warnings)
    )


@dataclass
class _Findings:
    """Problems (stop the run) and warnings (do not), collected by the checks below."""

    problems: list[Problem]
    warnings: list[str]


def _check_empty(df: pd.DataFrame, found: _Findings) -> None:
    for name in REQUIRED_COLUMNS:
        empty = df.loc[df[name] == "", "row"].tolist()
        if empty:
            found.problems.append(Problem(f"empty {name}", tuple(empty), f"{name} is empty"))


def _parse_dates(df: pd.DataFrame, found: _Findings) -> None:
    """``visit_date`` text -> datetime64. ISO 8601 only: 03/04/2024 means different days in different countries."""
    dates = pd.to_datetime(df["visit_date"], format="%Y-%m-%d", errors="coerce")
    for r, v in df.loc[dates.isna() & (df["visit_date"] != ""), ["row", "visit_date"]].itertuples(index=False):
        found.problems.append(Problem("bad date", (r,), f"visit_date {v!r} is not a date as YYYY-MM-DD"))
    df["visit_date"] = dates


def _parse_views(df: pd.DataFrame, found: _Findings) -> None:
    """``view`` spellings -> ``front``/``left``/``right``."""
    views = df["view"].str.lower().map(VIEW_ALIASES)
    for r, v in df.loc[views.isna() & (df["view"] != ""), ["row", "view"]].itertuples(index=False):
        found.problems.append(Problem("unknown view", (r,), f"view {v!r} is not one of {', '.join(VIEWS)}"))
    df["view"] = views.fillna(df["view"])


def _parse_ages(df: pd.DataFrame, found: _Findings) -> None:
    """``age`` text -> float years; impossible ages are problems, minors a warning."""
    ages = pd.to_numeric(df["age"].replace("", None), errors="coerce")
    for r, v in df.loc[ages.isna() & (df["age"] != ""), ["row", "age"]].itertuples(index=False):
        found.problems.append(Problem("bad age", (r,), f"age {v!r} is not a number"))
    for r, a in zip(df["row"], ages, strict=True):
        if pd.notna(a) and not 0 <= a <= 120:
            found.problems.append(Problem("bad age", (r,), f"age {a:g} is outside 0-120"))
    # The toxin rule applies only where the manifest records a toxin treatment for a minor.
    toxin = df["treatment"].map(is_botulinum_toxin) if "treatment" in df.columns else pd.Series(False, index=df.index)
    under = df.loc[(ages < TOXIN_MIN_AGE_YEARS) & toxin, "row"].tolist()
    if under:
        found.warnings.append(
            f"{_row_words(tuple(under))}: botulinum toxin recorded for a patient under {TOXIN_MIN_AGE_YEARS} "
            f"(it is contraindicated under {TOXIN_MIN_AGE_YEARS})"
        )
    df["age"] = ages.astype(float)


def _check_consistency(df: pd.DataFrame, found: _Findings) -> None:
    """One photo per subject/visit/view, one date per visit, one arm per subject."""
    keyed = df[(df["subject_id"] != "") & (df["visit"] != "") & (df["view"] != "")]
    for (s, v, w), grp in keyed.groupby(["subject_id", "visit", "view"], sort=False):
        if len(grp) > 1:
            same = " (the same row, path and all)" if grp["path"].nunique() == 1 else ""
            found.problems.append(
                Problem(
                    "duplicate photo",
                    tuple(grp["row"]),
                    f"subject {s} visit {v} view {w} is listed {len(grp)} times{same}",
                )
            )
    dated = df[(df["subject_id"] != "") & (df["visit"] != "") & df["visit_date"].notna()]
    for (s, v), grp in dated.groupby(["subject_id", "visit"], sort=False):
        if grp["visit_date"].nunique() > 1:
            ds = ", ".join(sorted(d.strftime("%Y-%m-%d") for d in grp["visit_date"].unique()))
            found.problems.append(
                Problem("inconsistent date", tuple(grp["row"]), f"subject {s} visit {v} has dates {ds}")
            )
    # Two visits of one subject on one date usually mean a copy-paste slip in the visit column.
    firsts = dated.drop_duplicates(["subject_id", "visit"])
    for (s, d), grp in firsts.groupby(["subject_id", "visit_date"], sort=False):
        if len(grp) > 1:
            found.warnings.append(
                f"subject {s}: visits {', '.join(grp['visit'])} share the date {d.strftime('%Y-%m-%d')}"
            )
    if "arm" in df:
        for s, grp in df[df["subject_id"] != ""].groupby("subject_id", sort=False):
            arms = sorted(set(grp["arm"]) - {""})
            if len(arms) > 1:
                found.problems.append(
                    Problem("inconsistent arm", tuple(grp["row"]), f"subject {s} is in arms {', '.join(arms)}")
                )


def _resolve_paths(df: pd.DataFrame, root: Path, allow_missing: bool, found: _Findings) -> list[int]:
    """Make ``path`` absolute (relative to ``root``); returns the indices of missing files."""
    df["path"] = [
        "" if p == "" else str((Path(p) if Path(p).is_absolute() else root / p).absolute()) for p in df["path"]
    ]
    for p, grp in df[df["path"] != ""].groupby("path", sort=False):
        # Rows that repeat one subject, visit and view as well are one problem, reported as a duplicate photo.
        if len(grp) > 1 and len(grp.drop_duplicates(["subject_id", "visit", "view"])) > 1:
            found.problems.append(Problem("duplicate path", tuple(grp["row"]), f"{p} is listed {len(grp)} times"))
    missing_rows, missing_idx = [], []
    for i, (r, p) in enumerate(zip(df["row"], df["path"], strict=True)):
        if p and not os.path.isfile(p):
            missing_rows.append(r)
            missing_idx.append(i)
            if not allow_missing:
                why = "is a folder, not a photo" if os.path.isdir(p) else "does not exist"
                found.problems.append(Problem("missing file", (r,), f"{p} {why}"))
    if missing_rows and allow_missing:
        found.warnings.append(
            f"{_row_words(tuple(missing_rows))}: photo file missing (reported as missing in the tables)"
        )
    return missing_idx
