"""``lesioncount score`` from the command line: exit codes, the report, the progress and throughput lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesioncount.cli import main
from lesioncount.io import write_image


def _manifest(tmp_path: Path, photos: dict[str, str]) -> Path:
    rows = [("S1", "baseline", "2026-01-05", view, path) for view, path in photos.items()]
    path = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "path"]).to_csv(path, index=False)
    return path


def test_bad_manifest_exit_2_with_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _manifest(tmp_path, {"sideways": "a.jpg"})
    assert main(["score", str(m), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "2 problems found, nothing was scored" in err
    assert "view 'sideways' is not one of front, left, right" in err and "a.jpg does not exist" in err
    assert not (tmp_path / "out").exists()


def test_check_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    m = _manifest(tmp_path, {"front": "a.png"})
    assert main(["score", str(m), "-o", str(tmp_path / "out"), "--check"]) == 0
    assert "1 photos, manifest OK" in capsys.readouterr().err


def test_check_finds_one_photo_filed_under_two_visits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    (tmp_path / "copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    rows = [("S1", "v1", "2026-01-05", "front", "a.png"), ("S1", "v2", "2026-02-05", "front", "copy.png")]
    path = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "path"]).to_csv(path, index=False)
    assert main(["score", str(path), "-o", str(tmp_path / "out"), "--check"]) == 0
    err = capsys.readouterr().err
    assert "rows 2, 3 are the same photo" in err and "another visit or view" in err and "manifest OK" in err
    rows[1] = ("S2", "v1", "2026-01-06", "front", "copy.png")
    pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "path"]).to_csv(path, index=False)
    assert main(["score", str(path), "-o", str(tmp_path / "out"), "--check"]) == 0
    assert "filed under 2 subjects (S1, S2): a photo of the wrong patient?" in capsys.readouterr().err


def test_score_reports_throughput_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skimage.data import astronaut

    write_image(tmp_path / "a.jpg", astronaut())
    (tmp_path / "b.jpg").write_text("not a photo")
    m = _manifest(tmp_path, {"front": "a.jpg", "left": "b.jpg"})
    out = tmp_path / "out"
    code = main(["score", str(m), "-o", str(out), "--workers", "0", "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1  # some photos did not score
    assert "photos/min" in err and "row 3: failed: ImageReadError" in err
    run = json.loads((out / "run.json").read_text())
    assert run["scored"] == 2 and run["failed"] == 1 and run["model_sha256"] and run["photos_per_minute"] > 0
    assert (out / "summary.parquet").exists()
    columns = pd.read_csv(out / "columns.csv")  # the data dictionary, beside the tables
    assert set(columns["table"]) == {"photos", "visits", "change", "summary"}
    # Rerun: nothing to score for the good photo; the failed one is retried.
    assert main(["score", str(m), "-o", str(out), "--workers", "0", "--threads", "1", "--no-progress"]) == 1
    assert json.loads((out / "run.json").read_text())["already_done"] == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "nowhere.onnx"], "cannot score: model file nowhere.onnx does not exist"),
        (["--threshold", "2"], "--threshold must be between 0 and 1, got 2.0"),
        (["--workers", "-1"], "--workers must be 0 or more, got -1"),
        (["--threads", "0"], "--threads must be 1 or more, got 0"),
    ],
)
def test_cannot_run_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    m = _manifest(tmp_path, {"front": "a.png"})
    assert main(["score", str(m), "-o", str(tmp_path / "out"), *flags]) == 3
    assert message in capsys.readouterr().err


def test_bad_flags_are_refused_by_check_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    m = _manifest(tmp_path, {"front": "a.png"})
    assert main(["score", str(m), "-o", str(tmp_path / "out"), "--check", "--workers", "-1"]) == 3
    assert "--workers must be 0 or more" in capsys.readouterr().err


def test_an_out_folder_that_is_a_file_is_refused_before_anything_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    m = _manifest(tmp_path, {"front": "a.png"})
    (tmp_path / "afile").write_text("x")
    for extra in ([], ["--check"]):
        assert main(["score", str(m), "-o", str(tmp_path / "afile"), *extra]) == 3
        assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "x"


def test_a_baseline_visit_that_is_no_visit_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    write_image(tmp_path / "b.png", np.full((80, 80, 3), 170, np.uint8))
    write_image(tmp_path / "c.png", np.full((80, 80, 3), 160, np.uint8))
    rows = [
        ("S1", "baseline", "2026-01-05", "front", "a.png"),
        ("S1", "week4", "2026-02-05", "front", "b.png"),
        ("S2", "week4", "2026-02-06", "front", "c.png"),
    ]
    path = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "path"]).to_csv(path, index=False)
    assert main(["score", str(path), "-o", str(tmp_path / "out"), "--baseline-visit", "screening"]) == 2
    err = capsys.readouterr().err
    assert "'screening' is no visit of the manifest (its visits: baseline, week4)" in err
    assert not (tmp_path / "out").exists()
    # A real visit that some subjects lack is allowed, with a warning naming them.
    assert main(["score", str(path), "-o", str(tmp_path / "out"), "--baseline-visit", "baseline", "--check"]) == 0
    assert "1 subject(s) have no visit 'baseline', so no change from baseline: S2" in capsys.readouterr().err


def test_a_folder_given_as_the_manifest_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "a folder: give the manifest file" in capsys.readouterr().err


def test_sigterm_stops_a_command_like_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import signal

    import lesioncount.cli.score as score

    def killed(args):  # the job scheduler's SIGTERM arrives mid-run
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(score, "run_score", killed)
    assert main(["score", "m.csv", "-o", "out"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_python_api_refuses_a_baseline_visit_that_is_no_visit_too(tmp_path: Path) -> None:
    from lesioncount.batch.run import run_batch

    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    m = _manifest(tmp_path, {"front": "a.png"})
    with pytest.raises(ValueError, match="'screening' is no visit of the manifest"):
        run_batch(m, tmp_path / "out", baseline_visit="screening")
    assert not (tmp_path / "out").exists()


def test_sigterm_mid_score_keeps_results_and_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import signal

    import lesioncount.batch.run as run

    write_image(tmp_path / "a.png", np.full((80, 80, 3), 180, np.uint8))
    m = _manifest(tmp_path, {"front": "a.png"})

    def killed(*args, **kwargs):  # the job scheduler's SIGTERM arrives while photos are being scored
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(run, "score_manifest", killed)
    assert main(["score", str(m), "-o", str(tmp_path / "out"), "--workers", "0", "--no-progress"]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
