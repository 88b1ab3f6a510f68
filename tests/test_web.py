"""The web pages in real headless Chromium (Debian's package) driven by Playwright, against the real
server with a real index, model and photos."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from app.main import create_app
from catalog.builder import GalleryBuilder
from catalog.settings import load_settings
from tests.helpers import CHECKPOINT, photos_of
from tests.postgres import free_port

TOKEN = "web-test-admin-token-1234"
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
SCREENSHOTS = Path(os.environ.get("SKETCH_SCREENSHOT_DIR", ""))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sketchy: Path) -> Iterator[str]:
    if not CHECKPOINT.exists():
        pytest.fail(f"the committed checkpoint {CHECKPOINT} is missing")
    tmp = tmp_path_factory.mktemp("web")
    source = tmp / "photos"
    photos_of(sketchy, ("cat", "teapot", "bicycle", "airplane", "fish"), source, per_class=12)
    settings = load_settings(
        data_dir=tmp / "data", checkpoint=CHECKPOINT, admin_token=TOKEN, index_poll_seconds=0.5
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not getattr(app.state, "service", None) or not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.2)
    state = app.state.service
    GalleryBuilder(state.settings, state.sessions, state.encoder, show_progress=False).build("demo", source)
    state.indexes.refresh()
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (apt-get install chromium; 'make test' does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    yield context.new_page()
    context.close()


def draw_cat(page, box) -> None:  # type: ignore[no-untyped-def]
    """A cat's face: head, ears, eyes and whiskers, drawn with the mouse in the canvas' top-left part."""
    x0, y0, s = box["x"] + 30, box["y"] + 30, box["width"] * 0.5 / 200

    def stroke(points: list[tuple[float, float]]) -> None:
        page.mouse.move(x0 + points[0][0] * s, y0 + points[0][1] * s)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x0 + x * s, y0 + y * s, steps=4)
        page.mouse.up()

    import math

    stroke(
        [
            (100 + 70 * math.cos(t / 20 * 2 * math.pi), 110 + 60 * math.sin(t / 20 * 2 * math.pi))
            for t in range(21)
        ]
    )
    stroke([(45, 75), (40, 15), (80, 55)])
    stroke([(120, 55), (160, 15), (155, 75)])
    stroke([(70, 100), (80, 100)])
    stroke([(120, 100), (130, 100)])
    stroke([(95, 125), (105, 125), (100, 132), (95, 125)])
    stroke([(60, 130), (10, 120)])
    stroke([(140, 130), (190, 120)])


def test_draw_and_see_results(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    canvas = page.locator("#pad")
    draw_cat(page, canvas.bounding_box())
    page.wait_for_selector("#results li", timeout=30_000)
    assert page.locator("#results li").count() == 24  # k=24 of the 60 photos
    assert "matches" in page.locator("#status").inner_text()
    first = page.locator("#results li a").first
    assert first.get_attribute("href", timeout=5000).startswith("/images/")
    page.wait_for_function("() => document.querySelector('#results img').naturalWidth > 0", timeout=10_000)
    if SCREENSHOTS.parts:
        page.screenshot(path=str(SCREENSHOTS / "screenshot-search.png"))
    # undo and clear keep working
    page.get_by_role("button", name="Clear").click()
    assert page.locator("#results li").count() == 0


def test_upload_png(server: str, page, sketchy: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    sketch = next((sketchy / "sketch" / "tx_000000000000" / "teapot").glob("*.png"))
    page.set_input_files("#upload", str(sketch))
    page.wait_for_selector("#results li", timeout=30_000)
    assert page.locator("#results li").count() == 24
    # a real teapot sketch: the committed model puts teapots first among five classes
    top = [page.locator("#results li strong").nth(i).inner_text() for i in range(5)]
    assert sum("teapot" in t for t in top) >= 4, top


def test_blank_canvas_shows_the_error(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    page.get_by_role("button", name="Search").click()
    status = page.locator("#status.error")
    status.wait_for(timeout=15_000)
    assert "blank" in status.inner_text()


def test_admin_reindex_with_progress(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/admin/")
    page.fill("#token", "wrong-token-wrong-token")
    page.get_by_role("button", name="Use token").click()
    page.locator("#admin-status.error").wait_for(timeout=10_000)
    page.fill("#token", TOKEN)
    page.get_by_role("button", name="Use token").click()
    page.wait_for_selector("#galleries tr", timeout=10_000)
    assert "demo" in page.locator("#galleries").inner_text()
    page.get_by_role("button", name="Reindex demo").click()
    page.wait_for_function(
        "() => document.querySelector('#job-text').textContent.includes('succeeded')", timeout=120_000
    )
    assert page.locator("#job-progress").evaluate("p => p.value === p.max && p.max > 1")
    if SCREENSHOTS.parts:
        page.screenshot(path=str(SCREENSHOTS / "screenshot-admin.png"), full_page=True)
