"""Score every photo of a manifest into a results store, on a local process pool or a Dask cluster.

The parent process hashes the photos, skips those already scored with the same model and settings,
hands the rest to workers a few at a time and writes each result to the store as it arrives (one
transaction each). Killing the parent at any moment therefore loses at most the photos in flight; a
rerun scores exactly the missing ones. Workers only read photos and the model: they never write.

Each worker process builds one ``LesionCounter`` and reuses it for every photo it scores. Locally,
ONNX Runtime and OpenCV get ``cores // workers`` threads each so the pool does not oversubscribe the
machine. On a Dask cluster the photo paths must be readable by the workers under the same names (a
shared file system), and each worker process scores one photo at a time with as many ONNX Runtime
threads as the worker has (start workers with ``--nthreads 1`` and one process per core for the best
throughput, as locally).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from lesioncount.batch.dictionary import data_dictionary
from lesioncount.batch.manifest import Manifest
from lesioncount.batch.store import ModelKey, Record, ResultStore
from lesioncount.batch.tables import Outcome
from lesioncount.batch.worker import (
    PipelineScorer,
    Scored,
    Scorer,
    check_worker,
    init_worker,
    score_in_worker,
    score_on_dask_worker,
    score_one,
)

log = logging.getLogger(__name__)

#: Photos handed out per worker slot beyond the one being scored (keeps workers busy, bounds what a kill loses).
QUEUE_PER_WORKER = 1


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _run_local(tasks: list[tuple[str, str]], scorer: Scorer, workers: int) -> Iterator[Scored]:
    """Yield results as they complete; at most ``workers * (1 + QUEUE_PER_WORKER)`` photos in flight.

    When a worker process dies (killed for memory, a crash in a native library) the pool is replaced and the
    batch goes on; the photos that were in flight are rescored afterwards one at a time, so the photo that
    kills a worker is the only one recorded as failed.
    """
    if workers == 0:  # in this process: for debugging and profiling
        for sha, path in tasks:
            yield score_one(scorer, sha, path)
        return
    suspects: list[tuple[str, str]] = []
    for item in _pool_pass(tasks, scorer, workers, workers * (1 + QUEUE_PER_WORKER)):
        if isinstance(item, Scored):
            yield item
        else:
            suspects.append(item)
    if suspects:
        log.warning("a worker process died; rescoring the %d photos it may have taken, one at a time", len(suspects))
    for item in _pool_pass(suspects, scorer, 1, 1):
        if isinstance(item, Scored):
            yield item
        else:
            sha, path = item
            why = "a worker process died while scoring this photo (out of memory? a crash in a native library?)"
            yield Scored(sha, path, "failed", None, why, 0.0, "")


def _pool_pass(
    tasks: list[tuple[str, str]], scorer: Scorer, workers: int, limit: int
) -> Iterator[Scored | tuple[str, str]]:
    """Score ``tasks`` on a process pool; yields results, or the bare task for each photo in flight when a
    worker died (the pool is then replaced and the remaining tasks go on)."""
    pending = list(reversed(tasks))
    # spawn, not fork: the parent may run threads (progress bar, Dask client) that a fork would copy mid-lock.
    ctx = multiprocessing.get_context("spawn")
    while pending:
        pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(scorer, os.getpid()))
        inflight: dict[cf.Future[Scored], tuple[str, str]] = {}
        broken = False
        try:
            while (pending or inflight) and not broken:
                try:
                    while pending and len(inflight) < limit:
                        inflight[pool.submit(score_in_worker, *pending[-1])] = pending[-1]
                        pending.pop()
                except cf.process.BrokenProcessPool:
                    broken = True
                    break
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    task = inflight.pop(fut)
                    if isinstance(fut.exception(), cf.process.BrokenProcessPool):
                        broken = True
                    yield _outcome(fut, task)
            if broken:
                # Every other future of a broken pool completes at once: keep the results, return the rest.
                cf.wait(inflight)
                for fut, task in inflight.items():
                    yield _outcome(fut, task)
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)


def _outcome(fut: cf.Future[Scored], task: tuple[str, str]) -> Scored | tuple[str, str]:
    """A finished future's result; the bare task when its worker died; a failure for anything else."""
    err = fut.exception()
    if err is None:
        return fut.result()
    if isinstance(err, cf.process.BrokenProcessPool):
        return task
    # score_one never raises, so this is the machinery failing (a result that cannot be pickled ...).
    return Scored(task[0], task[1], "failed", None, f"{err.__class__.__name__}: {err}", 0.0, "")


