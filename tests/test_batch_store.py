"""The results store: keys, replace-not-duplicate, hash cache, durability of committed writes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from lesioncount.batch.store import ModelKey, Record, ResultStore

KEY = ModelKey.make("m" * 64, {"threshold": None})


def test_key_is_canonical() -> None:
    assert ModelKey.make("m", {"b": 1, "a": None}) == ModelKey.make("m", {"a": None, "b": 1})
    assert ModelKey.make("m", {"a": None}).settings == '{"a":null}'


def test_put_get_replace_and_done(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.put(Record("p1", KEY, "failed", "/x/1.jpg", error="corrupt"))
        store.put(Record("p2", KEY, "ok", "/x/2.jpg", result={"counts": {"scar": 1}}, elapsed_s=0.5, worker="h:1"))
        assert store.done(KEY) == {"p2"}  # failed photos are retried by a rerun
        store.put(Record("p1", KEY, "ok", "/y/1.jpg", result={"counts": {}}))
        assert store.count() == 2 and store.done(KEY) == {"p1", "p2"}
        rec = store.get("p2", KEY)
        assert rec is not None and rec.result == {"counts": {"scar": 1}} and rec.worker == "h:1" and rec.scored_at
        store.put(Record("p3", KEY, "ok", "/x/3.jpg", result={"counts": {}, "lesions": [{"class": "scar"}]}))
        assert store.get("p3", KEY).result["lesions"] == [{"class": "scar"}]  # type: ignore[union-attr]
        assert store.get("p3", KEY, lesions=False).result == {"counts": {}}  # type: ignore[union-attr]
        store.put(Record("p4", KEY, "failed", "/x/4.jpg", error="corrupt"))
        assert store.get("p4", KEY, lesions=False).result is None  # type: ignore[union-attr]
        other = ModelKey.make("n" * 64)
        assert store.get("p2", other) is None and store.done(other) == set()
        store.put(Record("p2", other, "ok", "/x/2.jpg", result={}))
        assert store.count() == 5 and store.count(KEY) == 4
        assert [r.photo_sha256 for r in store.records(KEY)] == ["p1", "p2", "p3", "p4"]


def test_wal_mode_and_committed_writes_visible_to_other_readers(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    store = ResultStore(db)
    store.put(Record("p1", KEY, "ok", "/x", result={}))
    # Another connection (what a crash-then-rerun sees) finds the row without any close or checkpoint.
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    store.close()


def test_hash_cache_follows_file_changes(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"one")
    with ResultStore(tmp_path / "r.sqlite") as store:
        h1 = store.photo_sha256(photo)
        assert h1 == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
        assert store.photo_sha256(photo) == h1
        photo.write_bytes(b"two!")
        os.utime(photo, ns=(1, 2))
        assert store.photo_sha256(photo) != h1
        out = store.photo_sha256_many([str(photo), str(tmp_path / "gone.jpg")])
        assert isinstance(out[str(tmp_path / "gone.jpg")], FileNotFoundError)


def test_rejects_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    ResultStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(ValueError, match="results store schema 99"):
        ResultStore(db)


def test_hash_many_in_order_with_progress_and_batched_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from lesioncount.batch import store as store_module

    monkeypatch.setattr(store_module, "HASH_COMMIT_EVERY", 2)
    paths = []
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(bytes([i]) * 1000)
        paths.append(str(tmp_path / f"{i}.jpg"))
    paths.insert(2, str(tmp_path / "gone.jpg"))
    seen: list[tuple[int, int]] = []
    with ResultStore(tmp_path / "r.sqlite") as store:
        out = store.photo_sha256_many([*paths, paths[0]], on_progress=lambda d, n: seen.append((d, n)))
        assert list(out) == paths  # input order, duplicates once
        assert out[paths[0]] == hashlib.sha256(bytes([0]) * 1000).hexdigest()
        assert isinstance(out[paths[2]], FileNotFoundError)
        assert seen[0] == (1, 6) and seen[-1] == (6, 6)  # the missing file counts as done at once
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM file_hashes").fetchone()[0] == 5
