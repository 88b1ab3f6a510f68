"""Faults on purpose: the database stops under load and comes back. A private PostgreSQL server (the
session's shared one keeps serving the other tests), the real app, and a separate worker as in the
compose stack."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog.builder import GalleryBuilder
from catalog.db.models import ImageRecord
from catalog.worker import Worker
from model.factory import load_encoder
from tests.helpers import (
    AUTH,
    build,
    error_code,
    make_client,
    migrated_sessions,
    photos_of,
    sketch_png,
    wait_for_job,
)
from tests.postgres import CONTROLS, create_database, find_pg_bin, postgres_server


@pytest.fixture
def private_postgres() -> Iterator[str]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL not installed")  # conftest's postgres fixtures fail in CI instead
    with postgres_server() as server:
        yield server


def test_database_outage_under_load_loses_nothing_and_recovers(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path, private_postgres: str
) -> None:
    url = create_database(private_postgres)
    control = CONTROLS[private_postgres]
    sessions = migrated_sessions(url)
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat", "teapot"), source, per_class=8)
    with make_client(tmp_path, tiny_checkpoint, url, embedded_worker=False) as client:
        build(client, tiny_checkpoint, "g", source)
        state = client.app.state.service  # type: ignore[attr-defined]
        worker = Worker(
            sessions,
            GalleryBuilder(
                state.settings, sessions, load_encoder(tiny_checkpoint, "cpu"), show_progress=False
            ),
            poll_seconds=0.2,
        )
        worker_thread = threading.Thread(target=worker.run_forever, daemon=True)
        worker_thread.start()
        statuses: Counter[int] = Counter()
        codes: Counter[str] = Counter()
        stop_load = threading.Event()

        crashes: list[BaseException] = []  # an error the app raised instead of answering (a 500)

        def load() -> None:
            while not stop_load.is_set():
                try:
                    r = client.post("/search?k=5", files={"file": ("s.png", sketch_png(), "image/png")})
                except Exception as exc:  # the test client re-raises what the app raised
                    crashes.append(exc)
                    continue
                statuses[r.status_code] += 1
                if r.status_code != 200:
                    codes[error_code(r)] += 1

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        control.stop()  # the database goes away under load
        time.sleep(1.0)
        job_during_outage = client.post("/admin/galleries/g/reindex", headers=AUTH)
        assert (
            job_during_outage.status_code == 503 and error_code(job_during_outage) == "database_unavailable"
        )
        time.sleep(2.0)
        assert worker_thread.is_alive()  # the worker waits the outage out
        control.start()
        time.sleep(3.0)
        stop_load.set()
        for t in threads:
            t.join()
        assert not crashes, crashes[:3]
        assert set(statuses) <= {200, 503}, statuses  # never a 500
        assert statuses[503] > 0 and codes == Counter({"database_unavailable": statuses[503]})
        # after recovery everything works again: search, reindex by the surviving worker, no photo lost
        r = client.post("/search?k=5", files={"file": ("s.png", sketch_png(), "image/png")})
        assert r.status_code == 200 and len(r.json()["results"]) == 5
        job_id = client.post("/admin/galleries/g/reindex", headers=AUTH).json()["job_id"]
        job = wait_for_job(client, job_id, 60)
        assert job["state"] == "succeeded", f"the worker did not come back to work: {job}"
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(ImageRecord)) == 16
        worker.stop.set()
        worker_thread.join(timeout=10)