# -- Dask distributed ---------------------------------------------------------------------------------------


def _run_dask(
    tasks: list[tuple[str, str]],
    scorer: Scorer,
    key: ModelKey,
    address: str,
    threads: int | None,
    on_ready: Callable[[int], None],
    timeout_s: float = 30.0,
) -> Iterator[Scored]:
    from distributed import Client, as_completed

    with Client(address, timeout=timeout_s, set_as_default=False) as client:
        slots = sum(client.nthreads().values())
        if slots == 0:
            raise RuntimeError(f"the Dask cluster at {address} has no workers")
        log.info("Dask cluster %s: %d workers, %d threads", address, len(client.nthreads()), slots)
        # Fail fast, once, with the reason, rather than once per photo.
        checks = client.run(check_worker, scorer, key, tasks[0][1] if tasks else None)
        bad = {w: msg for w, msg in checks.items() if msg}
        if bad:
            raise RuntimeError(
                f"Dask workers at {address} cannot score: " + "; ".join(f"{w}: {m}" for w, m in sorted(bad.items()))
            )
        on_ready(slots)
        pending = list(reversed(tasks))
        limit = slots * (1 + QUEUE_PER_WORKER)
        futs = {}

        def submit(sha: str, path: str) -> Any:
            fut = client.submit(
                score_on_dask_worker,
                scorer,
                sha,
                path,
                threads,
                pure=False,
                key=f"lesioncount-score-{sha[:16]}-{os.urandom(4).hex()}",
            )
            futs[fut.key] = (sha, path)
            return fut

        first = [submit(*pending.pop()) for _ in range(min(limit, len(pending)))]
        ac = as_completed(first, loop=client.loop)
        for fut in ac:
            sha, path = futs.pop(fut.key)
            try:
                yield fut.result()
            except Exception as e:  # KilledWorker after repeated worker deaths, cancellation ...
                yield Scored(sha, path, "failed", None, f"{e.__class__.__name__}: {e}", 0.0, "")
            fut.release()
            if pending:
                ac.add(submit(*pending.pop()))


