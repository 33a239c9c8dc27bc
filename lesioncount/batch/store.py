"""A crash-safe results store: one SQLite file in WAL mode, one transaction per scored photo.

A result is keyed by the photo's content (SHA-256 of the file bytes), the model's content (SHA-256 of the
.onnx file) and the scoring settings that change counts (a canonical JSON string), so renaming or moving
photos never rescores them, a new model always does, and a rerun skips what is done. Every write is its own
committed transaction with ``synchronous=FULL``: a kill (or a power cut) at any moment loses at most the
photos that were being scored, never a written result, and never leaves a half-written one.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesioncount.io import sha256_file

STORE_SCHEMA_VERSION = "1"
#: Threads reading photos to hash them (I/O-bound).
HASH_THREADS = 4
#: New photo-hash cache rows are committed in batches of this many.
HASH_COMMIT_EVERY = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    photo_sha256 TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    settings     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    result_json  TEXT,
    error        TEXT,
    path         TEXT NOT NULL,
    elapsed_s    REAL,
    worker       TEXT,
    scored_at    TEXT NOT NULL,
    PRIMARY KEY (photo_sha256, model_sha256, settings)
);
CREATE TABLE IF NOT EXISTS file_hashes (
    path     TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256   TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ModelKey:
    """What a result depends on besides the photo: the model file's SHA-256 and the settings JSON."""

    model_sha256: str
    settings: str = "{}"

    @classmethod
    def make(cls, model_sha256: str, settings: dict[str, Any] | None = None) -> ModelKey:
        """Build with ``settings`` in canonical form (sorted keys, no spaces)."""
        return cls(model_sha256, json.dumps(settings or {}, sort_keys=True, separators=(",", ":")))


