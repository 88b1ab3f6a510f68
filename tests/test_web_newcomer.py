"""A newcomer's first hour (issue 25) in real headless Chromium (Debian's package) driven by Playwright,
against the real server with the committed model and real photos: the docs with the network cut off,
chips for kinds the gallery lacks, an uploaded sketch on the canvas, and a failed search that leaves
nothing of the previous answer behind."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image, ImageDraw

from tests.browser import chromium, served_demo
from tests.helpers import SHARED, TOKEN

CLASSES = ("cat", "teapot", "bicycle", "airplane", "fish")
PER_CLASS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sketchy: Path) -> Iterator[str]:
    with served_demo(
        tmp_path_factory.mktemp("web-newcomer"), sketchy, CLASSES, PER_CLASS, admin_token=TOKEN
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    with chromium() as b:
        yield b


@pytest.fixture
def offline(browser):  # type: ignore[no-untyped-def]
    """A page whose every request to another host than 127.0.0.1 is refused, and recorded."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    left: list[str] = []

    def only_this_machine(route) -> None:  # type: ignore[no-untyped-def]
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_this_machine)
    page = context.new_page()
    page.left = left
    yield page
    context.close()


def tu_berlin(kind: str) -> Path:
    """A sketch drawn from memory, read in place from ../shared."""
    return sorted((SHARED / "data" / "tu-berlin-40" / "sketch" / kind).glob("*.png"))[0]


