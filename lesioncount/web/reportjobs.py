"""Reports built in the background: a page asks for one, watches its progress, then downloads it.

A report compares every visit's photos (registration, lesion matching) and can take many seconds, so it
is not built inside the request. Jobs run one at a time in a worker thread with their own database
session; the finished report stays in memory for its owner only, for ``KEEP_S`` seconds.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from lesioncount.web import services as sv
from lesioncount.web.models import User
from lesioncount.web.security import Actor
from lesioncount.web.storage import PhotoStore

#: A finished report waits this long for its download.
KEEP_S = 600.0


@dataclass
class ReportJob:
    id: str
    user_id: int
    patient_id: int
    fmt: str
    started: float = field(default_factory=time.monotonic)
    status: str = "queued"  # queued, running, done, failed
    stage: str = "waiting for the report before it"
    error: str = ""
    finished: float | None = None
    content: bytes = b""
    media_type: str = ""
    filename: str = ""

    def public(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "id": self.id,
            "status": self.status,
            "stage": self.stage,
            "elapsed_s": round(end - self.started, 1),
            "error": self.error,
            "download": f"/api/v1/report-jobs/{self.id}/download" if self.status == "done" else None,
        }


class ReportJobs:
    """The background report builder of one app."""

    def __init__(
        self, sessions: sessionmaker[Session], store: PhotoStore, counter: Callable[[], Any] | None = None
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.counter = counter  # the counting model, for recounting follow-ups in their baseline's frame
        self._jobs: dict[str, ReportJob] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lesioncount-report")

    def start(self, db: Session, actor: Actor, patient_id: int, fmt: str, ip: str) -> ReportJob:
        """Queue a report of a patient the actor may see (checked now, in the request)."""
        sv.get_patient(db, actor, patient_id)
        if fmt not in sv.REPORT_FORMATS:
            raise sv.Invalid(f"unknown report format {fmt!r}; choose html or pdf")
        job = ReportJob(secrets.token_urlsafe(12), actor.user.id, patient_id, fmt)
        with self._lock:
            self._forget_old()
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, actor.via, ip)
        return job

    def get(self, actor: Actor, job_id: str) -> ReportJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.user_id != actor.user.id:  # another user's job is as unknown as a wrong id
            raise sv.NotFound(f"no report job {job_id}")
        return job

    def _run(self, job: ReportJob, via: str, ip: str) -> None:
        job.status = "running"

        def stage(what: str) -> None:
            job.stage = what

        try:
            with self.sessions() as db:
                user = db.get(User, job.user_id)
                if user is None or not user.active:
                    raise sv.Forbidden("the user who asked for this report is no longer active")
                actor = Actor(user=user, via=via)
                patient = sv.get_patient(db, actor, job.patient_id)
                job.content, job.media_type, job.filename = sv.patient_report(
                    db, self.store, actor, patient, job.fmt, ip, stage, self.counter
                )
            job.status, job.stage = "done", "ready"
        except Exception as e:  # noqa: BLE001 - any failure is shown to the user who asked
            job.status, job.error = "failed", str(e) or e.__class__.__name__
        finally:
            job.finished = time.monotonic()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for k in [k for k, j in self._jobs.items() if j.finished is not None and now - j.finished > KEEP_S]:
            del self._jobs[k]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
