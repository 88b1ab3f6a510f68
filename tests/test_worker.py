"""The reindex worker's job queue on real SQLite and PostgreSQL: claim order, no double claims, and taking
over the job of a worker that died mid-build (its heartbeat went stale)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.db import migrate
from app.db.models import Gallery, Job
from app.db.session import make_engine, make_session_factory
from indexer.worker import claim_job, enqueue_reindex

STALE = timedelta(seconds=120)


def sessions_for(url: str) -> sessionmaker[Session]:
    migrate.upgrade(url)
    return make_session_factory(make_engine(url))


def new_gallery(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        gallery = Gallery(name="g", source_dir=None)
        session.add(gallery)
        session.flush()
        return gallery.id


def set_heartbeat(sessions: sessionmaker[Session], job_id: int, age: timedelta) -> None:
    with sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=datetime.now(UTC) - age))


def test_jobs_are_claimed_once_in_order(database_url: str) -> None:
    sessions = sessions_for(database_url)
    gallery = new_gallery(sessions)
    first, second = enqueue_reindex(sessions, gallery), enqueue_reindex(sessions, gallery)
    assert claim_job(sessions, "a", STALE) == first
    assert claim_job(sessions, "b", STALE) == second
    assert claim_job(sessions, "c", STALE) is None  # both running with fresh heartbeats
    with sessions() as session:
        job = session.get(Job, first)
        assert job is not None and job.state == "running" and job.worker == "a"


def test_a_dead_workers_job_is_taken_over(database_url: str) -> None:
    sessions = sessions_for(database_url)
    gallery = new_gallery(sessions)
    job_id = enqueue_reindex(sessions, gallery)
    assert claim_job(sessions, "dead", STALE) == job_id
    set_heartbeat(sessions, job_id, timedelta(seconds=30))  # slow but alive: left alone
    assert claim_job(sessions, "other", STALE) is None
    set_heartbeat(sessions, job_id, timedelta(minutes=10))  # the worker stopped reporting progress
    assert claim_job(sessions, "other", STALE) == job_id
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.worker == "other" and job.state == "running"
    assert claim_job(sessions, "third", STALE) is None  # the new owner's heartbeat is fresh