def test_docs_render_offline_and_nothing_leaves_the_machine(server: str, offline) -> None:  # type: ignore[no-untyped-def]
    spec = offline.request.get(server + "/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    offline.goto(server + "/docs")
    offline.wait_for_function(f"() => document.querySelectorAll('.opblock').length === {operations}")
    assert "/search/similar/{image_id}" in offline.locator("#swagger-ui").inner_text()
    offline.goto(server + "/")
    offline.set_input_files("#upload", str(tu_berlin("cat")))
    offline.wait_for_selector("#results li img", timeout=30_000)
    offline.goto(server + "/admin/")
    offline.locator("#admin-status").wait_for()
    assert "make demo" in offline.locator("#admin-status").inner_text()  # says where the token comes from
    assert offline.left == []


def test_the_docs_page_tries_admin_calls_with_the_token_given_once(server: str, offline) -> None:  # type: ignore[no-untyped-def]
    """Swagger UI's Authorize button takes the admin token and sends it with every admin call tried out.
    The token was a header field named Authorization, which Swagger UI leaves out: every call was 401."""
    offline.goto(server + "/docs")
    offline.click("button.authorize")
    offline.fill(".modal-ux input", TOKEN)
    offline.click(".modal-ux .auth-btn-wrapper button.authorize")
    offline.click(".modal-ux button.btn-done")
    operation = offline.locator("#operations-admin-list_galleries_admin_galleries_get")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"
    assert (
        '"name": "demo"'
        in operation.locator(".live-responses-table .response .response-col_description").inner_text()
    )
    assert offline.left == []


def test_chips_mark_the_kinds_the_gallery_has_no_photos_of(server: str, offline) -> None:  # type: ignore[no-untyped-def]
    offline.goto(server + "/")
    offline.set_input_files(
        "#upload", str(tu_berlin("mermaid"))
    )  # a kind the model knows, not in the gallery
    chips = offline.locator("#guesses .chip")
    chips.first.wait_for(timeout=30_000)
    shown = chips.evaluate_all(
        "cs => cs.map(c => ({label: c.dataset.label, disabled: c.disabled, text: c.textContent}))"
    )
    assert len(shown) == 5
    for chip in shown:
        has_photos = chip["label"] in CLASSES
        assert chip["disabled"] == (not has_photos), chip
        assert ("none here" in chip["text"]) == (not has_photos), chip
    assert any(c["disabled"] for c in shown), shown  # the mermaid's guesses reach past the five kinds here
    status = offline.locator("#status").inner_text()
    chips.filter(has_text="none here").first.click(force=True)  # a disabled chip searches nothing
    time.sleep(0.5)
    assert offline.locator("#status").inner_text() == status and offline.evaluate("label") is None


def sketch_file(tmp_path: Path) -> Path:
    """A wide PNG (black ring on white): on the square canvas it must be centred with bands above and
    below."""
    image = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(image).ellipse((150, 50, 250, 150), outline="black", width=8)
    path = tmp_path / "ring.png"
    image.save(path)
    return path


def canvas_alpha_and_ink(page, x: int, y: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The canvas pixel at (x, y) in its own 512x512 pixels: (alpha, darkness 0..255)."""
    rgba = page.evaluate(f"Array.from(pad.getContext('2d').getImageData({x}, {y}, 1, 1).data)")
    return rgba[3], 255 - min(rgba[:3])


def test_an_uploaded_sketch_lands_on_the_canvas_and_can_be_drawn_on(
    server: str, offline, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    offline.goto(server + "/")
    ring = sketch_file(tmp_path)
    with offline.expect_request(lambda r: r.url.startswith(server + "/search")) as first:
        offline.set_input_files("#upload", str(ring))
    # the file itself is searched, sent as the whole body
    assert first.value.post_data_buffer == ring.read_bytes()
    assert first.value.headers["content-type"] == "image/png"
    offline.wait_for_selector("#results li", timeout=30_000)
    # 400x200 scaled to fit 512 wide: 512x256, centred, so rows 128..383; the ring's left edge is at
    # x = 150 * 1.28 = 192 on the middle row
    assert canvas_alpha_and_ink(offline, 256, 60)[0] == 0  # above the sketch: the canvas' own blank
    assert canvas_alpha_and_ink(offline, 256, 200)[0] == 255  # inside the sketch's white paper
    assert canvas_alpha_and_ink(offline, 195, 256) == (255, 255)  # the ring's stroke, black
    assert canvas_alpha_and_ink(offline, 256, 256) == (255, 0)  # the ring's inside, white
    # a stroke on top: the next search sends the canvas, sketch and stroke together
    box = offline.locator("#pad").bounding_box()
    scale = box["width"] / 512
    with offline.expect_request(lambda r: r.url.startswith(server + "/search"), timeout=30_000) as second:
        offline.mouse.move(box["x"] + 230 * scale, box["y"] + 256 * scale)
        offline.mouse.down()
        offline.mouse.move(box["x"] + 290 * scale, box["y"] + 256 * scale, steps=5)
        offline.mouse.up()
    sent = Image.open(io.BytesIO(second.value.post_data_buffer)).convert("RGBA")
    assert sent.size == (512, 512)
    assert sent.getpixel((195, 256)) == (0, 0, 0, 255)  # the uploaded ring, still there
    assert sent.getpixel((260, 256))[:3] == (0, 0, 0)  # the new stroke across the ring's inside
    assert sent.getpixel((256, 60))[3] == 0  # the bands outside the sketch stay transparent
    offline.wait_for_function("() => document.querySelector('#status').textContent.includes('matches')")
    with offline.expect_request(lambda r: r.url.startswith(server + "/search")) as third:
        offline.keyboard.press("Control+z")  # undo the stroke: the upload alone is searched again, as it is
    assert third.value.post_data_buffer == ring.read_bytes()
    assert canvas_alpha_and_ink(offline, 195, 256) == (255, 255) and offline.evaluate("strokes.length") == 0


def test_a_failed_search_leaves_nothing_of_the_previous_answer(server: str, offline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    offline.goto(server + "/")
    offline.set_input_files("#upload", str(tu_berlin("cat")))
    chip = offline.locator("#guesses .chip:not([disabled])").first
    chip.wait_for(timeout=30_000)
    chip.click()
    offline.wait_for_function("() => document.querySelector('#status').textContent.includes('showing only')")
    assert offline.locator("#guesses .chip[aria-pressed=true]").count() == 1
    # a JPEG under a .png name: the server refuses it
    photo = sorted((SHARED / "data" / "sketchy-subset" / "photo" / "tx_000000000000" / "cat").glob("*.jpg"))[
        0
    ]
    fake = tmp_path / "photo.png"
    fake.write_bytes(photo.read_bytes())
    offline.set_input_files("#upload", str(fake))
    offline.locator("#status.error").wait_for(timeout=30_000)
    assert "the sketch must be a PNG image" in offline.locator("#status").inner_text()
    assert offline.locator("#results li").count() == 0
    assert offline.locator("#guesses .chip").count() == 0
    assert offline.evaluate("label") is None  # the old chip's filter does not ride along on the next search
    assert offline.locator("#warnings li").count() == 0


def cutoff_of(url: str) -> float | None:
    """The min_similarity a request asked for, if any."""
    values = parse_qs(urlsplit(url).query).get("min_similarity")
    return float(values[0]) if values else None


def test_only_close_matches_says_how_many_it_hid(server: str, offline) -> None:  # type: ignore[no-untyped-def]
    offline.goto(server + "/")
    with offline.expect_response(lambda r: r.url.startswith(server + "/search")) as first:
        offline.set_input_files("#upload", str(tu_berlin("cat")))
    every = first.value.json()["results"]
    offline.wait_for_selector("#results li", timeout=30_000)
    assert offline.locator("#cutoff-note").is_hidden() and len(every) == 24
    # a cutoff between the answer's own similarities, so that some photos stay and some go
    # whole percents at or below each similarity: rounding 0.90625 up to 91 would drop the photos it came from
    percents = sorted({math.floor(m["similarity"] * 100) for m in every if m["similarity"] >= 0.5})
    assert len(percents) > 1, percents
    percent = percents[len(percents) // 2]  # above the lowest, so that photos at the lowest go
    with offline.expect_response(lambda r: cutoff_of(r.url) == 0.85, timeout=30_000):
        offline.check("#close-only")  # on, at the slider's default
    with offline.expect_response(lambda r: cutoff_of(r.url) == percent / 100, timeout=30_000) as cut:
        offline.locator("#min-similarity").fill(str(percent))
    body = cut.value.json()
    assert body["min_similarity"] == percent / 100
    kept = [m["image_id"] for m in every if m["similarity"] >= percent / 100]
    assert [m["image_id"] for m in body["results"]] == kept and 0 < len(kept) < 24
    offline.wait_for_function(f"() => document.querySelectorAll('#results li').length === {len(kept)}")
    hidden = 24 - len(kept)
    note = offline.locator("#cutoff-note")
    assert note.is_visible()
    expected = "1 less similar photo" if hidden == 1 else f"{hidden} less similar photos"
    assert note.inner_text() == f"Only close matches ({percent}% similar or more): {expected} hidden."
    # off again: every match comes back and the note goes
    with offline.expect_response(lambda r: r.url.startswith(server + "/search"), timeout=30_000) as again:
        offline.uncheck("#close-only")
    assert cutoff_of(again.value.url) is None and len(again.value.json()["results"]) == 24
    offline.wait_for_function("() => document.querySelectorAll('#results li').length === 24")
    assert note.is_hidden()
