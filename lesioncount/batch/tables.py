"""Tables a statistician loads directly: per photo, per subject and visit, change from baseline, summary.

Pure pandas functions over the validated manifest and the stored results; no scoring, no I/O except
``write_tables``.

How views are combined into one visit count: the counts of a visit are the **sum of its views' counts**,
per class and per region. A lesion seen in two views (the frontal and a lateral view both show the
cheeks) is counted in each, so the sum is a consistent severity index, not a head count of lesions; it
compares honestly between visits only when the same views were photographed, which ``views`` and
``views_match`` record. A visit whose photos did not all score (a failed or missing photo) has no counts
(missing, not an undercount) and ``complete`` is False.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lesioncount.io import atomic_path
from lesioncount.types import COUNT_KEYS, REGIONS

#: Count columns, per class, in every table (``total_acne`` = inflammatory + comedone).
COUNT_CLASSES: tuple[str, ...] = COUNT_KEYS
#: Per-region count columns, ``{region}_{class}``.
REGION_COLUMNS: tuple[str, ...] = tuple(f"{r}_{c}" for r in REGIONS for c in COUNT_CLASSES)
#: Manifest columns carried into the tables when present.
SUBJECT_COLUMNS: tuple[str, ...] = ("arm", "site", "age")
#: Columns that legitimately differ between two runs of the same photos (wall times, workers).
TIMING_COLUMNS: tuple[str, ...] = ("time_s", "worker")


@dataclass(frozen=True)
class Outcome:
    """What happened to one manifest row.

    Attributes:
        status: ``ok``, ``failed`` (the photo could not be scored; see ``error``), ``missing`` (no file)
            or ``pending`` (not scored yet: the run was interrupted).
        photo_sha256: SHA-256 of the photo file, '' when it could not be read.
        error: one-line reason when not ok.
        result: the CountResult dict (schema v1) when ok.
        elapsed_s: scoring wall time in the worker.
        worker: host:pid of the worker.
    """

    status: str
    photo_sha256: str = ""
    error: str = ""
    result: Mapping[str, Any] | None = None
    elapsed_s: float | None = None
    worker: str = ""


def photo_table(manifest: pd.DataFrame, outcomes: Sequence[Outcome]) -> pd.DataFrame:
    """One row per manifest row, in manifest order.

    Args:
        manifest: ``Manifest.table``.
        outcomes: one per manifest row, same order.

    Returns:
        Manifest columns, ``manifest_row``, ``photo_sha256``, ``status``, ``error``, model name/version/sha256,
        photo size, face found/view, ``view_mismatch`` (the photo looks like another view than the manifest
        says), counts per class (``COUNT_CLASSES``) and per region (``REGION_COLUMNS``), Hayashi and GAGS
        grades, quality ``warnings`` ('; '-joined), ``time_s`` and ``worker``. Counts are nullable integers, missing
        unless ``status == 'ok'``.
    """
    if len(manifest) != len(outcomes):
        raise ValueError(f"{len(outcomes)} outcomes for {len(manifest)} manifest rows")
    rows: list[dict[str, Any]] = []
    for m, o in zip(manifest.to_dict("records"), outcomes, strict=True):
        row: dict[str, Any] = {
            "subject_id": m["subject_id"],
            "visit": m["visit"],
            "visit_date": m["visit_date"],
            "view": m["view"],
        }
        for c in SUBJECT_COLUMNS:
            if c in manifest.columns:
                row[c] = m[c]
        row.update(
            path=m["path"],
            manifest_row=m["row"],
            photo_sha256=o.photo_sha256,
            status=o.status,
            error=o.error or None,
        )
        r = o.result if o.status == "ok" else None
        row["model_name"] = r["model"]["name"] if r else None
        row["model_version"] = r["model"]["version"] if r else None
        row["model_sha256"] = r["model"]["sha256"] if r else None
        row["width_px"] = r["image"]["width"] if r else None
        row["height_px"] = r["image"]["height"] if r else None
        row["face_found"] = r["face"]["found"] if r else None
        row["face_view"] = r["face"].get("view", "unknown") if r else None
        row["view_mismatch"] = (row["face_view"] not in ("unknown", m["view"])) if r else None
        for c in COUNT_CLASSES:
            row[c] = r["counts"].get(c, 0) if r else None
        # The soft count's expected number of acne lesions before rounding (None from a hard count).
        row["acne_expected"] = r.get("acne_expected") if r else None
        # Expert-style marks (a model with an experts' heatmap): not counted above; None without them.
        marks = r.get("expert_marks") if r else None
        row["acne_expert_marks"] = len(marks) if marks else None
        for reg in REGIONS:
            by = r["counts_by_region"].get(reg, {}) if r else {}
            for c in COUNT_CLASSES:
                row[f"{reg}_{c}"] = by.get(c, 0) if r else None
        g = r["grades"] if r else {}
        hay = g.get("hayashi") or {}
        gags = g.get("gags") or {}
        row["hayashi_grade"] = hay.get("grade") if r else None
        row["hayashi_label"] = hay.get("label") if r else None
        # A re-take of the same face could be graded differently (the count's band crosses a boundary).
        row["hayashi_borderline"] = hay.get("borderline") if r and hay else None
        row["gags_score"] = gags.get("score") if r else None
        row["gags_label"] = gags.get("label") if r else None
        warns = list(r.get("quality", {}).get("warnings", [])) if r else []
        row["n_warnings"] = len(warns) if r else None
        row["warnings"] = "; ".join(warns) if warns else None
        row["time_s"] = o.elapsed_s
        row["worker"] = o.worker or None
        rows.append(row)
    df = pd.DataFrame(rows)
    int_cols = [
        *COUNT_CLASSES,
        *REGION_COLUMNS,
        "width_px",
        "height_px",
        "hayashi_grade",
        "gags_score",
        "n_warnings",
        "manifest_row",
    ]
    for c in int_cols:
        df[c] = df[c].astype("Int64")
    for c in ("face_found", "view_mismatch", "hayashi_borderline"):
        df[c] = df[c].astype("boolean")
    df["visit_date"] = pd.to_datetime(df["visit_date"])
    df["acne_expected"] = df["acne_expected"].astype("Float64")
    df["acne_expert_marks"] = df["acne_expert_marks"].astype("Int64")
    df["time_s"] = df["time_s"].astype(float)
    _text_as_string(df)
    return df


def lesion_table(
    manifest: pd.DataFrame, outcomes: Sequence[Outcome], lesions: Callable[[str], Sequence[Mapping[str, Any]]]
) -> pd.DataFrame:
    """One row per lesion of every scored photo, in manifest order.

    Args:
        manifest: ``Manifest.table``.
        outcomes: one per manifest row.
        lesions: photo sha256 -> the result's lesion dicts (schema v1), e.g. read from the store.

    Returns:
        ``subject_id``, ``visit``, ``visit_date``, ``view``, ``manifest_row``, ``photo_sha256``, ``class``, ``x``,
        ``y``, ``area_px``, ``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h`` (photo pixels as a viewer shows the
        photo, origin top-left), ``score`` and ``region``.
    """
    rows = []
    for m, o in zip(manifest.to_dict("records"), outcomes, strict=True):
        if o.status != "ok":
            continue
        for les in lesions(o.photo_sha256):
            bx, by, bw, bh = les["bbox"]
            rows.append(
                {
                    "subject_id": m["subject_id"],
                    "visit": m["visit"],
                    "visit_date": m["visit_date"],
                    "view": m["view"],
                    "manifest_row": m["row"],
                    "photo_sha256": o.photo_sha256,
                    "class": les["class"],
                    "x": les["x"],
                    "y": les["y"],
                    "area_px": les["area_px"],
                    "bbox_x": bx,
                    "bbox_y": by,
                    "bbox_w": bw,
                    "bbox_h": bh,
                    "score": les["score"],
                    "region": les.get("region", "other"),
                }
            )
    cols = [
        "subject_id",
        "visit",
        "visit_date",
        "view",
        "manifest_row",
        "photo_sha256",
        "class",
        "x",
        "y",
        "area_px",
        "bbox_x",
        "bbox_y",
        "bbox_w",
        "bbox_h",
        "score",
        "region",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df["visit_date"] = pd.to_datetime(df["visit_date"])
    df["manifest_row"] = df["manifest_row"].astype("int64")
    for c in ("x", "y", "area_px", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "score"):
        df[c] = df[c].astype(float)
    _text_as_string(df)
    return df


def visit_table(photos: pd.DataFrame) -> pd.DataFrame:
    """One row per subject and visit: views combined by summing their counts (see the module docstring).

    Returns:
        ``subject_id``, ``visit``, ``visit_date``, subject columns, ``views`` ('+'-joined, sorted),
        ``n_photos``, ``n_scored``, ``complete``, ``all_faces_found`` (missing when not complete),
        ``n_warnings`` (quality warnings of its photos) and the summed count columns (missing when not
        complete), sorted by subject, date and visit.
    """
    count_cols = [*COUNT_CLASSES, *REGION_COLUMNS]
    extra = [c for c in SUBJECT_COLUMNS if c in photos.columns]
    g = photos.assign(_ok=photos["status"] == "ok").groupby(["subject_id", "visit"], sort=False)
    df = g.agg(visit_date=("visit_date", "first"), **{c: (c, "first") for c in extra})  # first non-missing
    df["views"] = g["view"].agg(lambda v: "+".join(sorted(v)))
    df["n_photos"] = g.size()
    df["n_scored"] = g["_ok"].sum()
    df["complete"] = df["n_scored"] == df["n_photos"]
    # Quality of the visit's photos: a face found in every one (a flip between found and not found changes
    # the counting scale), and the quality warnings they carry.
    df["all_faces_found"] = g["face_found"].agg(lambda f: bool(f.fillna(False).all())).astype("boolean")
    df.loc[~df["complete"], "all_faces_found"] = pd.NA
    df["n_warnings"] = g["n_warnings"].sum().astype("Int64")
    sums = g[count_cols].sum().astype("Int64")
    sums[~df["complete"]] = pd.NA  # a visit with a failed or missing photo has no counts, not an undercount
    df = pd.concat([df, sums], axis=1).reset_index()
    df["n_photos"] = df["n_photos"].astype("int64")
    df["n_scored"] = df["n_scored"].astype("int64")
    df["complete"] = df["complete"].astype(bool)
    _text_as_string(df)
    return df.sort_values(["subject_id", "visit_date", "visit"], kind="stable").reset_index(drop=True)


def change_table(visits: pd.DataFrame, *, baseline_visit: str | None = None) -> pd.DataFrame:
    """Change from baseline per subject, visit and class, in long format.

    Args:
        visits: ``visit_table`` output.
        baseline_visit: the visit label that is baseline (``"baseline"``, ``"V1"``); None takes each
            subject's earliest visit.

    Returns:
        One row per subject, visit and class in ``COUNT_CLASSES``: ``subject_id``, subject columns,
        ``visit``, ``visit_date``, ``baseline_visit``, ``days_from_baseline``, ``is_baseline``, ``class``,
        ``baseline`` (count), ``count``, ``change`` (count - baseline), ``change_pct`` (100 x change / baseline;
        missing when the baseline is 0 or either count is missing), ``views_match`` (same views as baseline),
        ``comparable`` (both visits complete, the same views, a face found in every photo of both; missing
        without both counts) and ``n_warnings`` (quality warnings of the visit's photos). The baseline visit
        itself is included (change 0). Sorted by subject, date, visit and class.
    """
    extra = [c for c in SUBJECT_COLUMNS if c in visits.columns]
    v = visits.sort_values(["subject_id", "visit_date", "visit"], kind="stable")
    if baseline_visit is None:
        base = v.drop_duplicates("subject_id", keep="first")
    else:
        base = v[v["visit"] == baseline_visit].drop_duplicates("subject_id", keep="first")
    base = base.set_index("subject_id")
    ids = ["subject_id", *extra, "visit", "visit_date", "views", "all_faces_found", "n_warnings"]
    long = v.melt(id_vars=ids, value_vars=list(COUNT_CLASSES), var_name="class", value_name="count")
    b_long = (
        base.reset_index()
        .melt(
            id_vars=["subject_id", "visit", "visit_date", "views", "all_faces_found"],
            value_vars=list(COUNT_CLASSES),
            var_name="class",
            value_name="baseline",
        )
        .rename(
            columns={
                "visit": "baseline_visit",
                "visit_date": "_base_date",
                "views": "_base_views",
                "all_faces_found": "_base_faces",
            }
        )
    )
    df = long.merge(b_long, on=["subject_id", "class"], how="left", sort=False)
    has_base = df["baseline_visit"].notna()
    df["days_from_baseline"] = (df["visit_date"] - df["_base_date"]).dt.days.astype("Int64")
    df["is_baseline"] = (has_base & (df["visit"] == df["baseline_visit"])).astype(bool)
    df["count"] = df["count"].astype("Int64")
    df["baseline"] = df["baseline"].astype("Int64")
    df["change"] = (df["count"] - df["baseline"]).astype("Int64")
    pct = 100.0 * df["change"].astype("Float64") / df["baseline"].astype("Float64").mask(df["baseline"] == 0)
    df["change_pct"] = pct.astype(float)
    df["views_match"] = (df["views"] == df["_base_views"]).astype("boolean").mask(~has_base)
    # Comparable: both visits complete, the same views, and a face found in every photo of both.
    both = df["count"].notna() & df["baseline"].notna()
    faces = df["all_faces_found"].astype("boolean") & df["_base_faces"].astype("boolean")
    df["comparable"] = (df["views_match"] & faces).astype("boolean").mask(~has_base | ~both)
    cls_rank = df["class"].map({c: i for i, c in enumerate(COUNT_CLASSES)})
    df = df.assign(_c=cls_rank).sort_values(["subject_id", "visit_date", "visit", "_c"], kind="stable")
    cols = [
        "subject_id",
        *extra,
        "visit",
        "visit_date",
        "baseline_visit",
        "days_from_baseline",
        "is_baseline",
        "class",
        "baseline",
        "count",
        "change",
        "change_pct",
        "views_match",
        "comparable",
        "n_warnings",
    ]
    df = df[cols].reset_index(drop=True)
    _text_as_string(df)
    return df


def _text_as_string(df: pd.DataFrame) -> None:
    """Text columns as pandas' nullable ``string`` dtype (missing = NA), in place: one dtype in every table."""
    for c in df.columns:
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype):
            df[c] = df[c].astype("string")


