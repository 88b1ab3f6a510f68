"""The reindex worker: takes queued jobs from the database one at a time.

Several workers may share one PostgreSQL database: a job is claimed with SELECT ... FOR UPDATE SKIP
LOCKED (on SQLite, which has one writer at a time, by a conditional UPDATE). A running job whose
heartbeat is older than ``stale_after`` belonged to a dead worker and is taken again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Gallery, Job
from indexer.build import GalleryBuilder
from indexer.locks import BuildLocked

log = logging.getLogger(__name__)
REINDEX = "reindex"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def claim_job(sessions: sessionmaker[Session], name: str, stale_after: timedelta) -> int | None:
    now = datetime.now(UTC)
    claimable = or_(Job.state == "queued", and_(Job.state == "running", Job.heartbeat_at < now - stale_after))
    with sessions.begin() as session:
        query = select(Job.id, Job.state).where(claimable).order_by(Job.created_at, Job.id).limit(1)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = session.execute(query).first()
        if row is None:
            return None
        claimed = session.execute(
            update(Job)
            .where(Job.id == row.id, claimable)
            .values(state="running", worker=name, started_at=now, heartbeat_at=now, error=None)
        )
        return int(row.id) if claimed.rowcount == 1 else None


def enqueue_reindex(sessions: sessionmaker[Session], gallery_id: int) -> int:
    with sessions.begin() as session:
        job = Job(kind=REINDEX, gallery_id=gallery_id, state="queued", processed=0, total=0, failed_items=[])
        session.add(job)
        session.flush()
        return job.id


class Worker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        builder: GalleryBuilder,
        stale_after: timedelta = timedelta(seconds=120),
        poll_seconds: float = 2.0,
    ) -> None:
        self.sessions = sessions
        self.builder = builder
        self.stale_after = stale_after
        self.poll_seconds = poll_seconds
        self.name = worker_name()
        self.stop = threading.Event()

    def _progress(self, job_id: int):  # type: ignore[no-untyped-def]
        def report(processed: int, total: int) -> None:
            with self.sessions.begin() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(processed=processed, total=total, heartbeat_at=datetime.now(UTC))
                )

        return report

    def _finish(self, job_id: int, state: str, error: str | None = None) -> None:
        with self.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is not None:
                job.state, job.error, job.finished_at = state, error, datetime.now(UTC)

    def run_job(self, job_id: int) -> None:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            gallery = session.get(Gallery, job.gallery_id) if job and job.gallery_id else None
            kind = job.kind if job else None
        if gallery is None or kind != REINDEX:
            self._finish(job_id, "failed", f"unknown job kind {kind!r} or gallery")
            return
        try:
            report = self.builder.build(gallery.name, job_id=job_id, progress=self._progress(job_id))
        except BuildLocked as exc:
            with self.sessions.begin() as session:  # another build holds the gallery: try again later
                session.execute(update(Job).where(Job.id == job_id).values(state="queued", error=str(exc)))
            self.stop.wait(self.poll_seconds)
            return
        except Exception as exc:  # the job records why it failed; the worker lives on
            log.exception("job %s failed", job_id)
            self._finish(job_id, "failed", f"{type(exc).__name__}: {exc}")
            return
        with self.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is not None:
                job.processed = job.total = report.count + len(report.failed)
        self._finish(job_id, "succeeded")

    def run_once(self) -> bool:
        job_id = claim_job(self.sessions, self.name, self.stale_after)
        if job_id is None:
            return False
        log.info("worker %s took job %s", self.name, job_id)
        self.run_job(job_id)
        return True

    def run_forever(self) -> None:
        while not self.stop.is_set():
            if not self.run_once():
                self.stop.wait(self.poll_seconds)
