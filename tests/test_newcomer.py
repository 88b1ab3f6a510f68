"""A newcomer's first hour (issue 25), outside the browser: `make demo` (the port checked first, an admin
token made for the demo), quiet start-up logs, the favicon, metrics for the pages, the docs' assets
served from the package, guesses that say whether the gallery has that kind, and unknown labels refused.
The real Makefile, server, app, SQLite, FAISS and photos."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from benchmarks.common import free_port
from tests.helpers import (
    AUTH,
    CHECKPOINT,
    REPO,
    build,
    error_code,
    make_client,
    photos_of,
    sketch_png,
    wait_for_job,
    wait_until_serving,
)

MAKE = shutil.which("make") or "/usr/bin/make"
NOISE = ("Could not load library", "ModuleNotFoundError", "setup plugin", "Traceback", "ERROR")


def test_the_license_is_an_spdx_expression() -> None:
    """setuptools deprecates `project.license` as a table (and warns on every install)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


# -- make demo --------------------------------------------------------------------------------------
def demo_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SKETCH_ADMIN_TOKEN"}
    return {**env, "SKETCH_DATA_DIR": str(data_dir), **extra}


def test_make_demo_with_the_port_taken_fails_at_once_and_names_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [MAKE, "-C", str(REPO), "demo", f"PORT={port}"],
            env=demo_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode != 0 and took < 5, (took, out)
    assert f"port {port} on 127.0.0.1 is taken" in out and f"make demo PORT={port + 1}" in out, out
    # refused before any long work: nothing installed, migrated or indexed
    assert "indexer" not in out and "pip" not in out and not (tmp_path / "data").exists()


@pytest.fixture
def demo_gallery(tmp_path: Path, sketchy: Path) -> Path:
    photos_of(sketchy, ("cat", "teapot"), tmp_path / "gallery", per_class=3)
    return tmp_path / "gallery"


@contextmanager
def run_demo(gallery: Path, data_dir: Path, log: Path, **env: str) -> Iterator[str]:
    """`make demo` in its own process group, until the page answers; yields its base URL."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [MAKE, "-C", str(REPO), "demo", f"PORT={port}", f"GALLERY={gallery}"],
            env=demo_env(data_dir, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, proc, timeout=300, log=log)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_make_demo_serves_with_a_token_it_prints_once_and_starts_quietly(
    tmp_path: Path, demo_gallery: Path
) -> None:
    log = tmp_path / "demo.log"
    with run_demo(demo_gallery, tmp_path / "data", log) as base:
        out = log.read_text()
        tokens = re.findall(r"with the token (\S+)", out)
        assert len(tokens) == 1, out  # printed once
        token = tokens[0]
        assert httpx.get(f"{base}/admin/galleries").status_code == 401
        answer = httpx.get(f"{base}/admin/galleries", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json()[0]["name"] == "demo"
        assert httpx.get(f"{base}/favicon.ico").status_code == 200
        with httpx.Client(base_url=base) as client:  # one connection: a HEAD body sent would corrupt it
            found = client.post("/search?k=1", content=sketch_png(), headers={"Content-Type": "image/png"})
            photo = found.json()["results"][0]["url"]
            for url in (photo, "/healthz", photo):
                head = client.head(url)
                got = client.get(url)
                assert head.status_code == got.status_code == 200 and head.content == b""
                assert (
                    head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
                )
    out = log.read_text()
    noisy = [line for line in out.splitlines() if any(n in line for n in NOISE)]
    assert not noisy, noisy  # nothing that reads like an error when nothing is wrong
    assert "FAISS" in out and "built with" in out  # the FAISS build is named instead, once
    assert "Context impl" not in out and "Will assume" not in out  # Alembic greeting at each check


def test_make_demo_keeps_a_token_that_is_set(tmp_path: Path, demo_gallery: Path) -> None:
    log, mine = tmp_path / "demo.log", "my-own-demo-admin-token"
    with run_demo(demo_gallery, tmp_path / "data", log, SKETCH_ADMIN_TOKEN=mine) as base:
        answer = httpx.get(f"{base}/admin/galleries", headers={"Authorization": f"Bearer {mine}"})
        assert answer.status_code == 200
    out = log.read_text()
    assert "with the token" not in out and "with your SKETCH_ADMIN_TOKEN" in out, out


# -- the app: favicon, docs, metrics, labels ----------------------------------------------------------
class Assets(HTMLParser):
    """Every URL a page loads by itself: scripts, styles, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        url = found.get("src") if tag == "script" else found.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


