"""The reindex worker's job queue on real SQLite and PostgreSQL: claim order, no double claims, and taking
over the job of a worker that died mid-build (its heartbeat went stale)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from catalog.db.models import Gallery, Job
from catalog.enums import JobKind, JobState
from catalog.jobs import claim_job, enqueue_reindex, finish_job
from tests.helpers import migrated_sessions

STALE = timedelta(seconds=120)


def new_gallery(sessions: sessionmaker[Session], name: str = "g") -> int:
    with sessions.begin() as session:
        gallery = Gallery(name=name, source_dir=None)
        session.add(gallery)
        session.flush()
        return gallery.id


def set_heartbeat(sessions: sessionmaker[Session], job_id: int, age: timedelta) -> None:
    with sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=datetime.now(UTC) - age))


def test_jobs_are_claimed_once_in_order(database_url: str) -> None:
    sessions = migrated_sessions(database_url)
    first = enqueue_reindex(sessions, new_gallery(sessions, "a"))
    second = enqueue_reindex(sessions, new_gallery(sessions, "b"))
    assert claim_job(sessions, "a", STALE) == first
    assert claim_job(sessions, "b", STALE) == second
    assert claim_job(sessions, "c", STALE) is None  # both running with fresh heartbeats
    with sessions() as session:
        job = session.get(Job, first)
        assert job is not None and job.state == JobState.RUNNING and job.worker == "a"


def test_one_pending_job_per_gallery_even_under_concurrent_requests(database_url: str) -> None:
    sessions = migrated_sessions(database_url)
    gallery = new_gallery(sessions)
    with ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(lambda _: enqueue_reindex(sessions, gallery), range(10)))
    assert len(ids) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
    # the database itself refuses a second pending job, whoever inserts it
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(Job(kind=JobKind.REINDEX, gallery_id=gallery, state=JobState.QUEUED, failed_items=[]))
    # once the job has ended, a new one can be queued
    (job_id,) = ids
    assert claim_job(sessions, "w", STALE) == job_id
    finish_job(sessions, job_id, JobState.SUCCEEDED)
    assert enqueue_reindex(sessions, gallery) != job_id


def test_a_dead_workers_job_is_taken_over(database_url: str) -> None:
    sessions = migrated_sessions(database_url)
    gallery = new_gallery(sessions)
    job_id = enqueue_reindex(sessions, gallery)
    assert claim_job(sessions, "dead", STALE) == job_id
    set_heartbeat(sessions, job_id, timedelta(seconds=30))  # slow but alive: left alone
    assert claim_job(sessions, "other", STALE) is None
    set_heartbeat(sessions, job_id, timedelta(minutes=10))  # the worker stopped reporting progress
    assert claim_job(sessions, "other", STALE) == job_id
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.worker == "other" and job.state == JobState.RUNNING
    assert claim_job(sessions, "third", STALE) is None  # the new owner's heartbeat is fresh


def test_the_loop_calls_back_after_each_job_and_outlives_an_unexpected_error(
    sqlite_url: str, tiny_checkpoint, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import catalog.worker
    from catalog.builder import GalleryBuilder
    from catalog.settings import load_settings
    from catalog.worker import Worker
    from model.factory import load_encoder

    sessions = migrated_sessions(sqlite_url)
    settings = load_settings(data_dir=tmp_path, checkpoint=tiny_checkpoint, database_url=sqlite_url)
    builder = GalleryBuilder(settings, sessions, load_encoder(tiny_checkpoint, "cpu"), show_progress=False)
    calls: list[str] = []
    real_claim = catalog.worker.claim_job

    def claim_once_failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not calls:
            calls.append("error")
            raise RuntimeError("a bug in one round")
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(catalog.worker, "claim_job", claim_once_failing)
    stop = threading.Event()
    done = threading.Event()
    worker = Worker(sessions, builder, poll_seconds=0.05, stop=stop, on_job_done=done.set)
    job_id = enqueue_reindex(sessions, new_gallery(sessions))  # no source folder: the job fails, and ends
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    assert done.wait(30), "the worker did not run the job after the error"
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive() and calls == ["error"]
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state in (JobState.FAILED, JobState.SUCCEEDED)
