"""Tables from hand-made outcomes: golden values for sums, change from baseline and the summary."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lesioncount.batch.tables import (
    COUNT_CLASSES,
    REGION_COLUMNS,
    Outcome,
    build_tables,
    change_table,
    lesion_table,
    write_tables,
)


def _result(inflammatory: int, comedone: int, scar: int = 0, view: str = "front") -> dict[str, object]:
    counts = {"inflammatory": inflammatory, "comedone": comedone, "scar": scar, "total_acne": inflammatory + comedone}
    return {
        "image": {"width": 640, "height": 480},
        "model": {"name": "m", "version": "1", "sha256": "s" * 64},
        "face": {"found": True, "view": view},
        "counts": counts,
        "counts_by_region": {"forehead": counts},
        "grades": {"hayashi": {"grade": 1, "label": "moderate"}, "gags": None},
        "quality": {"warnings": ["w1", "w2"]},
    }


def _manifest(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "arm"])
    df["visit_date"] = pd.to_datetime(df["visit_date"])
    df["path"] = [f"/p/{i}.jpg" for i in range(len(df))]
    df["row"] = range(2, len(df) + 2)
    return df


ROWS = [
    ("S1", "base", "2026-01-01", "front", "A"),
    ("S1", "base", "2026-01-01", "left", "A"),
    ("S1", "w12", "2026-03-26", "front", "A"),
    ("S1", "w12", "2026-03-26", "left", "A"),
    ("S2", "base", "2026-01-02", "front", "A"),
    ("S2", "w12", "2026-03-27", "front", "A"),
    ("S3", "base", "2026-01-03", "front", "B"),
    ("S3", "w12", "2026-03-28", "front", "B"),
]


def _outcomes() -> list[Outcome]:
    ok = lambda i, c, v="front": Outcome("ok", f"h{i}", result=_result(i, c, view=v), elapsed_s=0.1)  # noqa: E731
    return [
        ok(10, 4),
        ok(6, 2, "right"),  # S1 base: 16 inflammatory, 6 comedones; left photo looks like right
        ok(5, 3),
        ok(3, 1),  # S1 w12: 8, 4
        ok(0, 2),
        ok(2, 1),  # S2 base 0 inflammatory: percent change undefined
        ok(12, 0),
        Outcome("failed", "h9", error="corrupt"),  # S3 w12 incomplete
    ]


def test_photo_table_columns_and_types() -> None:
    photos = build_tables(_manifest(ROWS), _outcomes())["photos"]
    assert len(photos) == 8
    for c in (*COUNT_CLASSES, *REGION_COLUMNS):
        assert str(photos[c].dtype) == "Int64"
    assert photos["inflammatory"].tolist()[:2] == [10, 6]
    assert photos["forehead_total_acne"].iloc[0] == 14 and photos["chin_scar"].iloc[0] == 0
    assert photos["view_mismatch"].tolist()[:2] == [False, True]
    assert photos["warnings"].iloc[0] == "w1; w2" and photos["n_warnings"].iloc[0] == 2
    assert photos["status"].iloc[7] == "failed" and photos["error"].iloc[7] == "corrupt"
    assert pd.isna(photos["inflammatory"].iloc[7])
    # Results from a hard count (as these) carry no expected count: the column is there, empty, a float.
    assert str(photos["acne_expected"].dtype) == "Float64" and photos["acne_expected"].isna().all()
    soft = _outcomes()
    soft[0].result["acne_expected"] = 13.6  # type: ignore[index]
    assert build_tables(_manifest(ROWS), soft)["photos"]["acne_expected"].iloc[0] == 13.6
    # Expert-style marks: their number where the model gave some, empty (not 0) where it has none.
    assert str(photos["acne_expert_marks"].dtype) == "Int64" and photos["acne_expert_marks"].isna().all()
    soft[1].result["expert_marks"] = [{"class": "acne"}] * 7  # type: ignore[index]
    assert build_tables(_manifest(ROWS), soft)["photos"]["acne_expert_marks"].iloc[1] == 7


def test_visits_sum_views_and_refuse_incomplete() -> None:
    visits = build_tables(_manifest(ROWS), _outcomes())["visits"]
    s1 = visits[visits["subject_id"] == "S1"].set_index("visit")
    assert s1.loc["base", "inflammatory"] == 16 and s1.loc["base", "comedone"] == 6
    assert s1.loc["base", "total_acne"] == 22 and s1.loc["base", "views"] == "front+left"
    s3 = visits[(visits["subject_id"] == "S3") & (visits["visit"] == "w12")].iloc[0]
    assert not s3["complete"] and s3["n_scored"] == 0 and pd.isna(s3["inflammatory"])


def test_change_from_baseline_long_format() -> None:
    change = build_tables(_manifest(ROWS), _outcomes())["change"]
    assert len(change) == 6 * len(COUNT_CLASSES)
    infl = change[change["class"] == "inflammatory"].set_index(["subject_id", "visit"])
    assert infl.loc[("S1", "w12"), "change"] == -8 and infl.loc[("S1", "w12"), "change_pct"] == -50.0
    assert infl.loc[("S1", "w12"), "days_from_baseline"] == 84
    assert infl.loc[("S1", "base"), "is_baseline"] and infl.loc[("S1", "base"), "change"] == 0
    assert infl.loc[("S2", "w12"), "change"] == 2 and math.isnan(infl.loc[("S2", "w12"), "change_pct"])
    assert pd.isna(infl.loc[("S3", "w12"), "change"])
    assert infl.loc[("S1", "w12"), "views_match"]


def test_named_baseline_visit() -> None:
    visits = build_tables(_manifest(ROWS), _outcomes())["visits"]
    change = change_table(visits, baseline_visit="w12")
    infl = change[change["class"] == "inflammatory"].set_index(["subject_id", "visit"])
    assert infl.loc[("S1", "base"), "change"] == 8 and infl.loc[("S1", "base"), "days_from_baseline"] == -84
    none = change_table(visits, baseline_visit="nope")
    assert none["baseline"].isna().all() and none["baseline_visit"].isna().all()


def test_summary_golden_values() -> None:
    summary = build_tables(_manifest(ROWS), _outcomes())["summary"]
    assert list(summary["visit"].unique()) == ["w12"]  # baseline rows (change 0 by definition) left out
    row = summary[
        (summary["visit"] == "w12")
        & (summary["arm"] == "A")
        & (summary["class"] == "inflammatory")
        & (summary["measure"] == "change")
    ].iloc[0]
    # changes -8 (S1) and +2 (S2): mean -3, sd sqrt(50), t(0.975, 1) = 12.7062
    assert row["n"] == 2 and row["mean"] == -3 and row["median"] == -3
    assert row["sd"] == pytest.approx(math.sqrt(50))
    assert row["ci95_low"] == pytest.approx(-3 - 12.7062047 * 5, abs=1e-4)
    assert row["ci95_high"] == pytest.approx(-3 + 12.7062047 * 5, abs=1e-4)
    pct = summary[
        (summary["visit"] == "w12")
        & (summary["arm"] == "A")
        & (summary["class"] == "inflammatory")
        & (summary["measure"] == "change_pct")
    ].iloc[0]
    assert pct["n"] == 1 and pct["mean"] == -50 and math.isnan(pct["ci95_low"])
    b = summary[(summary["visit"] == "w12") & (summary["arm"] == "B") & (summary["measure"] == "count")]
    assert (b["n"] == 0).all()
    # The robust alternative: geometric mean of (count + 1) / (baseline + 1): S1 9/17, S2 3/1.
    ratio = summary[
        (summary["visit"] == "w12")
        & (summary["arm"] == "A")
        & (summary["class"] == "inflammatory")
        & (summary["measure"] == "ratio_pct")
    ].iloc[0]
    assert ratio["n"] == 2 and ratio["mean"] == pytest.approx(100 * (math.sqrt(27 / 17) - 1))
    assert ratio["ci95_low"] < ratio["mean"] < ratio["ci95_high"]
    assert row["median_days"] == 84 and row["n_not_comparable"] == 0


def test_a_visit_without_a_face_is_not_comparable() -> None:
    outcomes = _outcomes()
    no_face = dict(outcomes[5].result or {})
    no_face["face"] = {"found": False, "view": "unknown"}
    outcomes[5] = Outcome("ok", "h5", result=no_face, elapsed_s=0.1)  # S2 w12
    tables = build_tables(_manifest(ROWS), outcomes)
    change = tables["change"]
    infl = change[change["class"] == "inflammatory"].set_index(["subject_id", "visit"])
    assert not infl.loc[("S2", "w12"), "comparable"] and infl.loc[("S1", "w12"), "comparable"]
    assert pd.isna(infl.loc[("S3", "w12"), "comparable"])  # incomplete: no verdict
    assert infl.loc[("S1", "w12"), "n_warnings"] == 4
    s = tables["summary"]
    row = s[(s["arm"] == "A") & (s["class"] == "inflammatory") & (s["measure"] == "change")].iloc[0]
    # The photo without a face is no count of zero: its visit is left out of the statistics, and said so.
    kept = infl.loc[[("S1", "w12")], "change"].astype(float)
    assert row["n"] == 1 and row["n_not_comparable"] == 1 and row["mean"] == kept.mean()


def test_no_arm_column_summarised_as_all() -> None:
    m = _manifest(ROWS).drop(columns=["arm"])
    summary = build_tables(m, _outcomes())["summary"]
    assert set(summary["arm"]) == {"all"}


def test_write_tables_round_trip(tmp_path: Path) -> None:
    tables = build_tables(_manifest(ROWS), _outcomes())
    written = write_tables(tables, tmp_path)
    assert len(written) == 8 and not list(tmp_path.glob(".*"))
    for name, df in tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"), df)
        csv = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(csv.columns) == list(df.columns) and len(csv) == len(df)
    assert pd.read_csv(tmp_path / "visits.csv")["visit_date"].iloc[0] == "2026-01-01"
    with pytest.raises(ValueError, match="unknown table format 'xlsx'"):
        write_tables(tables, tmp_path, formats=("xlsx",))


def test_outcomes_must_match_manifest() -> None:
    with pytest.raises(ValueError, match="1 outcomes for 8 manifest rows"):
        build_tables(_manifest(ROWS), _outcomes()[:1])


def test_lesion_table_rows_and_empty() -> None:
    m = _manifest(ROWS[:2])
    les = {"class": "scar", "x": 1.5, "y": 2.0, "area_px": 3.0, "bbox": [1, 1, 2, 2], "score": 0.9, "region": "nose"}
    outcomes = [Outcome("ok", "h0", result=_result(0, 0)), Outcome("failed", "h1", error="x")]
    table = lesion_table(m, outcomes, lambda sha: [les, les] if sha == "h0" else [les])
    assert len(table) == 2 and list(table["bbox_w"]) == [2.0, 2.0] and table["manifest_row"].tolist() == [2, 2]
    empty = lesion_table(m, outcomes, lambda sha: [])
    assert len(empty) == 0 and str(empty["x"].dtype) == "float64" and "region" in empty.columns


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.integers(0, 60)),
        min_size=1,
        max_size=6,
    )
)
def test_change_invariants(counts: list[tuple[int, int, int, int]]) -> None:
    """Per subject: baseline (front, left) then week 12 (front, left); visit = sum of views; change = count - base."""
    rows, outcomes = [], []
    for s, (b_front, b_left, w_front, w_left) in enumerate(counts):
        for visit, date, views in (("base", "2026-01-01", (b_front, b_left)), ("w12", "2026-03-26", (w_front, w_left))):
            for view, n in zip(("front", "left"), views, strict=True):
                rows.append((f"S{s}", visit, date, view, "A"))
                outcomes.append(Outcome("ok", f"h{len(outcomes)}", result=_result(n, 1)))
    tables = build_tables(_manifest(rows), outcomes)
    change = tables["change"]
    infl = change[(change["class"] == "inflammatory") & (change["visit"] == "w12")].reset_index(drop=True)
    base = [b_front + b_left for b_front, b_left, _, _ in counts]
    week = [w_front + w_left for _, _, w_front, w_left in counts]
    assert infl["baseline"].tolist() == base and infl["count"].tolist() == week
    assert infl["change"].tolist() == [w - b for w, b in zip(week, base, strict=True)]
    for pct, w, b in zip(infl["change_pct"], week, base, strict=True):
        assert (math.isnan(pct) and b == 0) or pct == pytest.approx(100 * (w - b) / b)
    comedones = change[(change["class"] == "comedone") & ~change["is_baseline"]]
    assert (comedones["change"] == 0).all()  # one comedone per photo at every visit
    summary = tables["summary"]
    row = summary[(summary["visit"] == "w12") & (summary["class"] == "inflammatory") & (summary["measure"] == "change")]
    assert row["n"].iloc[0] == len(counts)
    assert row["mean"].iloc[0] == pytest.approx(sum(w - b for w, b in zip(week, base, strict=True)) / len(counts))


def test_baseline_only_trial_has_an_empty_summary_with_its_columns() -> None:
    summary = build_tables(_manifest(ROWS[:2]), _outcomes()[:2])["summary"]
    assert len(summary) == 0
    assert {"visit", "arm", "class", "measure", "n", "mean", "median_days", "n_not_comparable"} <= set(summary.columns)


def test_the_data_dictionary_names_every_column_of_every_table() -> None:
    from lesioncount.batch.dictionary import data_dictionary

    tables = build_tables(_manifest(ROWS), _outcomes())
    d = data_dictionary(tables)
    assert len(d) == sum(len(t.columns) for t in tables.values())
    assert set(d["type"]) <= {"text", "integer", "number", "boolean", "date"}
    unknown = d[d["meaning"].str.startswith("a column of the manifest")]
    assert unknown.empty, unknown  # every column the tool writes is described
    subject = d[(d["table"] == "photos") & (d["column"] == "subject_id")].iloc[0]
    assert subject["type"] == "text" and "dtype={'subject_id': str}" in subject["meaning"]
    typed = d.set_index(["table", "column"])["type"]
    assert typed[("change", "is_baseline")] == "boolean" and typed[("photos", "manifest_row")] == "integer"
    assert typed[("summary", "mean")] == "number" and typed[("visits", "left_cheek_inflammatory")] in (
        "integer",
        "number",
    )
    region = d[(d["table"] == "visits") & (d["column"] == "left_cheek_inflammatory")].iloc[0]
    assert region["meaning"] == "number of inflammatory lesions (papules, pustules, nodules) in region left cheek"
