"""Screenshots of the search and admin pages with the committed checkpoint on the demo gallery.

Indexes ../shared/data/sketchy-subset/photo (3,125 photos) into a scratch data folder, serves it, draws
a bicycle with the mouse in headless Chromium (Debian's package, driven by Playwright) and saves
docs/screenshot-search.png (results with the "looks like" chips), docs/screenshot-explain.png (attention
heat maps, the first photo hovered), docs/screenshot-phone.png (a phone-sized viewport) and
docs/screenshot-admin.png (after a reindex, with the job history).

    python -m scripts.screenshots [--out docs]   # from the repository root: the browser tests' Chromium flags
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import Page, sync_playwright

from app.main import create_app
from benchmarks.common import free_port
from catalog.builder import GalleryBuilder
from catalog.settings import DEFAULT_CHECKPOINT, load_settings
from tests.browser import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "data" / "sketchy-subset" / "photo"
TOKEN = "screenshot-admin-token-123"


def draw_bicycle(page: Page) -> None:
    """Two wheels, a frame, a saddle and handlebars, as a person draws them with a mouse."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    x0, y0, s = box["x"] + 12, box["y"] + 40, (box["width"] - 24) / 260

    def stroke(points: list[tuple[float, float]]) -> None:
        page.mouse.move(x0 + points[0][0] * s, y0 + points[0][1] * s)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x0 + x * s, y0 + y * s, steps=3)
        page.mouse.up()

    def circle(cx: float, cy: float, r: float) -> None:
        stroke(
            [
                (cx + r * math.cos(t / 24 * 2 * math.pi), cy + r * math.sin(t / 24 * 2 * math.pi))
                for t in range(25)
            ]
        )

    circle(60, 150, 45)
    circle(200, 150, 45)
    stroke([(60, 150), (110, 90), (180, 90), (200, 150)])
    stroke([(110, 90), (125, 150), (60, 150)])
    stroke([(125, 150), (180, 90)])
    stroke([(105, 75), (130, 75)])
    stroke([(180, 90), (175, 60), (195, 55)])


def wait_for_images(page: Page, first: int = 100) -> None:
    """The first result images have loaded (on a phone the others wait, lazily, below the fold)."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll('#results img')].slice(0, {first})"
        ".every(i => i.complete && i.naturalWidth)",
        timeout=60_000,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="screens-"))
    settings = load_settings(data_dir=tmp / "data", checkpoint=DEFAULT_CHECKPOINT, admin_token=TOKEN)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not getattr(app.state, "service", None) or not server.started:
        time.sleep(0.2)
    state = app.state.service
    GalleryBuilder(state.settings, state.sessions, state.encoder).build("demo", PHOTOS)
    state.indexes.refresh()
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
        page.goto(base + "/")
        draw_bicycle(page)
        page.get_by_role("button", name="Search").click()
        page.wait_for_function("() => document.querySelectorAll('#results img').length > 0", timeout=60_000)
        wait_for_images(page)
        page.screenshot(path=str(args.out / "screenshot-search.png"), full_page=True)
        labels = [page.locator("#results li strong").nth(i).inner_text() for i in range(12)]
        print("top 12:", labels, "guesses:", page.locator("#guesses").inner_text().replace("\n", " "))
        page.check("#explain")
        page.locator("#sketch-attention").wait_for(state="visible", timeout=60_000)
        wait_for_images(page)
        page.locator("#results li.explained").first.hover()
        page.wait_for_timeout(400)
        page.screenshot(path=str(args.out / "screenshot-explain.png"))
        phone = browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
        ).new_page()
        phone.goto(base + "/")
        draw_bicycle(phone)
        phone.wait_for_selector("#results li", timeout=60_000)
        phone.locator("#results-title").scroll_into_view_if_needed()
        phone.evaluate("document.querySelector('#results-title').scrollIntoView()")
        wait_for_images(phone, first=4)
        phone.screenshot(path=str(args.out / "screenshot-phone.png"), full_page=False)
        admin = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
        admin.goto(base + "/admin/")
        admin.fill("#token", TOKEN)
        admin.get_by_role("button", name="Use token").click()
        admin.wait_for_selector("#galleries tr", timeout=10_000)
        admin.get_by_role("button", name="Reindex demo").click()
        admin.wait_for_function(
            "() => document.querySelector('#job-text').textContent.includes('succeeded')", timeout=300_000
        )
        admin.wait_for_function("() => document.querySelectorAll('#jobs tr').length > 0")
        admin.screenshot(path=str(args.out / "screenshot-admin.png"), full_page=True)
        browser.close()
    server.should_exit = True
    thread.join(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
