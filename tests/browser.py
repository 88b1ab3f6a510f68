"""What the browser tests share: the real server on a free port with a demo gallery of real photos, and
Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app.main import create_app
from benchmarks.common import free_port
from catalog.builder import GalleryBuilder
from catalog.settings import load_settings
from tests.helpers import CHECKPOINT, photos_of, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def served_demo(
    tmp: Path, sketchy: Path, classes: tuple[str, ...], per_class: int, **overrides: Any
) -> Iterator[str]:
    """The app served by uvicorn in a thread, with a gallery "demo" of ``per_class`` real photos of each
    of ``classes`` built and loaded; yields its base URL."""
    if not CHECKPOINT.exists():
        pytest.fail(f"the committed checkpoint {CHECKPOINT} is missing")
    source = tmp / "photos"
    photos_of(sketchy, classes, source, per_class=per_class)
    settings = load_settings(
        data_dir=tmp / "data", checkpoint=CHECKPOINT, index_poll_seconds=0.5, **overrides
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "the server stopped while starting"
        return bool(getattr(app.state, "service", None)) and server.started

    wait_until(started, "the server to start")
    try:
        state = app.state.service
        GalleryBuilder(state.settings, state.sessions, state.encoder, show_progress=False).build(
            "demo", source
        )
        state.indexes.refresh()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (apt-get install chromium; 'make test' does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
