"""Indexing on a real local Ray cluster (2 CPUs): same codes and rows as one process, a worker killed
mid-build is replaced, a broken photo is reported, the CLI and the reindex worker use a cluster address,
and nothing imports Ray unless asked."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.builder import BuildReport, GalleryBuilder
from catalog.db import migrate
from catalog.db.models import Gallery, ImageRecord, Job
from catalog.db.session import make_engine, make_session_factory
from catalog.enums import JobState
from catalog.index_rows import image_ids
from catalog.index_store import active_version, read_version
from catalog.jobs import enqueue_reindex
from catalog.ray_encoding import RayOptions, ray_options
from catalog.settings import Settings, load_settings
from catalog.worker import Worker
from model.factory import load_encoder
from tests.helpers import CHECKPOINT, REPO, photos_of, wait_until

pytestmark = pytest.mark.slow
ACTOR = "MapBatches(PhotoEncoderActor)"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A real Ray instance with 2 CPUs; yields its address for clients that connect to it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    """The committed model: its codes differ from photo to photo (an untrained one's barely do)."""
    return CHECKPOINT


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, sketchy: Path) -> Path:
    folder = tmp_path_factory.mktemp("ray") / "photos"
    photos_of(sketchy, ("cat", "teapot", "fish"), folder, per_class=12)
    (folder / "cat" / "broken.jpg").write_bytes(b"this is not a JPEG")  # refused when scanned
    # a valid header but cut short: it fails when decoded, i.e. inside a Ray worker
    whole = next((folder / "teapot").glob("*.jpg")).read_bytes()
    (folder / "teapot" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    return folder


def environment(tmp_path: Path, checkpoint: Path, **overrides: object):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "data", checkpoint=checkpoint, **overrides)
    migrate.upgrade(settings.resolved_database_url)
    return settings, make_session_factory(make_engine(settings.resolved_database_url))


def snapshot(settings: Settings, sessions) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    """sha256 -> (row fields, packed code) of the gallery's active version."""
    with sessions() as session:
        version = active_version(session, "g")
        assert version is not None
        index, _ = read_version(Path(version.path))
        ids = image_ids(session, version.id, index.ntotal)
        codes = {int(i): index.reconstruct(n) for n, i in enumerate(ids)}
        rows = session.scalars(select(ImageRecord)).all()
        return {
            r.sha256: ((r.label, r.stored_path, r.width, r.height, r.origin), bytes(codes[r.id]))
            for r in rows
        }


@pytest.fixture(scope="module")
def single_process(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, source: Path
) -> tuple[BuildReport, dict[str, tuple]]:
    settings, sessions = environment(tmp_path_factory.mktemp("local"), checkpoint)
    builder = GalleryBuilder(settings, sessions, load_encoder(checkpoint, "cpu"), show_progress=False)
    return builder.build("g", source), snapshot(settings, sessions)


def test_ray_build_matches_the_single_process_build(
    cluster: str, single_process, checkpoint: Path, source: Path, tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="catalog.ray_encoding")
    copies_before = set(Path(tempfile.gettempdir()).glob("sketch-ray-*"))
    settings, sessions = environment(tmp_path, checkpoint)
    steps: list[tuple[int, int]] = []
    builder = GalleryBuilder(
        settings,
        sessions,
        load_encoder(checkpoint, "cpu"),
        show_progress=False,
        ray=RayOptions(batch_size=8),
    )
    report = builder.build("g", source, progress=lambda done, total: steps.append((done, total)))
    local_report, local = single_process
    assert report.count == local_report.count == 36 and report.encoded == 36
    assert report.failed == local_report.failed and len(report.failed) == 2  # reported, not fatal
    reasons = {Path(f["path"]).name: f["reason"] for f in report.failed}
    assert reasons["broken.jpg"].startswith("not_an_image") and "truncated.jpg" in reasons
    assert snapshot(settings, sessions) == local  # bit-identical codes, the same rows
    assert len({code for _, code in local.values()}) > 3  # real codes (classes share some), not one constant
    assert steps[-1] == (37, 37) and len(steps) >= 5  # progress as batches come back
    shares = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Ray actors encoded"))
    # how the 37 photos split over the actors depends on which one started first; the total does not
    assert sum(int(n) for n in shares.split()[3::2]) == 37, shares
    # a second build reuses every code from the cache, on Ray or not
    again = builder.build("g", source)
    assert again.encoded == 0 and again.reused == 36

    # each actor wrote the checkpoint to a scratch folder to load it; none is left behind (16 MB each).
    # An actor still loading when the build ends (on a slow host one actor can encode all 37 photos
    # before the other has loaded) removes its folder when its load ends: a folder that outlives that
    # wait was leaked.
    def leftovers() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("sketch-ray-*")) - copies_before

    wait_until(lambda: not leftovers(), "the actors' scratch folders to go", every=0.5)


