"""Building gallery indexes on real photos: full, incremental, faulty files, crash and resume, locking."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from catalog.builder import GalleryBuilder, gallery_dir
from catalog.db import migrate
from catalog.db.models import ImageRecord, IndexVersion
from catalog.db.session import make_engine, make_session_factory
from catalog.index_rows import image_ids
from catalog.index_store import IndexFileError, IndexType, active_version, load_index, read_version
from catalog.live_indexes import IndexManager
from catalog.locks import BuildLocked, gallery_lock
from catalog.settings import load_settings
from model.checkpoint import load_checkpoint, save_checkpoint
from model.factory import load_encoder
from tests.helpers import photos_of, png_bomb_header

CLASSES = ("cat", "teapot", "bicycle")


def setup_env(tmp_path: Path, checkpoint: Path, url: str | None = None):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "data", database_url=url, checkpoint=checkpoint)
    migrate.upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    return settings, sessions


def builder_for(settings, sessions, checkpoint: Path) -> GalleryBuilder:  # type: ignore[no-untyped-def]
    return GalleryBuilder(
        settings, sessions, load_encoder(checkpoint, "cpu"), batch_size=16, show_progress=False
    )


def test_full_build_on_real_photos(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path, database_url: str
) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, CLASSES, source)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint, database_url)
    report = builder_for(settings, sessions, tiny_checkpoint).build("demo", source)
    assert report.count == 75 and report.encoded == 75 and not report.failed
    with sessions() as session:
        version = active_version(session, "demo")
        assert version is not None and version.count == 75 and version.bits == 64
        labels = set(session.scalars(select(ImageRecord.label)))
        assert labels == set(CLASSES)
        loaded = load_index("demo", version)
        # every row of the index holds one of the gallery's photos, each photo once
        ids = set(session.scalars(select(ImageRecord.id)))
        rows = image_ids(session, version.id, loaded.count)
    _, found = loaded.search(np.zeros((1, 8), np.uint8), 100)
    assert set(rows[found[0]].tolist()) == ids and len(rows) == len(ids)
    # the loaded version holds its codes alone: 8 bytes a 64-bit photo
    assert loaded.memory_bytes() == 8 * loaded.count
    _index, manifest = read_version(Path(version.path))
    assert manifest.count == 75 and manifest.model_checksum == load_encoder(tiny_checkpoint, "cpu").checksum


def test_incremental_rebuild_encodes_only_new_photos(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path
) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, CLASSES, source, per_class=15)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint)
    builder = builder_for(settings, sessions, tiny_checkpoint)
    first = builder.build("g", source)
    assert first.encoded == 45
    added = photos_of(sketchy, ("cat",), source, per_class=25)  # 10 more cats
    assert len(added) == 25
    second = builder.build("g", source)
    assert (second.encoded, second.reused, second.count) == (10, 45, 55)
    # a vanished photo leaves the next version; a duplicate is indexed once
    added[0].unlink()
    (source / "dup").mkdir()
    (source / "dup" / "copy.jpg").write_bytes(added[1].read_bytes())
    third = builder.build("g", source)
    assert (third.encoded, third.count, third.removed) == (0, 54, 1)
    with sessions() as session:
        versions = session.scalars(select(IndexVersion).order_by(IndexVersion.id)).all()
        assert [v.state for v in versions] == ["retired", "active"]  # only the last two are kept
        assert len(list(gallery_dir(settings, "g").iterdir())) == 2


def test_new_checkpoint_reencodes_everything(tmp_path: Path, sketchy: Path, tiny_checkpoint: Path) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=8)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint)
    assert builder_for(settings, sessions, tiny_checkpoint).build("g", source).encoded == 8
    other = tmp_path / "other.safetensors"
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.state_dict = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    save_checkpoint(other, ckpt)
    report = builder_for(settings, sessions, other).build("g", source)
    assert (report.encoded, report.reused) == (8, 0)


def test_faulty_files_are_skipped_with_reasons(tmp_path: Path, sketchy: Path, tiny_checkpoint: Path) -> None:
    source = tmp_path / "photos"
    good = photos_of(sketchy, ("cat",), source, per_class=5)
    (source / "cat" / "empty.jpg").write_bytes(b"")
    (source / "cat" / "notes.png").write_text("this is not an image")
    data = good[0].read_bytes()
    (source / "cat" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (source / "cat" / "bomb.png").write_bytes(png_bomb_header())
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "PNG")
    settings, sessions = setup_env(tmp_path, tiny_checkpoint)
    report = builder_for(settings, sessions, tiny_checkpoint).build("g", source)
    reasons = {Path(f["path"]).name: f["reason"].split(":")[0] for f in report.failed}
    assert reasons == {
        "empty.jpg": "empty",
        "notes.png": "not_an_image",
        "truncated.jpg": "corrupt",
        "bomb.png": "too_large",
    }
    assert report.count == 5


def test_prefetching_the_next_batch_gives_the_same_index_and_failures(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path
) -> None:
    """The build prepares batch i+1 on a thread while batch i is encoded: same codes, same rows, same
    reported failures (a damaged file inside a prefetched batch) as one batch after another."""
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat", "teapot"), source, per_class=9)
    (source / "cat" / "damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    built = {}
    for prefetch in (False, True):
        settings, sessions = setup_env(tmp_path / str(prefetch), tiny_checkpoint)
        encoder = load_encoder(tiny_checkpoint, "cpu")
        builder = GalleryBuilder(
            settings, sessions, encoder, batch_size=4, show_progress=False, prefetch=prefetch
        )
        report = builder.build("demo", source)
        index, _ = read_version(report.version_path)
        with sessions() as session:
            version = active_version(session, "demo")
            assert version is not None
            paths = {r.id: Path(r.stored_path).name for r in session.scalars(select(ImageRecord))}
            names = [paths[int(i)] for i in image_ids(session, version.id, index.ntotal)]
        codes = {name: bytes(index.reconstruct(i)) for i, name in enumerate(names)}
        built[prefetch] = (codes, [(Path(f["path"]).name, f["reason"].split(":")[0]) for f in report.failed])
    assert built[True] == built[False]
    assert len(built[True][0]) == 18 and [name for name, _ in built[True][1]] == ["damaged.jpg"]


def test_second_build_of_a_gallery_is_refused_while_one_runs(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path
) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=3)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint)
    builder = builder_for(settings, sessions, tiny_checkpoint)
    with gallery_lock(settings.lock_dir, "g"), pytest.raises(BuildLocked):
        builder.build("g", source)
    assert builder.build("other", source).count == 3  # other galleries are not blocked
    assert builder.build("g", source).count == 3  # and the lock is gone with its holder


def test_killed_build_keeps_active_version_and_resumes(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path
) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=10)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint)
    builder = builder_for(settings, sessions, tiny_checkpoint)
    first = builder.build("g", source)
    photos_of(sketchy, ("teapot", "bicycle", "airplane", "car_(sedan)"), source)
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(settings.data_dir),
        "SKETCH_CHECKPOINT": str(tiny_checkpoint),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("SKETCH_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "indexer.cli", "build", "--gallery", "g", "--batch-size", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = settings.code_cache
    deadline = time.monotonic() + 120
    while sum(1 for _ in cache.rglob("*.bin")) < 10 + 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sessions() as session:
        version = active_version(session, "g")
        assert version is not None and version.id == first.version_id  # still serving the old version
        assert session.scalar(select(func.count(ImageRecord.id))) == 10
        assert load_index("g", version).index.ntotal == 10
    encoded_before_kill = sum(1 for _ in cache.rglob("*.bin")) - 10
    assert 0 < encoded_before_kill < 100
    resumed = builder.build("g", source)
    assert resumed.count == 110
    assert resumed.reused >= 10 + encoded_before_kill - 4  # at most the batch in flight was lost
    assert resumed.encoded <= 100 - encoded_before_kill + 4


def test_a_peek_for_photos_stops_at_the_first_and_says_when_it_cannot_tell(tmp_path: Path) -> None:
    from catalog.scan import holds_photos

    for n in range(5):
        (tmp_path / f"note{n}.txt").write_text("x")
    assert holds_photos(tmp_path) is False
    assert holds_photos(tmp_path, max_entries=3) is None  # looked at 3 of 5 entries: cannot tell
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "cat.JPG").write_bytes(b"")
    assert holds_photos(tmp_path) is True


def test_scan_follows_symlinked_class_folders(tmp_path: Path, sketchy: Path) -> None:
    from catalog.scan import scan_source

    source = tmp_path / "gallery"
    source.mkdir()
    (source / "cat").symlink_to(sketchy / "photo" / "tx_000000000000" / "cat", target_is_directory=True)
    found = scan_source(source)
    assert len(found) == 25 and {c.label for c in found} == {"cat"}


def test_fingerprinting_a_large_gallery_keeps_the_heartbeat(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import catalog.builder

    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=6)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint)
    monkeypatch.setattr(catalog.builder, "HEARTBEAT_SECONDS", 0.0)  # beat on every file
    calls: list[tuple[int, int]] = []
    builder_for(settings, sessions, tiny_checkpoint).build(
        "g", source, progress=lambda d, t: calls.append((d, t))
    )
    # before any photo is encoded, the scan itself reported progress (the job's heartbeat)
    assert calls[:5] == [(0, 6)] * 5


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_version_never_replaces_a_good_one(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path, database_url: str
) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=5)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint, database_url)
    builder = builder_for(settings, sessions, tiny_checkpoint)
    first = builder.build("g", source)
    serving = IndexManager(sessions, poll_seconds=60)
    serving.refresh()
    assert serving.get("g").version_id == first.version_id  # type: ignore[union-attr]
    photos_of(sketchy, ("teapot",), source, per_class=3)
    second = builder.build("g", source)
    assert second.version_path is not None
    flip_a_byte(second.version_path / "index.faiss")  # damaged on disk after it was written
    with pytest.raises(IndexFileError, match="checksum"):
        read_version(second.version_path)
    serving.refresh()
    assert serving.get("g").version_id == first.version_id  # type: ignore[union-attr]  # old one still serves
    # after a restart nothing is loaded yet: the last good version serves instead of nothing
    restarted = IndexManager(sessions, poll_seconds=60)
    restarted.refresh()
    loaded = restarted.get("g")
    assert loaded is not None and loaded.version_id == first.version_id and loaded.count == 5


def test_manifest_records_the_factory_and_its_parameters(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path
) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat", "teapot"), source, per_class=25)
    settings, sessions = setup_env(tmp_path, tiny_checkpoint)
    builder = GalleryBuilder(
        settings,
        sessions,
        load_encoder(tiny_checkpoint, "cpu"),
        index_type=IndexType.IVF,
        show_progress=False,
    )
    report = builder.build("g", source)
    index, manifest = read_version(report.version_path)  # type: ignore[arg-type]
    assert manifest.factory == "BIVF28" and manifest.params == {"nprobe": 1}
    assert faiss.downcast_IndexBinary(index).nprobe == 1 and index.ntotal == 50
    assert set(manifest.sha256) == {"index.faiss"}


def test_the_cli_on_the_embedded_database_needs_no_migrate_first_and_reports_a_build_once(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path
) -> None:
    """The service migrates its embedded SQLite itself; `indexer build` refused the same fresh data
    folder ("run 'indexer migrate' first"), then printed its result twice and Alembic's greetings."""
    photos_of(sketchy, ("cat", "teapot"), tmp_path / "photos", per_class=2)
    env = {**os.environ, "SKETCH_DATA_DIR": str(tmp_path / "data"), "SKETCH_CHECKPOINT": str(tiny_checkpoint)}
    env.pop("SKETCH_DATABASE_URL", None)
    cli = [sys.executable, "-m", "indexer.cli"]
    built = subprocess.run(
        [*cli, "build", "--gallery", "g", "--source", str(tmp_path / "photos")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert (
        built.stdout.splitlines()[0]
        == "gallery g: version 1 active with 4 images (4 encoded, 0 reused, 0 removed, 0 failed)"
    )
    assert "images (" not in built.stderr  # the builder's own line: the result once, on stdout
    assert "Context impl" not in built.stderr and "Will assume" not in built.stderr, built.stderr
    made = (
        f"SKETCH_DATABASE_URL is not set: made the embedded SQLite database {tmp_path / 'data' / 'sketch.db'}"
    )
    assert made in built.stderr  # once, when it is made: the search below does not say it again
    # `indexer search` takes the sketch POST /search takes: a PNG (a JPEG was searched here, refused there)
    drawn = next((sketchy / "sketch" / "tx_000000000000" / "teapot").glob("*.png"))
    Image.open(drawn).convert("RGB").save(tmp_path / "teapot.jpg")
    answers = [
        subprocess.run(
            [*cli, "search", "--gallery", "g", "--sketch", str(sketch), "-k", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for sketch in (drawn, tmp_path / "teapot.jpg")
    ]
    assert answers[0].returncode == 0, answers[0].stderr
    assert len(answers[0].stdout.splitlines()) == 2  # ranked photos (the tiny model's order: any two)
    assert answers[1].returncode == 1 and "the sketch must be a PNG image" in answers[1].stderr
    assert "SKETCH_DATABASE_URL" not in answers[0].stderr
