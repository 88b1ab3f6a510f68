"""The FastAPI application and its start-up and shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import faiss
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.access_log import AccessLog
from app.admin_service import MAX_UPLOAD_FILES
from app.errors import install_error_handlers
from app.guards import AdminTokenFirst, SecurityHeaders
from app.limits import MULTIPART_SLACK, BodySizeLimit
from app.metrics import Metrics, RequestMetrics, RouteTemplates
from app.routers import admin, health, images, search
from app.state import ServiceState
from app.static_pages import PagesOrMethodNotAllowed
from catalog.builder import GalleryBuilder
from catalog.db import migrate
from catalog.db.session import make_session_factory
from catalog.encoders import encoder_for
from catalog.index_device import IndexDeviceError, choose_index_device, placer_for
from catalog.live_indexes import IndexManager
from catalog.ray_encoding import ray_options
from catalog.settings import Settings, get_settings
from catalog.worker import Worker
from model.checkpoint import CheckpointError
from model.encode_batcher import EncodeBatcher
from model.encoding import ImageEncoder
from model.loader import configure_threads
from model.version import package_version

log = logging.getLogger("app")
STATIC = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs-assets"  # Swagger UI's and ReDoc's scripts and styles


class StartupError(SystemExit):
    """The service cannot start; the message says why and what to do."""


def prepare_database(settings: Settings):
    """``migrate.prepared_engine``, its refusal a StartupError."""
    try:
        return migrate.prepared_engine(settings)
    except migrate.NotAtHead as exc:
        raise StartupError(str(exc)) from None


def warm_up(encoder: ImageEncoder) -> None:
    """One encode at start-up so the first search does not pay for lazy initialisation."""
    from PIL import Image, ImageDraw

    sketch = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(sketch).line((8, 8, 56, 50), fill=0, width=3)
    encoder.encode_sketches([sketch])


def start_embedded_worker(state: ServiceState) -> threading.Thread:
    """The reindex worker's own loop on a thread of this process, stopped with the service."""
    builder = GalleryBuilder(
        state.settings, state.sessions, state.encoder, show_progress=False, ray=ray_options(state.settings)
    )
    worker = Worker(
        state.sessions,
        builder,
        poll_seconds=state.settings.index_poll_seconds,
        stop=state.worker_stop,
        on_job_done=state.indexes.refresh,
    )
    thread = threading.Thread(target=worker.run_forever, name="embedded-worker", daemon=True)
    thread.start()
    return thread


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_threads(settings.torch_threads)
    engine = prepare_database(settings)
    sessions = make_session_factory(engine)
    started = time.perf_counter()
    try:
        encoder = encoder_for(settings)
    except (CheckpointError, RuntimeError) as exc:
        raise StartupError(f"cannot load the model: {exc}") from None
    warm_up(encoder)
    log.info("model %s loaded and warmed in %.1fs", settings.checkpoint.name, time.perf_counter() - started)
    if not settings.admin_enabled:
        log.warning("admin endpoints disabled: %s", settings.admin_disabled_reason)
    try:
        index_device = choose_index_device(settings.index_device)
    except IndexDeviceError as exc:
        raise StartupError(str(exc)) from None
    log.info(
        "network on %s (%s); index search on %s (%s); FAISS %s built with %s",
        encoder.device,
        encoder.backend,
        index_device.device,
        index_device.reason,
        faiss.__version__,
        faiss.get_compile_options().strip(),
    )
    # One FAISS thread per query, on whichever thread searches: requests are the parallelism, and more
    # threads would only fight the encoder's for the cores.
    indexes = IndexManager(sessions, settings.index_poll_seconds, placer_for(index_device), search_threads=1)
    indexes.start()
    state = ServiceState(
        settings,
        engine,
        sessions,
        encoder,
        indexes,
        EncodeBatcher(
            encoder.encode_prepared_sketches,
            settings.encode_max_batch,
            settings.max_pending_encodes,
            settings.preprocess_threads,
            app.state.metrics.record_encode_batch,
            app.state.metrics.record_stage,
        ),
        app.state.metrics,
    )
    if settings.embedded_worker:
        state.worker_thread = start_embedded_worker(state)
    app.state.service = state
    try:
        yield
    finally:
        state.worker_stop.set()
        indexes.stop()
        state.batcher.shutdown()
        if state.worker_thread is not None:
            state.worker_thread.join(timeout=30)
        engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # /docs loads Swagger UI from files installed with fastapi-offline, not from a CDN: the API's
    # documentation works behind a firewall. No /redoc: ReDoc's page still fetches its logo from the
    # internet.
    app = FastAPIOffline(
        redoc_url=None,
        title="Sketch search",
        description="Draw a sketch, get the gallery photos of that kind of thing (CSCAN hashing).",
        version=package_version(),
        lifespan=lifespan,
        favicon_url="/favicon.ico",
        static_url=DOCS_ASSETS,
    )
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    install_error_handlers(app)
    for router in (health.router, search.router, images.router, admin.router):
        app.include_router(router)

    if STATIC.is_dir():
        app.mount("/", PagesOrMethodNotAllowed(directory=STATIC, html=True, routes=app.routes), name="static")
    upload_limit = settings.max_upload_bytes + MULTIPART_SLACK
    app.add_middleware(
        BodySizeLimit,
        limits={"/search": upload_limit, "/admin/galleries": upload_limit * MAX_UPLOAD_FILES},
        default=upload_limit,
    )
    app.add_middleware(
        AdminTokenFirst, settings=settings, routes=app.routes
    )  # outside the body limit: 401 before reading
    # outside both guards: their refusals are counted as the client gets them
    app.add_middleware(RequestMetrics, metrics=metrics, routes=RouteTemplates(app.routes))
    app.add_middleware(SecurityHeaders)
    if settings.access_log:
        app.add_middleware(AccessLog)  # outermost: refused requests are logged too
    return app
