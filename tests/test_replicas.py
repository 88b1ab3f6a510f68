"""Two API processes on one PostgreSQL and one shared index store (a shared volume in production):
after a reindex both serve the new version, whichever process ran the job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.common import free_port
from tests.helpers import TOKEN, photos_of, wait_until

pytestmark = pytest.mark.postgres
AUTH = {"Authorization": f"Bearer {TOKEN}"}


POLL: dict = {"every": 0.3, "ignoring": (httpx.TransportError,)}  # a replica (re)starting refuses


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str, tiny_checkpoint: Path) -> Iterator[list[str]]:
    base_env = {
        **os.environ,
        "SKETCH_DATABASE_URL": postgres_url,
        "SKETCH_DATA_DIR": str(tmp_path / "data"),  # the shared index store and uploads
        "SKETCH_CHECKPOINT": str(tiny_checkpoint),
        "SKETCH_ADMIN_TOKEN": TOKEN,
        "SKETCH_INDEX_POLL_SECONDS": "0.5",
        "OMP_NUM_THREADS": "1",
        "SKETCH_TORCH_THREADS": "1",
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "migrate"], env=base_env, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    procs, urls = [], []
    for name, worker in (("a", "true"), ("b", "false")):  # only replica a runs reindex jobs
        port = free_port()
        log = open(tmp_path / f"api-{name}.log", "w+")  # noqa: SIM115
        env = {**base_env, "SKETCH_EMBEDDED_WORKER": worker}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.serve", "--port", str(port)], env=env, stdout=log, stderr=log
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url, proc in zip(urls, procs, strict=True):
            wait_until(
                lambda u=url, p=proc: p.poll() is None and httpx.get(f"{u}/healthz").status_code == 200,
                "api",
                **POLL,
            )
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def test_two_replicas_serve_the_same_new_version(replicas: list[str], tmp_path: Path, sketchy: Path) -> None:
    a, b = replicas
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat", "teapot"), source, per_class=4)
    r = httpx.post(f"{b}/admin/galleries", json={"name": "g", "source_dir": str(source)}, headers=AUTH)
    assert r.status_code == 201, r.text

    def reindex_through(url: str) -> int:
        job_id = httpx.post(f"{url}/admin/galleries/g/reindex", headers=AUTH).json()["job_id"]
        wait_until(
            lambda: httpx.get(f"{url}/admin/jobs/{job_id}", headers=AUTH).json()["state"] == "succeeded",
            "job",
            **POLL,
        )
        with httpx.Client() as client:
            versions = client.get(f"{url}/admin/index", headers=AUTH).json()
        return next(v for v in versions if v["gallery"] == "g")["versions"][0]["id"]

    def served(url: str) -> tuple[int, int]:
        sketch = next((sketchy / "sketch" / "tx_000000000000" / "cat").glob("*.png")).read_bytes()
        body = httpx.post(
            f"{url}/search?gallery=g&k=50", files={"file": ("s.png", sketch, "image/png")}
        ).json()
        return body.get("index_version", -1), len(body.get("results", []))

    first = reindex_through(b)  # asked of b, run by a's worker
    wait_until(lambda: served(a) == served(b) == (first, 8), "both replicas serve version 1", **POLL)
    for photo in sorted((sketchy / "photo" / "tx_000000000000" / "fish").glob("*.jpg"))[:3]:
        shutil.copy(photo, source / photo.name)
    second = reindex_through(a)
    assert second != first
    wait_until(lambda: served(a) == served(b) == (second, 11), "both replicas serve the new version", **POLL)
    galleries = [httpx.get(f"{url}/galleries").json() for url in (a, b)]
    assert galleries[0] == galleries[1] == [{"name": "g", "indexed": True, "image_count": 11}]
