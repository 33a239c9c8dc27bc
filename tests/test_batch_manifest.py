"""Manifest reading and validation: every problem found at once, with row numbers and a fix."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest

from lesioncount.batch.manifest import ManifestError, read_manifest, validate_manifest

COLUMNS = ["subject_id", "visit", "visit_date", "view", "path"]


def _photos(folder: Path, *names: str) -> None:
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"jpeg")


def _write(folder: Path, rows: list[tuple[object, ...]], columns: list[str] = COLUMNS) -> Path:
    path = folder / "manifest.csv"
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def test_valid_manifest_normalised(tmp_path: Path) -> None:
    _photos(tmp_path, "p/a.jpg", "p/b.jpg")
    rows = [
        ("007", "baseline", "2026-01-05", "Frontal", "p/a.jpg", "A", 34),
        ("007", "w12", "2026-03-30", "L", "p/b.jpg", "A", 34),
    ]
    m = read_manifest(_write(tmp_path, rows, [*COLUMNS, "arm", "age"]))
    t = m.table
    assert len(m) == 2 and m.missing == () and m.warnings == ()
    assert list(t["subject_id"]) == ["007", "007"]  # leading zeros kept
    assert list(t["view"]) == ["front", "left"]
    assert list(t["row"]) == [2, 3]  # spreadsheet rows: the header is row 1
    assert t["visit_date"].iloc[1] == pd.Timestamp("2026-03-30")
    assert t["path"].iloc[0] == str((tmp_path / "p/a.jpg").absolute())
    assert t["age"].dtype == float


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    _photos(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")
    rows = [
        ("S1", "baseline", "2026-01-05", "front", "a.jpg", "A", "30"),
        ("S1", "baseline", "2026-01-05", "front", "b.jpg", "A", "30"),  # duplicate subject/visit/view
        ("S1", "week4", "05/02/2026", "left", "c.jpg", "A", "30"),  # ambiguous date
        ("S1", "week8", "2026-03-01", "top", "d.jpg", "B", "30"),  # unknown view, second arm
        ("S2", "baseline", "2026-01-06", "front", "nowhere.jpg", "A", "abc"),  # missing file, bad age
        ("S2", "", "2026-01-06", "left", "e.jpg", "A", "30"),  # empty visit
        ("S3", "baseline", "2026-01-07", "front", "a.jpg", "B", "30"),  # same file as row 2
        ("S3", "baseline", "2026-01-08", "left", "e.jpg", "B", "30"),  # second date for one visit; e.jpg again
    ]
    with pytest.raises(ManifestError) as err:
        read_manifest(_write(tmp_path, rows, [*COLUMNS, "arm", "age"]))
    kinds = {p.kind for p in err.value.problems}
    assert kinds == {
        "duplicate photo",
        "bad date",
        "unknown view",
        "inconsistent arm",
        "missing file",
        "bad age",
        "empty visit",
        "duplicate path",
        "inconsistent date",
    }
    report = str(err.value)
    assert "nothing was scored" in report.splitlines()[0]
    assert "rows 2, 3: subject S1 visit baseline view front is listed 2 times" in report
    assert "row 4: visit_date '05/02/2026' is not a date as YYYY-MM-DD" in report
    assert "row 5: view 'top' is not one of front, left, right" in report
    assert "nowhere.jpg does not exist" in report
    assert "subject S3 visit baseline has dates 2026-01-07, 2026-01-08" in report
    assert "subject S1 is in arms A, B" in report


def test_missing_columns_named(tmp_path: Path) -> None:
    path = _write(tmp_path, [("S1", "v1", "x.jpg")], ["subject", "visit", "path"])
    with pytest.raises(
        ManifestError, match=r"needs column\(s\) subject_id, visit_date, view \(has: subject, visit, path\)"
    ):
        read_manifest(path)


def test_allow_missing_keeps_going(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _photos(tmp_path, "a.jpg")
    rows = [("S1", "v1", "2026-01-05", "front", "a.jpg"), ("S1", "v1", "2026-01-05", "left", "gone.jpg")]
    path = _write(tmp_path, rows)
    with pytest.raises(ManifestError, match="gone.jpg does not exist"):
        read_manifest(path)
    m = read_manifest(path, allow_missing=True)
    assert m.missing == (1,)
    assert m.warnings[0].startswith("row 3: photo file missing")


def test_a_row_listed_twice_is_one_problem(tmp_path: Path) -> None:
    _photos(tmp_path, "a.jpg")
    rows = [("S1", "v1", "2026-01-05", "front", "a.jpg"), ("S1", "v1", "2026-01-05", "front", "a.jpg")]
    with pytest.raises(ManifestError) as err:
        read_manifest(_write(tmp_path, rows))
    assert [p.kind for p in err.value.problems] == ["duplicate photo"]
    assert "is listed 2 times (the same row, path and all)" in str(err.value)


def test_parquet_with_typed_columns_and_root(tmp_path: Path) -> None:
    _photos(tmp_path / "photos", "1.jpg")
    df = pd.DataFrame(
        {
            "subject_id": [101],
            "visit": [1],
            "visit_date": [datetime.date(2026, 1, 5)],
            "view": ["right"],
            "path": ["1.jpg"],
            "age": [16.0],
        }
    )
    df.to_parquet(tmp_path / "m.parquet")
    m = read_manifest(tmp_path / "m.parquet", root=tmp_path / "photos")
    assert m.table["subject_id"].iloc[0] == "101" and m.table["visit"].iloc[0] == "1"
    assert m.table["visit_date"].iloc[0] == pd.Timestamp("2026-01-05")
    assert not any("under 18" in w for w in m.warnings)  # no treatment column: no toxin claim
    df["treatment"] = ["botulinum toxin 20 U"]
    df.to_parquet(tmp_path / "t.parquet")
    m = read_manifest(tmp_path / "t.parquet", root=tmp_path / "photos")
    assert any("botulinum toxin recorded for a patient under 18" in w for w in m.warnings)
    df["treatment"] = ["doxycycline"]
    df.to_parquet(tmp_path / "d.parquet")
    assert not any("under 18" in w for w in read_manifest(tmp_path / "d.parquet", root=tmp_path / "photos").warnings)


def test_warnings_do_not_stop(tmp_path: Path) -> None:
    _photos(tmp_path, "a.jpg", "b.jpg")
    rows = [("S1", "v1", "2026-01-05", "front", "a.jpg", "x"), ("S1", "v2", "2026-01-05", "front", "b.jpg", "y")]
    m = read_manifest(_write(tmp_path, rows, [*COLUMNS, "note"]))
    assert any("extra column(s) ignored: note" in w for w in m.warnings)
    assert any("visits v1, v2 share the date 2026-01-05" in w for w in m.warnings)


def test_validate_does_not_mutate_input(tmp_path: Path) -> None:
    _photos(tmp_path, "a.jpg")
    raw = pd.DataFrame([("S1", "v1", "2026-01-05", "F", "a.jpg")], columns=COLUMNS)
    before = raw.copy()
    validate_manifest(raw, root=tmp_path)
    pd.testing.assert_frame_equal(raw, before)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.xlsx", b"", "unknown manifest type '.xlsx'"),
        ("m.csv", b"subject_id,visit,visit_date,view,path\n", "the manifest has no rows"),
        ("none.csv", None, "no such file"),
    ],
)
def test_unusable_files(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path / name)
