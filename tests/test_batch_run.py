"""Scoring a manifest end to end: local pool vs Dask cluster, kill and resume, bad photos."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lesioncount import synth
from lesioncount.batch import PipelineScorer, ResultStore, read_manifest, run_batch, score_manifest
from lesioncount.batch.store import ModelKey
from lesioncount.batch.tables import TIMING_COLUMNS, build_tables
from lesioncount.io import sha256_file, write_image

REPO = Path(__file__).resolve().parents[1]
#: A low threshold so the interim model reports lesions on these small photos (tables are not all zeros).
THRESHOLD = 0.1


def _skin_photo(rng: np.random.Generator, n_papules: int, n_comedones: int) -> np.ndarray:
    from skimage.data import astronaut

    image = astronaut()[:, 64:448]  # 512x384, non-square
    image, _ = synth.plant(
        image, {"papule": n_papules, "blackhead": n_comedones}, rng, allowed=synth.skin_tone_mask(image)
    )
    return image


def make_trial(folder: Path, *, subjects: int = 3, seed: int = 0) -> Path:
    """A manifest of synthetic photos: subjects x 2 visits x 2 views, arms A/B, lesions falling at week 12."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        for visit, date, n in (("baseline", "2026-01-05", 8), ("week12", "2026-03-30", 3)):
            for view in ("front", "left"):
                name = f"photos/S{s:03d}_{visit}_{view}.jpg"
                write_image(folder / name, _skin_photo(rng, n + s, n // 2))
                rows.append(
                    {
                        "subject_id": f"S{s:03d}",
                        "visit": visit,
                        "visit_date": date,
                        "view": view,
                        "path": name,
                        "arm": "AB"[s % 2],
                        "site": "01",
                        "age": 30 + s,
                    }
                )
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _without_timing(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: v.drop(columns=[c for c in TIMING_COLUMNS if c in v.columns]) for k, v in tables.items()}


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trial(tmp_path_factory.mktemp("trial"))


@pytest.fixture(scope="module")
def scorer() -> PipelineScorer:
    return PipelineScorer.create(threshold=THRESHOLD)


@pytest.fixture(scope="module")
def local_run(trial: Path, scorer: PipelineScorer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    report = run_batch(trial, out, scorer=scorer, workers=2, threads=1, lesions=True)
    assert report.n_scored == 12 and report.n_failed == 0 and report.workers == 2
    return out


def test_local_run_writes_all_tables(local_run: Path) -> None:
    for name in ("photos", "visits", "change", "summary"):
        csv = pd.read_csv(local_run / f"{name}.csv")
        pq = pd.read_parquet(local_run / f"{name}.parquet")
        assert len(csv) == len(pq) > 0
    photos = pd.read_parquet(local_run / "photos.parquet")
    assert (photos["status"] == "ok").all()
    assert photos["total_acne"].sum() > 0, "threshold too high for the interim model: the test would prove little"
    assert photos["model_sha256"].nunique() == 1
    visits = pd.read_parquet(local_run / "visits.parquet")
    assert len(visits) == 6 and visits["complete"].all()
    # Views combined by summing.
    front_left = photos.groupby(["subject_id", "visit"])["inflammatory"].sum().reset_index()
    merged = visits.merge(front_left, on=["subject_id", "visit"], suffixes=("", "_sum"))
    assert (merged["inflammatory"] == merged["inflammatory_sum"]).all()
    change = pd.read_parquet(local_run / "change.parquet")
    assert len(change) == 6 * 4
    summary = pd.read_parquet(local_run / "summary.parquet")
    assert set(summary["arm"]) == {"A", "B"}
    lesions = pd.read_parquet(local_run / "lesions.parquet")
    per_photo = lesions.groupby("manifest_row").size().reindex(photos["manifest_row"], fill_value=0)
    assert (per_photo.to_numpy() == (photos["total_acne"] + photos["scar"]).to_numpy()).all()
    assert set(lesions["class"]) <= {"inflammatory", "comedone", "scar"}


def test_rerun_skips_what_is_done(trial: Path, local_run: Path, scorer: PipelineScorer) -> None:
    report = run_batch(trial, local_run, scorer=scorer, workers=1, threads=1)
    assert report.n_scored == 0 and report.n_already_done == 12
    forced = run_batch(trial, local_run, scorer=scorer, workers=0, threads=1, force=True)
    assert forced.n_scored == 12
    with ResultStore(local_run / "results.sqlite") as store:
        assert store.count() == 12


@pytest.mark.slow
def test_dask_cluster_gives_identical_tables(
    trial: Path, local_run: Path, scorer: PipelineScorer, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        report = run_batch(trial, tmp_path, scorer=scorer, scheduler=cluster.scheduler_address, lesions=True)
    assert report.backend == "dask" and report.n_scored == 12 and report.n_failed == 0 and report.workers == 2
    with ResultStore(tmp_path / "results.sqlite") as store:
        workers = {r.worker for r in store.records(report.key)}
    assert len(workers) == 2, "both worker processes should have scored photos"
    for name in ("photos", "visits", "change", "summary", "lesions"):
        local = pd.read_parquet(local_run / f"{name}.parquet")
        dask = pd.read_parquet(tmp_path / f"{name}.parquet")
        drop = [c for c in TIMING_COLUMNS if c in local.columns]
        pd.testing.assert_frame_equal(local.drop(columns=drop), dask.drop(columns=drop))


def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """True once no live (non-zombie) process is left in the process group."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(stat.parent.name)
        if not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    # A longer trial (32 photos) than the shared one: the run must still be going when the kill comes.
    trial = make_trial(tmp_path / "long", subjects=8, seed=5)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "lesioncount.cli",
        "score",
        str(trial),
        "-o",
        str(out),
        "--workers",
        "1",
        "--threads",
        "1",
        "--threshold",
        str(THRESHOLD),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "score.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log_file, stderr=subprocess.STDOUT)
    db = out / "results.sqlite"
    n = 0
    deadline = time.monotonic() + 120
    try:
        while n < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            n = _stored(db)
        assert proc.poll() is None, "the run ended before it could be killed: " + log.read_text()
    finally:
        proc.kill()  # SIGKILL to the parent only: its pool workers must notice and exit by themselves
        proc.wait()
    orphans_gone = _wait_group_gone(proc.pid, timeout_s=15)
    if not orphans_gone:
        os.killpg(proc.pid, signal.SIGKILL)  # clean up what this test started before failing
    assert orphans_gone, "pool workers outlived their killed parent"
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    assert 4 <= n < 32
    assert not (out / "photos.csv").exists()

    scorer = PipelineScorer.create(threshold=THRESHOLD)
    report = run_batch(trial, out, scorer=scorer, workers=1, threads=1)
    assert report.n_already_done >= n
    assert report.n_already_done + report.n_scored == 32
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT photo_sha256, COUNT(*) FROM results GROUP BY photo_sha256").fetchall()
    assert len(rows) == 32 and all(c == 1 for _, c in rows)
    resumed = pd.read_parquet(out / "photos.parquet")
    assert (resumed["status"] == "ok").all() and resumed["manifest_row"].is_unique
    clean_out = tmp_path / "clean"
    run_batch(trial, clean_out, scorer=scorer, workers=1, threads=1)
    clean = pd.read_parquet(clean_out / "photos.parquet")
    drop = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(clean.drop(columns=drop), resumed.drop(columns=drop))


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_results(tmp_path: Path) -> None:
    # A longer trial than the shared one (32 photos): the run must still be going when the signal comes.
    trial = make_trial(tmp_path / "long", subjects=8, seed=3)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "lesioncount.cli",
        "score",
        str(trial),
        "-o",
        str(out),
        "--workers",
        "2",
        "--threads",
        "1",
        "--threshold",
        str(THRESHOLD),
        "--no-progress",
    ]
    log = tmp_path / "score.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # A shell runs background jobs with SIGINT ignored, and children inherit that: restore it, or
            # the run under test would never see the Ctrl-C (the suite may itself run in the background).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and _stored(out / "results.sqlite") < 2:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted: " + log.read_text()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the parent and its workers
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "interrupted: every photo scored so far is kept" in text and "Traceback" not in text
    assert "rerun the same command to resume" in text
    assert _wait_group_gone(proc.pid, timeout_s=15)
    assert _stored(out / "results.sqlite") >= 2


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


def test_corrupt_and_missing_photos_are_recorded(tmp_path: Path, scorer: PipelineScorer) -> None:
    rng = np.random.default_rng(3)
    write_image(tmp_path / "good.jpg", _skin_photo(rng, 3, 2))
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "good.jpg").read_bytes()[:2000])
    (tmp_path / "text.jpg").write_text("not a photo")
    write_image(tmp_path / "tiny.png", np.zeros((20, 30, 3), np.uint8))
    rows = [
        ("S1", "baseline", "2026-01-05", "front", "good.jpg"),
        ("S1", "baseline", "2026-01-05", "left", "truncated.jpg"),
        ("S1", "baseline", "2026-01-05", "right", "text.jpg"),
        ("S2", "baseline", "2026-01-06", "front", "tiny.png"),
        ("S2", "baseline", "2026-01-06", "left", "gone.jpg"),
    ]
    manifest = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "path"]).to_csv(manifest, index=False)
    report = run_batch(manifest, tmp_path / "out", scorer=scorer, workers=0, threads=1, allow_missing=True)
    photos = pd.read_csv(tmp_path / "out" / "photos.csv")
    assert list(photos["status"]) == ["ok", "failed", "failed", "failed", "missing"]
    errors = list(photos["error"].fillna(""))
    assert "truncated" in errors[1] or "corrupt" in errors[1]
    assert "not a readable image" in errors[2]
    assert "too small" in errors[3]
    assert "does not exist" in errors[4]
    assert report.n_failed == 3 and report.n_missing == 1
    visits = pd.read_csv(tmp_path / "out" / "visits.csv")
    assert not visits["complete"].any() and visits["inflammatory"].isna().all()
    with ResultStore(tmp_path / "out" / "results.sqlite") as store:
        failed = [r for r in store.records(report.key) if r.status == "failed"]
    assert len(failed) == 3 and all(r.error for r in failed)


@dataclass(frozen=True)
class FakeScorer:
    """Counts = first byte of the file; raises for files starting with b"x"."""

    threads: int = 1

    def key(self) -> ModelKey:
        return ModelKey.make("f" * 64, {"fake": True})

    def with_threads(self, threads: int) -> FakeScorer:
        return FakeScorer(threads)

    def __call__(self, path: str) -> dict[str, Any]:
        data = Path(path).read_bytes()
        if data.startswith(b"die"):
            os._exit(3)  # a worker killed mid-photo (out of memory, segfault in a native library)
        if data.startswith(b"x"):
            raise ValueError(f"{path}: refused\nsecond line")
        counts = {"inflammatory": data[0], "comedone": 1, "scar": 0, "total_acne": data[0] + 1}
        return {
            "image": {"path": path, "width": 10, "height": 10, "sha256": sha256_file(path)},
            "model": {"name": "fake", "version": "0", "sha256": "f" * 64},
            "face": {"found": False, "view": "unknown"},
            "counts": counts,
            "counts_by_region": {"other": counts},
            "grades": {},
            "quality": {"warnings": []},
        }


def test_injected_scorer_identical_photos_scored_once(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\x05abc")
    (tmp_path / "copy_of_a.bin").write_bytes(b"\x05abc")
    (tmp_path / "b.bin").write_bytes(b"xbad")
    rows = [
        ("S1", "v1", "2026-01-05", "front", "a.bin"),
        ("S1", "v2", "2026-02-05", "front", "copy_of_a.bin"),
        ("S1", "v3", "2026-03-05", "front", "b.bin"),
    ]
    pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "path"]).to_csv(tmp_path / "m.csv")
    manifest = read_manifest(tmp_path / "m.csv")
    seen: list[str] = []
    with ResultStore(tmp_path / "r.sqlite") as store:
        report = score_manifest(manifest, store, FakeScorer(), workers=0, on_result=lambda s: seen.append(s.status))
    assert seen == ["ok", "failed"]  # the copy is the same content: scored once
    assert len(report.warnings) == 1 and report.warnings[0].startswith("rows 2, 3 are the same photo")
    assert [o.status for o in report.outcomes] == ["ok", "ok", "failed"]
    assert report.outcomes[2].error == "ValueError: " + str(tmp_path / "b.bin") + ": refused second line"
    tables = build_tables(manifest.table, report.outcomes)
    assert list(tables["photos"]["inflammatory"].astype("Float64").fillna(-1)) == [5, 5, -1]
    change = tables["change"][tables["change"]["class"] == "inflammatory"]
    assert list(change["change"].astype("Float64").fillna(-1)) == [0, 0, -1]


def test_worker_death_is_recorded_and_the_batch_goes_on(tmp_path: Path) -> None:
    rows = []
    for i in range(8):
        (tmp_path / f"{i}.bin").write_bytes(b"die" if i == 3 else bytes([i + 1]) + b"ok")
        rows.append((f"S{i}", "v1", "2026-01-05", "front", f"{i}.bin"))
    pd.DataFrame(rows, columns=["subject_id", "visit", "visit_date", "view", "path"]).to_csv(tmp_path / "m.csv")
    manifest = read_manifest(tmp_path / "m.csv")
    with ResultStore(tmp_path / "r.sqlite") as store:
        first = score_manifest(manifest, store, FakeScorer(), workers=2)
        assert [o.status for o in first.outcomes] == ["ok"] * 3 + ["failed"] + ["ok"] * 4
        assert "worker process died while scoring this photo" in first.outcomes[3].error
        second = score_manifest(manifest, store, FakeScorer(), workers=2)
        statuses = [o.status for o in second.outcomes]
        assert statuses == ["ok"] * 3 + ["failed"] + ["ok"] * 4
        assert store.count() == 8


def test_worker_side_imports_no_pandas_or_dask() -> None:
    code = (
        "import sys, lesioncount.batch.worker; "
        "print(sorted(m for m in ('pandas', 'distributed', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_check_worker_names_what_is_wrong(scorer: PipelineScorer, tmp_path: Path) -> None:
    from lesioncount.batch.worker import check_worker

    assert check_worker(scorer, scorer.key(), None) == ""
    msg = check_worker(scorer, ModelKey.make("0" * 64), str(tmp_path / "nope.jpg"))
    assert "model file differs" in msg and "nope.jpg (photos must be on a file system shared" in msg
    gone = PipelineScorer(str(tmp_path / "gone.onnx"))
    assert "cannot read the model" in check_worker(gone, scorer.key(), None)
