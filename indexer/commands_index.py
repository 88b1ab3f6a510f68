"""`indexer migrate`, `indexer build`, `indexer search` and `indexer worker`."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from catalog.builder import CPU_BATCH, GalleryBuilder
from catalog.db import migrate as migrations
from catalog.db.session import make_session_factory
from catalog.encoders import encoder_for
from catalog.index_store import IndexFileError, IndexType, active_version, load_index
from catalog.locks import BuildLocked
from catalog.logs import PLAIN, configure_logging
from catalog.ranking import search_codes
from catalog.ray_encoding import RayOptions, ray_options
from catalog.settings import Settings, get_settings
from catalog.worker import Worker
from model.checkpoint import CheckpointError
from model.encoding import ImageEncoder
from model.imageio import ImageRejected, decode_sketch_png
from model.preprocessing import BlankSketchError


def _sessions(settings: Settings):
    # Said when it is made: a command run without the deployment's SKETCH_DATABASE_URL would otherwise
    # fill a database the deployment never reads, and say nothing.
    new = settings.database_url is None and not settings.embedded_database.exists()
    try:
        sessions = make_session_factory(migrations.prepared_engine(settings))
    except migrations.NotAtHead as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if new:
        typer.echo(
            f"SKETCH_DATABASE_URL is not set: made the embedded SQLite database {settings.embedded_database}",
            err=True,
        )
    return sessions


def _encoder(settings: Settings) -> ImageEncoder:
    try:
        return encoder_for(settings)
    except (CheckpointError, RuntimeError) as exc:
        typer.echo(f"cannot load the model: {exc}", err=True)
        raise typer.Exit(2) from None


def migrate() -> None:
    """Bring the database (SKETCH_DATABASE_URL, default SQLite under SKETCH_DATA_DIR) to the latest schema."""
    settings = get_settings()
    migrations.upgrade(settings.resolved_database_url)
    typer.echo(f"database at revision {migrations.head_revision(settings.resolved_database_url)}")


def build(
    gallery: Annotated[str, typer.Option(help="gallery name (registered if new)")],
    source: Annotated[Path | None, typer.Option(help="folder of photos, scanned recursively")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="photos per network call (32 on CPU, 256 on GPU)")
    ] = None,
    index_type: Annotated[IndexType, typer.Option(help="flat (exact), hnsw or ivf")] = IndexType.FLAT,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="encode on Ray: alone, a local Ray; or 'auto', host:port, ray://host:port of a cluster",
        ),
    ] = None,
    ray_actors: Annotated[
        int | None, typer.Option(min=1, help="Ray actors (default: one per GPU, else one per CPU)")
    ] = None,
) -> None:
    """Encode new or changed photos and write a new index version, then make it active."""
    configure_logging(PLAIN, quiet=("catalog.builder",))  # the result is printed below, once
    settings = get_settings()
    if source is not None and not source.is_dir():
        typer.echo(f"source folder {source} does not exist", err=True)
        raise typer.Exit(2)
    options = RayOptions(ray, batch_size or CPU_BATCH, ray_actors) if ray is not None else None
    builder = GalleryBuilder(
        settings, _sessions(settings), _encoder(settings), batch_size, index_type, ray=options
    )
    try:
        report = builder.build(gallery, source)
    except (BuildLocked, FileNotFoundError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"gallery {gallery}: version {report.version_id} active with {report.count} images "
        f"({report.encoded} encoded, {report.reused} reused, {report.removed} removed, "
        f"{len(report.failed)} failed)"
    )
    for item in report.failed:
        typer.echo(f"  skipped {item['path']}: {item['reason']}")


def search(
    gallery: Annotated[str, typer.Option(help="gallery name")],
    sketch: Annotated[Path, typer.Option(help="PNG sketch, as POST /search takes one")],
    k: Annotated[int, typer.Option("-k", min=1, help="number of matches")] = 10,
) -> None:
    """Print the gallery's photos ranked as the service ranks them (Hamming candidates, re-ranked)."""
    settings = get_settings()
    sessions = _sessions(settings)
    with sessions() as session:
        version = active_version(session, gallery)
        if version is None:
            typer.echo(
                f"gallery {gallery!r} has no active index: run 'indexer build --gallery {gallery}'", err=True
            )
            raise typer.Exit(1)
        try:
            loaded = load_index(gallery, version)
        except IndexFileError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    encoder = _encoder(settings)
    try:
        codes = encoder.encode_sketches([decode_sketch_png(sketch.read_bytes(), settings.max_sketch_pixels)])
    except (OSError, ImageRejected, BlankSketchError) as exc:
        typer.echo(f"cannot use {sketch}: {exc}", err=True)
        raise typer.Exit(1) from None
    for n, r in enumerate(
        search_codes(sessions, loaded, codes.packed[0], codes.continuous[0], k).images, start=1
    ):
        label = r.label or "-"
        typer.echo(
            f"{n:3d}  d={r.distance:6.2f}  hamming={r.hamming_distance:3d}  {label:20s}  {r.stored_path}"
        )


def worker(
    once: Annotated[bool, typer.Option(help="run at most one job and exit")] = False,
    stale_after: Annotated[int, typer.Option(help="seconds without heartbeat before a job is retaken")] = 120,
) -> None:
    """Run queued reindex jobs (from the admin API) one at a time."""
    configure_logging()  # as the API logs: the two services' lines side by side in compose's logs
    settings = get_settings()
    sessions = _sessions(settings)
    builder = GalleryBuilder(
        settings, sessions, _encoder(settings), show_progress=False, ray=ray_options(settings)
    )
    runner = Worker(sessions, builder, timedelta(seconds=stale_after), settings.index_poll_seconds)
    if once:
        runner.run_once()
        return
    with contextlib.suppress(KeyboardInterrupt):
        runner.run_forever()