@dataclass(frozen=True)
class Record:
    """One stored outcome of scoring one photo.

    Attributes:
        photo_sha256: SHA-256 of the photo file.
        key: model and settings.
        status: ``ok`` or ``failed``.
        result: the CountResult dict (schema v1) when ok.
        error: one-line reason when failed.
        path: the path the photo was scored from (informative: the key is the content).
        elapsed_s: wall time of the scoring call in the worker.
        worker: which worker scored it (host:pid).
        scored_at: UTC time, ISO 8601.
    """

    photo_sha256: str
    key: ModelKey
    status: str
    path: str
    result: dict[str, Any] | None = None
    error: str | None = None
    elapsed_s: float | None = None
    worker: str | None = None
    scored_at: str = ""


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ResultStore:
    """Results of a batch, in one SQLite file (``results.sqlite``) that several runs share.

    Only one process writes (the run's parent); workers never touch the file, so a network file system
    is never asked to lock. Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode; transactions are explicit (BEGIN IMMEDIATE ... COMMIT) so each write is atomic.
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (STORE_SCHEMA_VERSION,))
        if row is not None and row[0] != STORE_SCHEMA_VERSION:
            self._conn.close()
            raise ValueError(
                f"{self.path}: results store schema {row[0]}, this lesioncount reads {STORE_SCHEMA_VERSION}; "
                "use a new --out folder"
            )

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn)

    def close(self) -> None:
        """Close the database (a WAL checkpoint folds the log back into the main file)."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- results ---------------------------------------------------------------------------------------

    def put(self, record: Record) -> None:
        """Write (or replace) one record in its own committed transaction."""
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    record.photo_sha256,
                    record.key.model_sha256,
                    record.key.settings,
                    record.status,
                    json.dumps(record.result, separators=(",", ":")) if record.result is not None else None,
                    record.error,
                    record.path,
                    record.elapsed_s,
                    record.worker,
                    record.scored_at or _utc_now(),
                ),
            )

    def get(self, photo_sha256: str, key: ModelKey, *, lesions: bool = True) -> Record | None:
        """The stored record for one photo under one model key, or None.

        Args:
            photo_sha256: the photo's hash.
            key: model and settings.
            lesions: False drops the per-lesion list from the result (tables need only the counts; on a large
                trial the lesion lists would fill memory).
        """
        result = "result_json" if lesions else "json_remove(result_json, '$.lesions')"
        row = self._conn.execute(
            f"SELECT photo_sha256, model_sha256, settings, status, {result}, error, path, elapsed_s, worker, "
            "scored_at FROM results WHERE photo_sha256=? AND model_sha256=? AND settings=?",
            (photo_sha256, key.model_sha256, key.settings),
        ).fetchone()
        return _record(row) if row else None

    def records(self, key: ModelKey) -> Iterator[Record]:
        """All records under one model key."""
        rows = self._conn.execute(
            "SELECT * FROM results WHERE model_sha256=? AND settings=? ORDER BY photo_sha256",
            (key.model_sha256, key.settings),
        )
        for row in rows:
            yield _record(row)

    def done(self, key: ModelKey) -> set[str]:
        """Photo hashes scored successfully under ``key`` (failed ones are retried by a rerun)."""
        rows = self._conn.execute(
            "SELECT photo_sha256 FROM results WHERE model_sha256=? AND settings=? AND status='ok'",
            (key.model_sha256, key.settings),
        )
        return {r[0] for r in rows}

    def count(self, key: ModelKey | None = None) -> int:
        """Number of stored records (under ``key`` when given)."""
        if key is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        return int(
            self._conn.execute(
                "SELECT COUNT(*) FROM results WHERE model_sha256=? AND settings=?", (key.model_sha256, key.settings)
            ).fetchone()[0]
        )

    # -- photo hashes ----------------------------------------------------------------------------------

    def photo_sha256(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of a photo, cached by (path, size, mtime) so a rerun does not reread every file.

        Raises:
            OSError: the file cannot be read.
        """
        p = os.fspath(path)
        h = self.photo_sha256_many([p], threads=1)[p]
        if isinstance(h, OSError):
            raise h
        return h

    def photo_sha256_many(
        self,
        paths: Iterable[str],
        *,
        threads: int = HASH_THREADS,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, str | OSError]:
        """``photo_sha256`` for many paths, in their order; an unreadable file maps to its OSError.

        Uncached files are read on ``threads`` threads (hashing is I/O-bound and releases the GIL: this helps
        most on network storage); new cache rows are committed in batches, not one transaction per file.

        Args:
            paths: photo paths (duplicates are hashed once).
            threads: reader threads.
            on_progress: called with (hashed, total) as files are done.
        """
        todo = list(dict.fromkeys(paths))
        out: dict[str, str | OSError] = {}
        misses: list[tuple[str, int, int]] = []
        for p in todo:
            try:
                st = os.stat(p)
            except OSError as e:
                out[p] = e
                continue
            row = self._conn.execute(
                "SELECT sha256 FROM file_hashes WHERE path=? AND size=? AND mtime_ns=?", (p, st.st_size, st.st_mtime_ns)
            ).fetchone()
            if row:
                out[p] = str(row[0])
            else:
                misses.append((p, st.st_size, st.st_mtime_ns))
        n_done = len(todo) - len(misses)
        if on_progress:
            on_progress(n_done, len(todo))
        new_rows: list[tuple[str, int, int, str]] = []

        def flush() -> None:
            if new_rows:
                with self._tx():
                    self._conn.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?)", new_rows)
                new_rows.clear()

        with cf.ThreadPoolExecutor(max(1, threads)) as pool:
            futures = {pool.submit(sha256_file, p): (p, size, mtime) for p, size, mtime in misses}
            for fut in cf.as_completed(futures):
                p, size, mtime = futures[fut]
                try:
                    digest = fut.result()
                    out[p] = digest
                    new_rows.append((p, size, mtime, digest))
                except OSError as e:
                    out[p] = e
                n_done += 1
                if len(new_rows) >= HASH_COMMIT_EVERY:
                    flush()
                if on_progress:
                    on_progress(n_done, len(todo))
        flush()
        return {p: out[p] for p in todo}


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _record(row: tuple[Any, ...]) -> Record:
    sha, model, settings, status, result_json, error, path, elapsed, worker, at = row
    return Record(
        photo_sha256=sha,
        key=ModelKey(model, settings),
        status=status,
        path=path,
        result=json.loads(result_json) if result_json else None,
        error=error,
        elapsed_s=elapsed,
        worker=worker,
        scored_at=at,
    )