# -- the run ------------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    """What a run did.

    Attributes:
        key: model and settings the results are stored under.
        outcomes: one per manifest row, in manifest order.
        n_photos: manifest rows.
        n_already_done: photos found in the store and not rescored.
        n_scored: photos scored by this run (ok or failed).
        n_failed: manifest rows whose photo failed (this run or before) or could not be read.
        n_missing: manifest rows whose file is missing.
        scoring_s: wall time of the scoring phase (worker start-up and model loading included).
        first_result_s: wall time until the first result arrived (start-up plus one photo).
        workers: worker processes (local) or worker threads (Dask).
        backend: ``local`` or ``dask``.
        warnings: things worth a look, e.g. one photo file content listed under several rows.
    """

    key: ModelKey
    outcomes: list[Outcome]
    n_photos: int
    n_already_done: int = 0
    n_scored: int = 0
    n_failed: int = 0
    n_missing: int = 0
    scoring_s: float = 0.0
    first_result_s: float = 0.0
    workers: int = 0
    backend: str = "local"
    warnings: list[str] = field(default_factory=list)

    @property
    def photos_per_minute(self) -> float:
        """Throughput of the scoring phase (photos this run scored, per minute of wall time)."""
        return 60.0 * self.n_scored / self.scoring_s if self.scoring_s > 0 else 0.0

    @property
    def steady_photos_per_minute(self) -> float:
        """Throughput after the first result (start-up excluded): what a long batch approaches."""
        rest = self.scoring_s - self.first_result_s
        return 60.0 * (self.n_scored - 1) / rest if self.n_scored > 1 and rest > 0 else self.photos_per_minute


def score_manifest(
    manifest: Manifest,
    store: ResultStore,
    scorer: Scorer,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    force: bool = False,
    on_hash: Callable[[int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[Scored], None] | None = None,
) -> RunReport:
    """Score a validated manifest into ``store``.

    Args:
        manifest: from ``read_manifest``.
        store: where results go (and where finished ones are found).
        scorer: e.g. ``PipelineScorer.create()``.
        workers: local worker processes (default: all cores; 0 scores in this process). Ignored with a scheduler.
        scheduler: ``tcp://HOST:PORT`` of a running Dask distributed scheduler.
        threads: compute threads per worker; default ``cores // workers`` locally, the worker's nthreads on Dask.
        force: rescore photos already in the store.
        on_hash: called with (hashed, total) as photos are hashed (cached by path, size and mtime).
        on_start: called once with the number of photos to score.
        on_result: called after each result is stored.

    Returns:
        The report, with one outcome per manifest row.

    Raises:
        ValueError: ``workers`` below 0 or ``threads`` below 1.
        RuntimeError: the Dask cluster has no workers, or its workers cannot see the model or the photos.
        OSError: the Dask scheduler cannot be reached.
    """
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be 1 or more, got {threads}")
    table = manifest.table
    missing = set(manifest.missing)
    paths = [p for i, p in enumerate(table["path"]) if i not in missing]
    hashes = store.photo_sha256_many(paths, on_progress=on_hash)
    key = scorer.key()
    done = set() if force else store.done(key)
    tasks: dict[str, str] = {}
    for p in paths:
        h = hashes[p]
        if isinstance(h, str) and h not in done and h not in tasks:
            tasks[h] = p  # identical photos listed twice are scored once
    todo = list(tasks.items())
    report = RunReport(key=key, outcomes=[], n_photos=len(table), backend="dask" if scheduler else "local")
    report.warnings = _same_content_warnings(table, hashes)
    report.n_already_done = len({h for h in hashes.values() if isinstance(h, str) and h in done})
    if on_start:
        on_start(len(todo))

    if scheduler:
        stream = _run_dask(todo, scorer, key, scheduler, threads, on_ready=lambda n: setattr(report, "workers", n))
    else:
        cores = available_cores()
        n = cores if workers is None else workers
        n = min(n, max(1, len(todo)))
        per = threads if threads is not None else max(1, cores // max(1, n))
        report.workers = n
        stream = _run_local(todo, scorer.with_threads(per), n)
    t0 = time.perf_counter()
    try:
        for s in stream:
            store.put(
                Record(
                    s.photo_sha256,
                    key,
                    s.status,
                    s.path,
                    result=s.result,
                    error=s.error,
                    elapsed_s=s.elapsed_s,
                    worker=s.worker,
                )
            )
            report.n_scored += 1
            if report.n_scored == 1:
                report.first_result_s = time.perf_counter() - t0
            if on_result:
                on_result(s)
    finally:
        report.scoring_s = time.perf_counter() - t0
        if hasattr(stream, "close"):
            stream.close()
    report.outcomes = collect_outcomes(manifest, store, key, hashes)
    report.n_missing = sum(o.status == "missing" for o in report.outcomes)
    report.n_failed = sum(o.status == "failed" for o in report.outcomes)
    return report


def same_content_warnings(
    manifest: Manifest,
    store_path: str | os.PathLike[str],
    on_hash: Callable[[int, int], None] | None = None,
) -> list[str]:
    """What ``score --check`` adds to the manifest checks: photos filed under two rows with identical content.

    The hashes are cached in the store, so the run that follows does not read the photos again.
    """
    missing = set(manifest.missing)
    paths = [p for i, p in enumerate(manifest.table["path"]) if i not in missing]
    with ResultStore(store_path) as store:
        hashes = store.photo_sha256_many(paths, on_progress=on_hash)
    return _same_content_warnings(manifest.table, hashes)


def _same_content_warnings(table: Any, hashes: dict[str, str | OSError]) -> list[str]:
    """One warning per photo content listed under several rows: a copy filed as another visit fakes "no change"."""
    rows_of: dict[str, list[tuple[int, str]]] = {}
    for row, path, subject in zip(table["row"], table["path"], table["subject_id"].astype(str), strict=True):
        h = hashes.get(path)
        if isinstance(h, str):
            rows_of.setdefault(h, []).append((int(row), subject))
    out = []
    for h, rows in rows_of.items():
        if len(rows) < 2:
            continue
        subjects = sorted({s for _, s in rows})
        where = (
            f"filed under {len(subjects)} subjects ({', '.join(subjects)}): a photo of the wrong patient?"
            if len(subjects) > 1
            else "a copy filed under another visit or view?"
        )
        out.append(
            f"rows {', '.join(str(r) for r, _ in rows)} are the same photo (identical files, sha256 {h[:12]}...), "
            + where
        )
    return out


def collect_outcomes(
    manifest: Manifest, store: ResultStore, key: ModelKey, hashes: dict[str, str | OSError] | None = None
) -> list[Outcome]:
    """One outcome per manifest row from what the store holds under ``key``."""
    missing = set(manifest.missing)
    out = []
    for i, p in enumerate(manifest.table["path"]):
        if i in missing:
            out.append(Outcome("missing", error="photo file does not exist"))
            continue
        h = hashes[p] if hashes is not None else _try_hash(store, p)
        if isinstance(h, OSError):
            out.append(Outcome("failed", error=f"cannot read the file: {h.strerror or h}"))
            continue
        rec = store.get(h, key, lesions=False)
        if rec is None:
            out.append(Outcome("pending", photo_sha256=h, error="not scored yet (interrupted run?)"))
        else:
            out.append(Outcome(rec.status, h, rec.error or "", rec.result, rec.elapsed_s, rec.worker or ""))
    return out


def _try_hash(store: ResultStore, path: str) -> str | OSError:
    try:
        return store.photo_sha256(path)
    except OSError as e:
        return e


def run_batch(
    manifest: Manifest | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    scorer: Scorer | None = None,
    store_path: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    allow_missing: bool = False,
    baseline_visit: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    force: bool = False,
    lesions: bool = False,
    on_hash: Callable[[int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[Scored], None] | None = None,
) -> RunReport:
    """Validate a manifest, score it, and write the tables: what ``lesioncount score`` does.

    Writes ``photos``, ``visits``, ``change`` and ``summary`` as CSV and Parquet, and ``run.json`` (settings,
    model, counts, throughput) into ``out_dir``; the store defaults to ``out_dir/results.sqlite``.

    Args:
        manifest: a manifest file, or one already read with ``read_manifest`` (then ``root`` and
            ``allow_missing`` are ignored).
        out_dir: folder for the tables, ``run.json`` and, by default, the store.
        scorer: default ``PipelineScorer.create()`` (the shipped model).
        store_path: results store to use instead of ``out_dir/results.sqlite``.
        root, allow_missing: see ``read_manifest``.
        baseline_visit: see ``change_table``.
        lesions: also write the ``lesions`` table (one row per lesion; large for a big trial).
        workers, scheduler, threads, force, on_hash, on_start, on_result: see ``score_manifest``.

    Raises:
        lesioncount.batch.manifest.ManifestError: the manifest has problems (all listed); nothing is scored.
        ValueError: ``baseline_visit`` names no visit of the manifest; nothing is scored.
    """
    from lesioncount.batch.manifest import read_manifest
    from lesioncount.batch.tables import build_tables, lesion_table, write_tables
    from lesioncount.io import write_json

    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, root=root, allow_missing=allow_missing)
    problem, _ = manifest.baseline_check(baseline_visit)
    if problem:
        raise ValueError(problem)
    scorer = scorer if scorer is not None else PipelineScorer.create()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with ResultStore(store_path if store_path is not None else out / "results.sqlite") as store:
        report = score_manifest(
            manifest,
            store,
            scorer,
            workers=workers,
            scheduler=scheduler,
            threads=threads,
            force=force,
            on_hash=on_hash,
            on_start=on_start,
            on_result=on_result,
        )
        tables = build_tables(manifest.table, report.outcomes, baseline_visit=baseline_visit)
        if lesions:

            def lesions_of(sha: str) -> list[dict[str, Any]]:
                rec = store.get(sha, report.key)
                return list(rec.result.get("lesions", [])) if rec is not None and rec.result else []

            tables["lesions"] = lesion_table(manifest.table, report.outcomes, lesions_of)
    write_tables(tables, out)
    write_tables({"columns": data_dictionary(tables)}, out, formats=("csv",))
    ok = next((o.result for o in report.outcomes if o.status == "ok" and o.result), None)
    write_json(
        out / "run.json",
        {
            "manifest": str(Path(manifest.source).absolute()),
            "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scorer": asdict(scorer) if is_dataclass(scorer) else repr(scorer),
            "model": ok["model"] if ok else None,
            "model_sha256": report.key.model_sha256,
            "settings": report.key.settings,
            "backend": report.backend,
            "scheduler": scheduler,
            "workers": report.workers,
            "force": force,
            "baseline_visit": baseline_visit,
            "photos": report.n_photos,
            "already_done": report.n_already_done,
            "scored": report.n_scored,
            "failed": report.n_failed,
            "missing": report.n_missing,
            "scoring_s": round(report.scoring_s, 3),
            "photos_per_minute": round(report.photos_per_minute, 2),
            "steady_photos_per_minute": round(report.steady_photos_per_minute, 2),
            "first_result_s": round(report.first_result_s, 3),
            "manifest_warnings": list(manifest.warnings),
            "warnings": report.warnings,
        },
    )
    return report