@pytest.fixture
def labelled(tmp_path: Path, tiny_checkpoint: Path, sketchy: Path) -> Iterator[TestClient]:
    """The tiny checkpoint knows classes a, b and c; the gallery has photos labelled a and b only."""
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat", "teapot"), source, per_class=3)
    (source / "cat").rename(source / "a")
    (source / "teapot").rename(source / "b")
    with make_client(tmp_path, tiny_checkpoint) as client:
        build(client, tiny_checkpoint, "demo", source)
        yield client


def test_docs_load_their_assets_from_this_server(labelled: TestClient) -> None:
    assert labelled.get("/redoc").status_code == 404  # ReDoc's page fetches its logo from the internet
    for page in ("/docs", "/", "/admin/"):
        html = labelled.get(page)
        assert html.status_code == 200
        parser = Assets()
        parser.feed(html.text)
        assert parser.urls, page
        for url in parser.urls:
            assert url.startswith("/") and not url.startswith("//"), (page, url)  # no CDN
            assert labelled.get(url).status_code == 200, (page, url)


def test_favicon_and_metrics_name_the_pages(labelled: TestClient) -> None:
    icon = labelled.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/vnd.microsoft.icon"
    for path in ("/", "/app.js", "/admin/", "/no-such-page", "/also-missing"):
        labelled.get(path)
    text = labelled.get("/metrics").text
    for route in ("/", "/app.js", "/admin/", "/favicon.ico"):
        assert f'sketch_requests_total{{method="GET",route="{route}",status="200"}} 1.0' in text, route
    # a made-up path adds no label of its own
    assert 'route="unmatched",status="404"} 2.0' in text and "no-such-page" not in text
    # nor does another spelling of a page's path, though the page is served from it
    for path in ("/%2e/app.js", "/a1/%2e%2e/app.js", "/app.js//", "/%2e/admin/"):
        assert labelled.get(path).status_code == 200, path
    text = labelled.get("/metrics").text
    assert 'route="unmatched",status="200"} 4.0' in text
    assert 'route="/app.js",status="200"} 1.0' in text and "a1" not in text and 'route="/./' not in text


def test_guesses_say_whether_the_gallery_has_that_kind(labelled: TestClient) -> None:
    body = labelled.post("/search", files={"file": ("s.png", sketch_png(), "image/png")}).json()
    assert {g["label"]: g["in_gallery"] for g in body["guesses"]} == {"a": True, "b": True, "c": False}


def test_a_label_the_gallery_lacks_is_422_unknown_label(labelled: TestClient) -> None:
    png = {"file": ("s.png", sketch_png(), "image/png")}
    for label in ("c", "nonsense"):  # a class the model knows, and a made-up one
        r = labelled.post(f"/search?label={label}", files=png)
        assert r.status_code == 422 and error_code(r) == "unknown_label"
        assert r.json()["error"]["message"] == (
            f"no photo in gallery 'demo' is labelled '{label}'; its labels are a, b"
        )
    image_id = labelled.post("/search", files=png).json()["results"][0]["image_id"]
    r = labelled.post(f"/search/similar/{image_id}?label=c")
    assert r.status_code == 422 and error_code(r) == "unknown_label"
    only_a = labelled.post("/search?label=a&k=50", files=png).json()
    assert only_a["label"] == "a" and [m["label"] for m in only_a["results"]] == ["a"] * 3