def _t975(dof: int) -> float:
    from scipy.stats import t  # imported lazily: scipy is only needed for the summary

    return float(t.ppf(0.975, dof))


def summary_table(changes: pd.DataFrame) -> pd.DataFrame:
    """Per follow-up visit, arm, class and measure: n, mean, sd, median, 95% CI, days, comparability.

    Measures: ``count``, ``change``, ``change_pct`` and ``ratio_pct``. The mean percent change is dominated
    by subjects with tiny baselines (2 -> 6 lesions is +200%), so its median, and ``ratio_pct``, a robust
    alternative, sit beside it: the geometric mean of (count + 1) / (baseline + 1) as a percent change,
    with its 95% CI taken on the log scale. The 95% CI of the others is the t-interval for the mean
    (missing for n < 2). Baseline rows (change 0 by definition) are left out, and so are the rows whose
    visits are not comparable (different views, or a face not found in a photo: a grey wall's zero is no
    lesion count); ``n_not_comparable`` says how many were left out, and the change table keeps them.
    ``median_days`` is the median days from baseline. Subjects without an ``arm`` are summarised under arm
    ``all``. Visits are ordered by their median days from baseline.

    Args:
        changes: ``change_table`` output.
    """
    df = changes[~changes["is_baseline"]].copy()
    df["arm"] = df["arm"].fillna("all") if "arm" in df.columns else "all"
    order = df.groupby("visit")["days_from_baseline"].median().sort_values(kind="stable")
    rank = {v: i for i, v in enumerate(order.index)}
    out = []
    for (visit, arm, cls), whole in df.groupby(["visit", "arm", "class"], sort=False):
        days = pd.to_numeric(whole["days_from_baseline"], errors="coerce").astype(float).dropna()
        not_comparable = (whole["comparable"] == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712 - NA stays in
        grp = whole[~not_comparable]
        both = grp["count"].notna() & grp["baseline"].notna()
        log_ratio = np.log((grp.loc[both, "count"].astype(float) + 1) / (grp.loc[both, "baseline"].astype(float) + 1))
        for measure in ("count", "change", "change_pct", "ratio_pct"):
            if measure == "ratio_pct":
                x = log_ratio.to_numpy()
                stats = _mean_ci(x)
                stats = {
                    k: (100.0 * (math.exp(v) - 1.0) if k in ("mean", "median", "ci95_low", "ci95_high") else v)
                    for k, v in stats.items()
                }
                stats["sd"] = math.nan  # a log-scale spread; the CI carries it
            else:
                vals = pd.to_numeric(grp[measure], errors="coerce").astype(float)
                x = vals.dropna().to_numpy()
                stats = _mean_ci(x)
            out.append(
                {
                    "visit": visit,
                    "arm": arm,
                    "class": cls,
                    "measure": measure,
                    **stats,
                    "median_days": float(days.median()) if len(days) else math.nan,
                    "n_not_comparable": int(not_comparable.sum()),
                    "_rank": rank.get(visit, len(rank)),
                }
            )
    columns = ["visit", "arm", "class", "measure", "n", "mean", "sd", "median", "ci95_low", "ci95_high"]
    res = pd.DataFrame(out, columns=[*columns, "median_days", "n_not_comparable", "_rank"])
    cls_rank = {c: i for i, c in enumerate(COUNT_CLASSES)}
    m_rank = {"count": 0, "change": 1, "change_pct": 2, "ratio_pct": 3}
    res["_c"] = res["class"].map(cls_rank)
    res["_m"] = res["measure"].map(m_rank)
    res = res.sort_values(["_rank", "arm", "_c", "_m"], kind="stable").drop(columns=["_rank", "_c", "_m"])
    _text_as_string(res)
    res["n"] = res["n"].astype("int64")
    res["n_not_comparable"] = res["n_not_comparable"].astype("int64")
    return res.reset_index(drop=True)


def _mean_ci(x: npt.NDArray[np.float64]) -> dict[str, float]:
    """n, mean, sd, median and the t-interval 95% CI of the mean (NaN where undefined)."""
    n = len(x)
    mean = float(np.mean(x)) if n else math.nan
    sd = float(np.std(x, ddof=1)) if n > 1 else math.nan
    half = _t975(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "median": float(np.median(x)) if n else math.nan,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
    }


def build_tables(
    manifest: pd.DataFrame, outcomes: Sequence[Outcome], *, baseline_visit: str | None = None
) -> dict[str, pd.DataFrame]:
    """All four tables: ``photos``, ``visits``, ``change``, ``summary``."""
    photos = photo_table(manifest, outcomes)
    visits = visit_table(photos)
    change = change_table(visits, baseline_visit=baseline_visit)
    return {"photos": photos, "visits": visits, "change": change, "summary": summary_table(change)}


def write_tables(
    tables: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike[str], *, formats: Sequence[str] = ("csv", "parquet")
) -> list[Path]:
    """Write each table as ``<name>.csv`` and ``<name>.parquet`` in ``out_dir``, each file atomically.

    Returns:
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        for fmt in formats:
            dest = out / f"{name}.{fmt}"
            with atomic_path(dest) as tmp:
                if fmt == "csv":
                    df.to_csv(tmp, index=False, date_format="%Y-%m-%d")
                elif fmt == "parquet":
                    df.to_parquet(tmp, index=False)
                else:
                    raise ValueError(f"unknown table format {fmt!r}; use csv or parquet")
            written.append(dest)
    return written
