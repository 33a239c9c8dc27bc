"""Background counting: a small thread pool counts uploaded photos; pages poll the photos' status.

The counter (the ONNX session) is built once, on first use, and shared: ``LesionCounter.count`` is called
from ``count_workers`` threads (1 by default, since the model itself uses every core it is given).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lesioncount.io import ImageReadError
from lesioncount.web.marks import counts_of, marks_from_result
from lesioncount.web.models import MarkVersion, Photo
from lesioncount.web.settings import Counter
from lesioncount.web.storage import PhotoStore

log = logging.getLogger(__name__)


class CountQueue:
    """Counts photos in background threads and records the result as the photo's first mark version."""

    def __init__(
        self, sessions: sessionmaker[Session], store: PhotoStore, counter_factory: Callable[[], Counter], workers: int
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._factory = counter_factory
        self._counter: Counter | None = None
        self._counter_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="lesioncount-count")
        self._futures: set[Future[None]] = set()
        self._futures_lock = threading.Lock()

    def counter(self) -> Counter:
        with self._counter_lock:
            if self._counter is None:
                self._counter = self._factory()
            return self._counter

    def submit(self, photo_id: int) -> None:
        fut = self._pool.submit(self._run, photo_id)
        with self._futures_lock:
            self._futures.add(fut)
        fut.add_done_callback(self._forget)

    def _forget(self, fut: Future[None]) -> None:
        with self._futures_lock:
            self._futures.discard(fut)

    def resume_pending(self) -> int:
        """Queue again the photos a previous run left queued or half counted; returns how many."""
        with self._sessions() as db:
            ids = list(db.scalars(select(Photo.id).where(Photo.status.in_(("queued", "counting")))))
        for pid in ids:
            self.submit(pid)
        return len(ids)

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Block until every submitted photo is counted (for tests and shutdown); False on timeout."""
        with self._futures_lock:
            pending = list(self._futures)
        _, not_done = wait(pending, timeout=timeout_s)
        return not not_done

    def shutdown(self) -> None:
        """Drop the photos not started (the next start counts them) and wait for those being counted."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, photo_id: int) -> None:
        with self._sessions() as db:
            photo = db.get(Photo, photo_id)
            if photo is None or photo.status == "done":
                return
            photo.status = "counting"
            db.commit()
            path = self._store.original_path(photo.sha256)
        try:
            result = self.counter().count(str(path)).to_dict()
        except Exception as e:  # a bad photo or a model failure must not kill the worker
            log.exception("counting photo %s failed", photo_id)
            with self._sessions() as db:
                photo = db.get(Photo, photo_id)
                if photo is not None:
                    photo.status = "failed"
                    photo.error = _failure_message(e)[:500]
                    db.commit()
            return
        # The stored file is named by its hash; keep the client's label instead of that path.
        with self._sessions() as db:
            photo = db.get(Photo, photo_id)
            if photo is None:
                return
            result["image"]["path"] = photo.original_name
            marks = marks_from_result(result)
            photo.result = result
            photo.status = "done"
            photo.error = ""
            if not photo.mark_versions:
                db.add(MarkVersion(photo_id=photo.id, version=1, marks=marks, counts=counts_of(marks), change="model"))
            db.commit()


def _failure_message(e: Exception) -> str:
    """What the clinic sees for a photo that could not be counted: the reason, not the store's file name."""
    if isinstance(e, ImageReadError):  # its message starts with the content-addressed path: drop it
        return f"the photo could not be read: {e.reason}"
    return f"counting failed: {e}" if str(e) else f"counting failed ({e.__class__.__name__})"
