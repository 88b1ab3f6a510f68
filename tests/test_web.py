"""The web pages in real headless Chromium (Debian's package) driven by Playwright, against the real
server with a real index, model and photos."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from model.imageio import IMAGE_EXTENSIONS
from tests.browser import chromium, served_demo
from tests.helpers import SHARED

TOKEN = "web-test-admin-token-1234"
SCREENSHOTS = Path(os.environ.get("SKETCH_SCREENSHOT_DIR", ""))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sketchy: Path) -> Iterator[str]:
    with served_demo(
        tmp_path_factory.mktemp("web"),
        sketchy,
        ("cat", "teapot", "bicycle", "airplane", "fish"),
        12,
        admin_token=TOKEN,
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    with chromium() as b:
        yield b


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


def test_the_page_starts_on_a_gallery_it_can_search(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """A gallery registered and not indexed yet that sorts first was the page's choice: every drawing
    then answered 409 no_index until the menu was changed."""
    import httpx

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{server}/admin/galleries", json={"name": "aaa-new"}, headers=auth).status_code == 201
    try:
        page.goto(server + "/")
        page.wait_for_function("() => document.querySelectorAll('#gallery option').length === 2")
        assert page.locator("#gallery").input_value() == "demo"
        draw_cat(page, page.locator("#pad").bounding_box())
        page.wait_for_selector("#results li", timeout=30_000)
    finally:
        assert httpx.delete(f"{server}/admin/galleries/aaa-new", headers=auth).status_code == 200


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


def upload_sketch(page, label: str) -> None:  # type: ignore[no-untyped-def]
    """A dev test sketch (never trained on) through the page's upload button."""
    lines = (Path(__file__).parent.parent / "splits" / "sketchy_test_sketches.txt").read_text().splitlines()
    path = next(SHARED / "data" / line.split(" ")[0] for line in lines if line.endswith(f" {label}"))
    page.set_input_files("#upload", str(path))


