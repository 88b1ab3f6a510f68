"""The job queue: enqueueing reindex jobs, claiming them, recording progress and outcome.

Several workers may share one PostgreSQL database: a job is claimed with SELECT ... FOR UPDATE SKIP
LOCKED (on SQLite, which has one writer at a time, by a conditional UPDATE). A running job whose
heartbeat is older than ``stale_after`` belonged to a dead worker and is taken again. At most one job
per gallery is queued or running: a partial unique index (migration 0002) settles racing requests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from catalog.db.models import Job
from catalog.enums import PENDING_JOB_STATES, JobKind, JobState

MAX_ATTEMPTS = 3  # a job whose worker died this many times (a photo that crashes it, a hang) is given up


def give_up_abandoned(session: Session, stale_before: datetime) -> None:
    """Jobs whose workers stopped reporting MAX_ATTEMPTS times fail with a clear error, so they cannot
    block the queue forever by killing or hanging every worker that takes them."""
    session.execute(
        update(Job)
        .where(
            Job.state == JobState.RUNNING,
            Job.heartbeat_at < stale_before,
            Job.attempts >= MAX_ATTEMPTS,
        )
        .values(
            state=JobState.FAILED,
            finished_at=datetime.now(UTC),
            error=f"gave up after {MAX_ATTEMPTS} attempts: its worker stopped responding each time",
        )
    )


def claim_job(sessions: sessionmaker[Session], name: str, stale_after: timedelta) -> int | None:
    now = datetime.now(UTC)
    claimable = or_(
        Job.state == JobState.QUEUED,
        and_(
            Job.state == JobState.RUNNING,
            Job.heartbeat_at < now - stale_after,
            Job.attempts < MAX_ATTEMPTS,
        ),
    )
    with sessions.begin() as session:
        give_up_abandoned(session, now - stale_after)
        query = select(Job.id, Job.state).where(claimable).order_by(Job.created_at, Job.id).limit(1)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = session.execute(query).first()
        if row is None:
            return None
        claimed = session.execute(
            update(Job)
            .where(Job.id == row.id, claimable)
            .values(
                state=JobState.RUNNING,
                worker=name,
                started_at=now,
                heartbeat_at=now,
                error=None,
                attempts=Job.attempts + 1,
            )
        )
        return int(row.id) if claimed.rowcount == 1 else None  # type: ignore[attr-defined]  # CursorResult


def pending_job(session: Session, gallery_id: int) -> int | None:
    job_id = session.scalar(
        select(Job.id).where(Job.gallery_id == gallery_id, Job.state.in_(PENDING_JOB_STATES)).limit(1)
    )
    return None if job_id is None else int(job_id)


def enqueue_reindex(sessions: sessionmaker[Session], gallery_id: int) -> int:
    """Queue a reindex of the gallery, or return the job already queued or running for it."""
    with sessions() as session:
        existing = pending_job(session, gallery_id)
    if existing is not None:
        return existing
    try:
        with sessions.begin() as session:
            job = Job(
                kind=JobKind.REINDEX,
                gallery_id=gallery_id,
                state=JobState.QUEUED,
                processed=0,
                total=0,
                failed_items=[],
            )
            session.add(job)
            session.flush()
            return job.id
    except IntegrityError:  # a concurrent request queued one first: that one is ours too
        with sessions() as session:
            existing = pending_job(session, gallery_id)
        if existing is None:  # it finished in between: queue again
            return enqueue_reindex(sessions, gallery_id)
        return existing


def record_progress(sessions: sessionmaker[Session], job_id: int, processed: int, total: int) -> None:
    """Progress doubles as the heartbeat that tells other workers this job is alive."""
    with sessions.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(processed=processed, total=total, heartbeat_at=datetime.now(UTC))
        )


def requeue(sessions: sessionmaker[Session], job_id: int, reason: str) -> None:
    with sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(state=JobState.QUEUED, error=reason))


def finish_job(
    sessions: sessionmaker[Session],
    job_id: int,
    state: JobState,
    error: str | None = None,
    failed_items: list[dict[str, Any]] | None = None,
    processed: int | None = None,
) -> None:
    with sessions.begin() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        job.state, job.error, job.finished_at = state, error, datetime.now(UTC)
        if failed_items is not None:
            job.failed_items = list(failed_items)
        if processed is not None:
            job.processed = job.total = processed
