"""The reindex worker loop: takes queued jobs one at a time and runs the gallery builder on them."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from catalog.builder import GalleryBuilder, ProgressFn
from catalog.db.models import Gallery, Job
from catalog.enums import JobKind, JobState
from catalog.jobs import claim_job, finish_job, record_progress, requeue
from catalog.locks import BuildLocked

log = logging.getLogger(__name__)
DATABASE_DOWN = (OperationalError, InterfaceError)
MAX_BACKOFF_SECONDS = 30.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class Worker:
    """Runs queued jobs one at a time. ``stop`` ends ``run_forever`` (the service passes its own shutdown
    event); ``on_job_done`` runs after every job it ran (the service refreshes its live indexes, so a new
    version is served at once instead of at the next poll)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        builder: GalleryBuilder,
        stale_after: timedelta = timedelta(seconds=120),
        poll_seconds: float = 2.0,
        stop: threading.Event | None = None,
        on_job_done: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.builder = builder
        self.stale_after = stale_after
        self.poll_seconds = poll_seconds
        self.name = worker_name()
        self.stop = stop if stop is not None else threading.Event()
        self.on_job_done = on_job_done

    def _progress(self, job_id: int) -> ProgressFn:
        def report(processed: int, total: int) -> None:
            record_progress(self.sessions, job_id, processed, total)

        return report

    def run_job(self, job_id: int) -> None:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            gallery = session.get(Gallery, job.gallery_id) if job and job.gallery_id else None
            kind = job.kind if job else None
        if gallery is None or kind != JobKind.REINDEX:
            finish_job(self.sessions, job_id, JobState.FAILED, f"unknown job kind {kind!r} or gallery")
            return
        try:
            report = self.builder.build(gallery.name, progress=self._progress(job_id))
        except DATABASE_DOWN:  # not the job's fault: put it back for when the database returns
            log.warning("database unavailable during job %s; it will be queued again", job_id)
            self._requeue_when_back(job_id)
            return
        except BuildLocked as exc:  # another build holds the gallery: try again later
            requeue(self.sessions, job_id, str(exc))
            self.stop.wait(self.poll_seconds)
            return
        except Exception as exc:  # the job records why it failed; the worker lives on
            log.exception("job %s failed", job_id)
            finish_job(self.sessions, job_id, JobState.FAILED, f"{type(exc).__name__}: {exc}")
            return
        finish_job(
            self.sessions,
            job_id,
            JobState.SUCCEEDED,
            failed_items=report.failed,
            processed=report.count + len(report.failed),
        )

    def _requeue_when_back(self, job_id: int) -> None:
        backoff = self.poll_seconds
        while not self.stop.is_set():
            try:
                requeue(self.sessions, job_id, "interrupted: the database was unavailable")
                return
            except DATABASE_DOWN:
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def run_once(self) -> bool:
        job_id = claim_job(self.sessions, self.name, self.stale_after)
        if job_id is None:
            return False
        log.info("worker %s took job %s", self.name, job_id)
        self.run_job(job_id)
        if self.on_job_done is not None:
            self.on_job_done()
        return True

    def run_forever(self) -> None:
        """Until stopped. A database outage does not end the worker: it waits, doubling the pause up to
        MAX_BACKOFF_SECONDS, and carries on when the database answers again (a job it was running when the
        database went away is taken over as stale, by this worker or another). Nor does any other error:
        it is logged and the loop goes on after a pause."""
        backoff = self.poll_seconds
        while not self.stop.is_set():
            try:
                worked = self.run_once()
            except DATABASE_DOWN as exc:
                log.warning("database unavailable (%s); retrying in %.0fs", type(exc).__name__, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            except Exception:
                log.exception("worker %s: unexpected error; carrying on", self.name)
                self.stop.wait(self.poll_seconds)
                continue
            backoff = self.poll_seconds
            if not worked:
                self.stop.wait(self.poll_seconds)