def result_labels(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator("#results li strong").evaluate_all(
        "els => els.map(e => e.textContent.split('. ')[1])"
    )


def test_guess_chips_filter_the_results(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    upload_sketch(page, "teapot")
    chips = page.locator("#guesses .chip")
    chips.first.wait_for(timeout=30_000)
    assert chips.count() == 5 and chips.first.get_attribute("data-label") == "teapot"
    assert "%" in chips.first.inner_text()
    assert len(set(result_labels(page))) > 1  # 24 results from 12-photo classes: not only teapots
    chips.first.click()
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('showing only')")
    assert result_labels(page) == ["teapot"] * 12
    assert page.locator("#guesses .chip").first.get_attribute("aria-pressed") == "true"
    page.locator("#guesses .chip").first.click()  # again: every kind
    page.wait_for_function(
        "() => { const t = document.querySelector('#status').textContent;"
        " return t.includes('matches') && !t.includes('showing only'); }"
    )
    assert page.locator("#results li").count() == 24


def test_more_like_this(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    upload_sketch(page, "bicycle")
    page.wait_for_selector("#results li", timeout=30_000)
    first = page.locator("#results li a").first.get_attribute("href")
    page.locator("#results li").first.get_by_role("button", name="More photos like").click()
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('photos like')")
    hrefs = page.locator("#results li a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert len(hrefs) == 24 and first not in hrefs  # the photo itself is left out
    assert result_labels(page)[:5].count("bicycle") >= 4
    assert page.locator("#guesses").is_hidden()
    page.get_by_role("button", name="Back to my sketch").click()
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('matches')")
    assert page.locator("#guesses .chip").count() == 5


def slow_once(page, owner: str, name: str) -> None:  # type: ignore[no-untyped-def]
    """The page's next call of ``owner.name`` (e.g. Blob.prototype.arrayBuffer) answers 1.5 s late, as
    a large upload on a slow disk may; ``window.slowDone`` is set once it has."""
    page.evaluate(
        f"""() => {{
  const owner = {owner}, original = owner.{name};
  window.slowDone = false;
  owner.{name} = function (...args) {{
    owner.{name} = original;
    const late = new Promise((r) => setTimeout(r, 1500)).then(() => original.apply(this ?? owner, args));
    return late.finally(() => {{ window.slowDone = true; }});
  }};
}}"""
    )


def sketch_searches(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The sketch searches (POST /search, not /search/similar) the page sends from now on: a list that
    fills as they go."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/search?" in r.url and r.method == "POST" else None)
    return sent


@contextmanager
def after_the_slow_call(page) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The block, then the wait until ``slow_once``'s call has answered and whatever would follow it
    (a search sent late, and its answer) has had time to happen."""
    yield
    page.wait_for_function("() => window.slowDone", timeout=10_000)
    page.wait_for_timeout(1000)


def searched_teapot(page, server: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The page with a teapot sketch uploaded and searched, and ``sketch_searches`` from then on."""
    page.goto(server + "/")
    upload_sketch(page, "teapot")
    page.wait_for_selector("#results li", timeout=30_000)
    return sketch_searches(page)


def test_a_newer_query_is_not_overtaken_by_an_older_one_still_reading_its_sketch(server: str, page) -> None:  # type: ignore[no-untyped-def]
    sent = searched_teapot(page, server)
    slow_once(page, "Blob.prototype", "arrayBuffer")
    with after_the_slow_call(page):
        page.get_by_role("button", name="Search").click()  # reads the sketch for 1.5 s
        page.locator("#results li").first.get_by_role("button", name="More photos like").click()
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('photos like')")
    # the older search gave way: it neither replaced the newer answer nor aborted its request
    assert sent == []
    assert "photos like" in page.locator("#status").inner_text()
    assert not page.locator("#query-note").is_hidden()  # "Photos like ...": the newer query's answer


def test_clear_while_a_search_is_under_way_leaves_the_page_clear(server: str, page) -> None:  # type: ignore[no-untyped-def]
    sent = searched_teapot(page, server)
    slow_once(page, "Blob.prototype", "arrayBuffer")
    with after_the_slow_call(page):
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name="Clear").click()
    assert sent == []
    assert page.locator("#results li").count() == 0
    assert page.locator("#status").inner_text() == ""


def test_clear_while_an_upload_is_decoded_leaves_the_page_clear(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    sent = sketch_searches(page)
    slow_once(page, "window", "createImageBitmap")
    with after_the_slow_call(page):
        upload_sketch(page, "teapot")  # decoded for 1.5 s
        page.get_by_role("button", name="Clear").click()
    assert sent == [] and page.evaluate("uploaded === null && background === null")
    assert page.locator("#results li").count() == 0 and page.locator("#status").inner_text() == ""


def test_a_cutoff_changed_just_after_drawing_searches_the_drawing(server: str, page) -> None:  # type: ignore[no-untyped-def]
    sent = searched_teapot(page, server)
    page.locator("#results li").first.get_by_role("button", name="More photos like").click()
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('photos like')")
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 160, steps=8)
    page.mouse.up()
    page.check("#close-only")  # within the pen-up search's 400 ms: the drawing is what is searched again
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('matches')")
    assert len(sent) == 1 and "min_similarity=" in sent[0]


def test_attention_overlays(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    page.check("#explain")
    draw_cat(page, page.locator("#pad").bounding_box())
    page.locator("#sketch-attention").wait_for(state="visible", timeout=30_000)
    # the committed model's attention is flat: the page says so rather than amplify noise
    assert "Attention is flat for the sketch and photos" in page.locator("#status").inner_text()
    box = page.locator("#sketch-attention").bounding_box()
    pad = page.locator("#pad").bounding_box()
    assert 0 < box["width"] < pad["width"] * 1.2  # framed on the drawing (top-left part of the canvas)
    heat = page.locator("#results li.explained .heat")
    assert heat.count() == 8
    assert float(heat.first.evaluate("h => getComputedStyle(h).opacity")) == 0  # hidden until hovered
    page.locator("#results li.explained").first.hover()
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('#results li.explained .heat')).opacity > 0.5"
    )
    if SCREENSHOTS.parts:
        page.screenshot(path=str(SCREENSHOTS / "screenshot-explain.png"))


def test_keyboard_undo_clear_search(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server + "/")
    draw_cat(page, page.locator("#pad").bounding_box())
    page.wait_for_selector("#results li", timeout=30_000)
    assert page.evaluate("strokes.length") == 8
    page.keyboard.press("Control+z")
    assert page.evaluate("strokes.length") == 7
    page.keyboard.press("Meta+z")
    assert page.evaluate("strokes.length") == 6
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('matches')")
    page.evaluate("document.querySelector('#status').textContent = ''")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('matches')")
    page.keyboard.press("Escape")
    assert page.evaluate("strokes.length") == 0
    assert page.locator("#results li").count() == 0 and page.locator("#guesses").is_hidden()


def test_drawing_with_a_finger_on_a_phone(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        page.goto(server + "/")
        pad = page.locator("#pad").bounding_box()
        assert pad["x"] >= 0 and pad["x"] + pad["width"] <= 390  # the canvas fits the phone's width
        page.evaluate(
            "window.kinds = []; pad.addEventListener('pointerdown', e => kinds.push(e.pointerType))"
        )
        cdp = context.new_cdp_session(page)

        def touch(kind: str, points: list[tuple[float, float]]) -> None:
            cdp.send(
                "Input.dispatchTouchEvent",
                {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in points]},
            )

        x0, y0, side = pad["x"], pad["y"], pad["width"]
        circle = [
            (0.5 + 0.3 * math.cos(t / 24 * 2 * math.pi), 0.5 + 0.3 * math.sin(t / 24 * 2 * math.pi))
            for t in range(25)
        ]
        for stroke in (circle, [(0.3, 0.3), (0.7, 0.7)]):
            points = [(x0 + u * side, y0 + v * side) for u, v in stroke]
            touch("touchStart", points[:1])
            for p in points[1:]:
                touch("touchMove", [p])
            touch("touchEnd", [])
        page.wait_for_selector("#results li", timeout=30_000)
        assert page.evaluate("kinds") == ["touch", "touch"]  # real touch input, not a mouse
        assert page.evaluate("strokes.length") == 2 and page.evaluate("strokes[0].points.length") > 10
        columns = page.locator("#results").evaluate(
            "r => getComputedStyle(r).gridTemplateColumns.split(' ').length"
        )
        assert columns == 2  # the grid reflows to two columns on a phone
        if SCREENSHOTS.parts:
            page.screenshot(path=str(SCREENSHOTS / "screenshot-phone.png"))
    finally:
        context.close()


STATUS_SAYS = "(words) => document.querySelector('#admin-status').textContent.includes(words)"


def test_the_admin_page_says_what_it_did_once_its_tables_are_redrawn(
    server: str, page, sketchy: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A gallery made or photos uploaded from the page: the status said so, then the tables' refresh
    wrote "Signed in. N galleries." over it at once. A folder without photos is said too."""
    (tmp_path / "empty").mkdir()
    page.goto(server + "/admin/")
    page.fill("#token", TOKEN)
    page.get_by_role("button", name="Use token").click()
    page.wait_for_selector("#galleries tr", timeout=10_000)
    page.fill("#new-name", "nothing-here")
    page.fill("#new-source", str(tmp_path / "empty"))
    page.get_by_role("button", name="Create").click()
    # the row is drawn after refresh() set its own status: what is said from here on is what stays
    page.wait_for_selector("#galleries tr:has-text('nothing-here')", timeout=10_000)
    page.wait_for_function(STATUS_SAYS, arg="created", timeout=5_000)
    status = page.locator("#admin-status").inner_text()
    assert status.startswith("Gallery “nothing-here” created. ") and "holds no photos" in status, status
    # the picker offers every format an upload takes: a phone's HEIC photos were hidden by it
    offered = page.locator("#upload-files").get_attribute("accept").split(",")
    assert sorted(offered) == sorted(IMAGE_EXTENSIONS)
    photo = sorted((sketchy / "photo" / "tx_000000000000" / "fish").glob("*.jpg"))[0]
    page.select_option("#upload-gallery", "nothing-here")
    page.set_input_files("#upload-files", str(photo))
    page.fill("#upload-label", "fish")
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_selector("#galleries tr:has-text('nothing-here'):has-text('1 photo')", timeout=10_000)
    page.wait_for_function(STATUS_SAYS, arg="Uploaded", timeout=5_000)
    assert (
        page.locator("#admin-status")
        .inner_text()
        .startswith("Uploaded 1 new photo, labelled “fish”, to “nothing-here”")
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete nothing-here").click()
    page.wait_for_function("() => !document.querySelector('#galleries').textContent.includes('nothing-here')")


def test_admin_history_and_delete(server: str, page, sketchy: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{server}/admin/galleries", json={"name": "scratch"}, headers=auth).status_code == 201
    photo = sorted((sketchy / "photo" / "tx_000000000000" / "fish").glob("*.jpg"))[0]
    files = [("files", (photo.name, photo.read_bytes(), "image/jpeg"))]
    assert (
        httpx.post(f"{server}/admin/galleries/scratch/images", files=files, headers=auth).status_code == 201
    )
    page.goto(server + "/admin/")
    page.fill("#token", TOKEN)
    page.get_by_role("button", name="Use token").click()
    page.wait_for_selector("#galleries tr", timeout=10_000)
    assert page.locator("#admin-status").inner_text() == "Signed in. 2 galleries."
    assert "1 photo" in page.locator("#galleries tr", has_text="scratch").inner_text()
    page.get_by_role("button", name="Reindex scratch").click()
    page.wait_for_function(
        "() => document.querySelector('#job-text').textContent.includes('succeeded')", timeout=60_000
    )
    row = page.locator("#jobs tr").first
    row.wait_for()
    page.wait_for_function("() => document.querySelector('#jobs tr').textContent.includes('scratch')")
    text = row.inner_text()
    assert "succeeded" in text and "1 of 1 photo" in text and " s" in text
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete scratch").click()
    page.wait_for_function("() => document.querySelector('#admin-status').textContent.includes('deleted')")
    assert page.locator("#admin-status").inner_text() == "Gallery “scratch” deleted (1 photo)."
    page.wait_for_function("() => !document.querySelector('#galleries').textContent.includes('scratch')")
    assert httpx.get(f"{server}/admin/galleries", headers=auth).json()[0]["name"] == "demo"