def test_a_gallery_without_labels_filters_nothing_and_has_no_kind(
    labelled: TestClient, sketchy: Path
) -> None:
    assert labelled.post("/admin/galleries", json={"name": "mine"}, headers=AUTH).status_code == 201
    photos = sorted((sketchy / "photo" / "tx_000000000000" / "fish").glob("*.jpg"))[:2]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    assert labelled.post("/admin/galleries/mine/images", files=files, headers=AUTH).status_code == 201
    job = labelled.post("/admin/galleries/mine/reindex", headers=AUTH).json()["job_id"]
    assert wait_for_job(labelled, job)["state"] == "succeeded"
    labelled.app.state.service.indexes.refresh()  # type: ignore[attr-defined]
    png = {"file": ("s.png", sketch_png(), "image/png")}
    body = labelled.post("/search?gallery=mine&label=a", files=png).json()
    assert body["label"] is None and len(body["results"]) == 2
    assert [g["in_gallery"] for g in body["guesses"]] == [False, False, False]


def test_openapi_documents_the_new_fields_and_errors(labelled: TestClient) -> None:
    spec = labelled.get("/openapi.json").json()
    assert "in_gallery" in spec["components"]["schemas"]["ClassGuess"]["required"]
    label = next(p for p in spec["paths"]["/search"]["post"]["parameters"] if p["name"] == "label")
    assert "422 unknown_label" in label["description"]


# -- the relevance cutoff ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, sketchy: Path) -> Iterator[TestClient]:
    """The committed model (the tiny one gives every photo one code) on three kinds, four photos each."""
    tmp = tmp_path_factory.mktemp("cutoff")
    photos_of(sketchy, ("teapot", "cat", "bicycle"), tmp / "photos", per_class=4)
    with make_client(tmp, CHECKPOINT) as client:
        build(client, CHECKPOINT, "demo", tmp / "photos")
        yield client


def test_the_cutoff_keeps_what_reaches_the_reported_similarity(trained: TestClient, sketchy: Path) -> None:
    teapot = sorted((sketchy / "sketch" / "tx_000000000000" / "teapot").glob("*.png"))[-1]
    png = {"file": ("s.png", teapot.read_bytes(), "image/png")}
    full = trained.post("/search?k=12", files=png).json()
    similarities = [m["similarity"] for m in full["results"]]
    assert full["min_similarity"] is None and full["below_cutoff"] == 0 and len(set(similarities)) > 1
    for cutoff in [*sorted(set(similarities)), 0.0, 1.0]:
        body = trained.post(f"/search?k=12&min_similarity={cutoff}", files=png).json()
        expected = [m["image_id"] for m in full["results"] if m["similarity"] >= cutoff]
        assert [m["image_id"] for m in body["results"]] == expected  # the same order, less the rest
        assert [m["rank"] for m in body["results"]] == list(range(1, len(expected) + 1))
        assert body["below_cutoff"] == 12 - len(expected) and body["min_similarity"] == cutoff
    # "more like this" takes it too
    first = full["results"][0]["image_id"]
    alike = trained.post(f"/search/similar/{first}?k=5").json()["results"]
    cutoff = sorted({m["similarity"] for m in alike})[-1]
    body = trained.post(f"/search/similar/{first}?k=5&min_similarity={cutoff}").json()
    assert [m["image_id"] for m in body["results"]] == [
        m["image_id"] for m in alike if m["similarity"] >= cutoff
    ]
    assert body["below_cutoff"] == sum(m["similarity"] < cutoff for m in alike) > 0


@pytest.mark.parametrize("value", ["-0.1", "1.5", "close", "nan"])
def test_a_cutoff_off_the_similarity_scale_is_422(labelled: TestClient, value: str) -> None:
    r = labelled.post(f"/search?min_similarity={value}", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 422 and error_code(r) == "invalid_request"
    r = labelled.post(f"/search/similar/1?min_similarity={value}")
    assert r.status_code == 422 and error_code(r) == "invalid_request"
