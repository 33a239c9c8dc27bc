"""The worker side of a batch: what runs in each worker process (local pool or Dask worker).

Kept apart from the parent side (``run``) and light to import: no pandas, no Dask, so a worker process
starts quickly. Each process builds one ``LesionCounter`` per scorer and reuses it for every photo.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

from lesioncount.batch.store import ModelKey


class Scorer(Protocol):
    """What the runner needs from a scorer: picklable, hashable, knows its model key, scores one path.

    ``__call__`` returns a CountResult dict (schema v1) or raises with a message that says what is wrong.
    ``with_threads`` returns a copy that uses that many compute threads per photo.
    """

    def key(self) -> ModelKey: ...

    def with_threads(self, threads: int) -> Scorer: ...

    def __call__(self, path: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PipelineScorer:
    """Scores photos with ``lesioncount.pipeline.LesionCounter`` (one counter per process, built lazily).

    Attributes:
        model: path of the .onnx model (resolve it in the parent with ``PipelineScorer.create``).
        threshold: one score threshold for every class, or None for the model's calibrated thresholds.
        threads: ONNX Runtime and OpenCV threads in each worker.
        max_megapixels: refuse larger photos.
    """

    model: str
    threshold: float | None = None
    threads: int = 1
    max_megapixels: float = 100.0

    @classmethod
    def create(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        int8: bool = False,
        threshold: float | None = None,
        max_megapixels: float = 100.0,
    ) -> PipelineScorer:
        """Resolve the model (explicit path, ``$LESIONCOUNT_MODEL`` or the shipped one) to an absolute path."""
        from lesioncount.infer import resolve_model_path

        path = resolve_model_path(model, int8=int8).absolute()
        return cls(str(path), threshold=threshold, max_megapixels=max_megapixels)

    def key(self) -> ModelKey:
        from lesioncount.io import sha256_file

        return ModelKey.make(sha256_file(self.model), {"threshold": self.threshold})

    def with_threads(self, threads: int) -> PipelineScorer:
        return replace(self, threads=max(1, threads))

    def __call__(self, path: str) -> dict[str, Any]:
        return _counter(self).count(path).to_dict()


_COUNTERS: dict[PipelineScorer, Any] = {}
_COUNTER_LOCK = threading.Lock()


def _counter(spec: PipelineScorer) -> Any:
    """This process's LesionCounter for ``spec`` (built on first use, then reused)."""
    with _COUNTER_LOCK:
        if spec not in _COUNTERS:
            import cv2

            from lesioncount.pipeline import LesionCounter

            cv2.setNumThreads(spec.threads)
            _COUNTERS[spec] = LesionCounter(
                spec.model, threads=spec.threads, threshold=spec.threshold, max_megapixels=spec.max_megapixels
            )
        return _COUNTERS[spec]


@dataclass(frozen=True)
class Scored:
    """A worker's answer for one photo."""

    photo_sha256: str
    path: str
    status: str
    result: dict[str, Any] | None
    error: str | None
    elapsed_s: float
    worker: str


def score_one(scorer: Scorer, photo_sha256: str, path: str) -> Scored:
    """Score one photo; never raises (a failure is returned with its one-line reason)."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    t = time.perf_counter()
    try:
        # LesionCounter is thread-safe (ONNX Runtime sessions are; the face models lock their interpreters).
        result = scorer(path)
        got = result.get("image", {}).get("sha256")
        if got is not None and got != photo_sha256:
            return Scored(
                photo_sha256,
                path,
                "failed",
                None,
                "the file changed while the batch ran; rerun to score it",
                time.perf_counter() - t,
                worker,
            )
        return Scored(photo_sha256, path, "ok", result, None, time.perf_counter() - t, worker)
    except Exception as e:  # one bad photo must never stop a batch: record why and go on
        msg = " ".join(str(e).split()) or e.__class__.__name__
        return Scored(
            photo_sha256, path, "failed", None, f"{e.__class__.__name__}: {msg}", time.perf_counter() - t, worker
        )


_WORKER_SCORER: Scorer | None = None


#: How often a pool worker checks that its parent is still alive.
PARENT_CHECK_S = 1.0


def init_worker(scorer: Scorer, parent_pid: int | None = None) -> None:
    """Process-pool initializer: remember the scorer, size thread pools, ignore Ctrl-C, exit with the parent.

    A pool worker whose parent is killed (``kill -9``, out of memory) would otherwise wait for work forever.
    """
    global _WORKER_SCORER
    _WORKER_SCORER = scorer
    # Thread pools of the numeric libraries, sized before they start.
    threads = str(getattr(scorer, "threads", 1))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    # Ctrl-C reaches the whole process group: the parent stops the batch, workers must not die mid-photo.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            os._exit(1)


def score_in_worker(photo_sha256: str, path: str) -> Scored:
    """Score one photo in a pool worker with the scorer given to ``init_worker``."""
    assert _WORKER_SCORER is not None, "worker not initialised"
    return score_one(_WORKER_SCORER, photo_sha256, path)


def score_on_dask_worker(scorer: Scorer, photo_sha256: str, path: str, threads: int | None) -> Scored:
    """Score one photo on a Dask worker; ``threads=None`` uses the worker's nthreads."""
    if threads is None:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    return score_one(scorer.with_threads(threads), photo_sha256, path)


def check_worker(scorer: Scorer, key: ModelKey, sample_path: str | None) -> str:
    """What would stop this worker from scoring ('' when nothing): run on every Dask worker before a batch.

    Checks that the scorer's model is readable here and is the same file the parent hashed, and that a
    sample photo path exists (workers must see the photos under the same paths as the parent).
    """
    problems = []
    try:
        if scorer.key() != key:
            problems.append("its model file differs from the one this batch uses (another version installed?)")
    except OSError as e:
        problems.append(f"cannot read the model: {e}")
    if sample_path is not None and not os.path.isfile(sample_path):
        problems.append(f"cannot see {sample_path} (photos must be on a file system shared under the same paths)")
    return "; ".join(problems)