def actor_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ACTOR in (entry / "cmdline").read_text(errors="replace"):
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_worker_killed_mid_build_is_replaced(
    cluster: str, single_process, checkpoint: Path, source: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings, sessions = environment(tmp_path, checkpoint)
    builder = GalleryBuilder(
        settings,
        sessions,
        load_encoder(checkpoint, "cpu"),
        show_progress=False,
        ray=RayOptions(batch_size=1, actors=1),  # one actor: killing it stops all encoding
    )
    first_batch = threading.Event()
    result: dict[str, BuildReport] = {}

    def progress(done: int, total: int) -> None:
        if done > 0:
            first_batch.set()
            time.sleep(0.05)  # keep the driver slow, so batches are still pending when the kill lands

    thread = threading.Thread(target=lambda: result.update(report=builder.build("g", source, progress)))
    thread.start()
    assert first_batch.wait(300), "no batch came back"
    before = actor_pids()
    assert before, "no encoder actor process found"
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    assert thread.is_alive()  # killed mid-build
    thread.join(600)
    assert "report" in result, "the build did not complete"
    assert result["report"].count == 36
    assert actor_pids().isdisjoint(before)  # Ray restarted the actor in a new process
    assert snapshot(settings, sessions) == single_process[1]


def test_cli_build_on_a_cluster_address(cluster: str, checkpoint: Path, source: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(tmp_path / "data"),
        "SKETCH_CHECKPOINT": str(checkpoint),
    }
    indexer = [sys.executable, "-m", "indexer.cli"]
    subprocess.run([*indexer, "migrate"], env=env, check=True, cwd=REPO, capture_output=True)
    out = subprocess.run(
        [
            *indexer,
            "build",
            "--gallery",
            "g",
            "--source",
            str(source),
            "--ray",
            cluster,
            "--batch-size",
            "12",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "version 1 active with 36 images (36 encoded" in out.stdout and "2 failed" in out.stdout
    assert "encode (ray, 2 cpu actors)" in out.stderr  # the progress bar says where it runs
    assert "skipped" in out.stdout and "broken.jpg" in out.stdout


def test_reindex_worker_uses_the_configured_cluster(
    cluster: str, single_process, checkpoint: Path, source: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings, sessions = environment(tmp_path, checkpoint, ray_address=cluster)
    with sessions.begin() as session:
        gallery = Gallery(name="g", source_dir=str(source))
        session.add(gallery)
        session.flush()
        gallery_id = gallery.id
    job_id = enqueue_reindex(sessions, gallery_id)
    encoder = load_encoder(checkpoint, "cpu")
    builder = GalleryBuilder(settings, sessions, encoder, show_progress=False, ray=ray_options(settings))
    assert builder.ray is not None and builder.ray.address == cluster
    assert Worker(sessions, builder).run_once()
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.SUCCEEDED and job.processed == 38 and len(job.failed_items) == 2
    assert snapshot(settings, sessions) == single_process[1]


def test_without_ray_nothing_imports_it(checkpoint: Path, source: Path, tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from catalog.builder import GalleryBuilder
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.settings import load_settings
from model.factory import load_encoder
import app.main, indexer.cli
settings = load_settings(data_dir=Path({str(tmp_path)!r}), checkpoint=Path({str(checkpoint)!r}))
migrate.upgrade(settings.resolved_database_url)
sessions = make_session_factory(make_engine(settings.resolved_database_url))
encoder = load_encoder(settings.checkpoint, "cpu")
builder = GalleryBuilder(settings, sessions, encoder, show_progress=False)
assert builder.build("g", Path({str(source)!r})).count == 36
assert "ray" not in sys.modules, "ray was imported"
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr


def test_ray_flag_alone_means_a_local_ray() -> None:
    from indexer.cli import optional_ray_address

    build = ["build", "--gallery", "g"]
    assert optional_ray_address([*build, "--ray"]) == [*build, "--ray=local"]
    assert optional_ray_address([*build, "--ray", "--batch-size", "8"]) == [
        *build,
        "--ray=local",
        "--batch-size",
        "8",
    ]
    assert optional_ray_address([*build, "--ray", "head:6379"]) == [*build, "--ray", "head:6379"]
    assert optional_ray_address(build) == build
