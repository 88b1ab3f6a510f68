"""The real FastAPI app with real SQLite/PostgreSQL, FAISS, photos and sketches from ../shared."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.requests import Request
from starlette.types import Message

from app.errors import APIError
from app.main import StartupError, create_app, prepare_database
from app.routers.search import sketch_bytes
from benchmarks.search_load import totals as metric_totals
from benchmarks.search_load import where_the_mean_goes
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.settings import load_settings
from tests.helpers import (
    AUTH,
    TOKEN,
    build,
    error_code,
    make_client,
    photos_of,
    png_bomb_header,
    png_bytes,
    sketch_png,
    wait_for_job,
    wait_until,
)

CLASSES = ("cat", "teapot", "bicycle")


@pytest.fixture
def gallery_source(tmp_path: Path, sketchy: Path) -> Path:
    source = tmp_path / "photos"
    photos_of(sketchy, CLASSES, source, per_class=10)
    return source


@pytest.fixture
def client(tmp_path: Path, tiny_checkpoint: Path, gallery_source: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, tiny_checkpoint, max_upload_bytes=300_000) as c:
        build(c, tiny_checkpoint, "demo", gallery_source)
        yield c


# -- search ----------------------------------------------------------------------------------------
def test_search_returns_ranked_results(client: TestClient) -> None:
    r = client.post("/search?k=7", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["gallery"] == "demo" and body["bits"] == 64 and body["took_ms"] > 0
    results = body["results"]
    assert [m["rank"] for m in results] == list(range(1, 8))
    distances = [m["distance"] for m in results]
    assert distances == sorted(distances)  # re-ranked by the asymmetric distance
    for m in results:
        # the score of the ranking itself: 1 - asymmetric distance / bits (so it falls as the rank grows)
        assert m["similarity"] == pytest.approx(1 - m["distance"] / 64, abs=1e-4)
        assert m["label"] in CLASSES and m["url"] == f"/images/{m['image_id']}"


def test_the_sketch_as_the_whole_body_is_searched_as_the_form_field_is(client: TestClient) -> None:
    sketch = sketch_png()
    form = client.post("/search?k=7", files={"file": ("s.png", sketch, "image/png")})
    raw = client.post("/search?k=7", content=sketch, headers={"Content-Type": "image/png"})
    assert form.status_code == raw.status_code == 200, raw.text

    def ranked(r: httpx.Response) -> list[tuple[int, float]]:
        return [(m["image_id"], m["distance"]) for m in r.json()["results"]]

    assert len(ranked(raw)) == 7 and ranked(raw) == ranked(form)
    # Any other type (or none) is read as the body too: what the bytes are decides, not the header.
    bare = client.post("/search?k=7", content=sketch, headers={"Content-Type": "application/octet-stream"})
    assert bare.status_code == 200 and ranked(bare) == ranked(form)
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(sketch)).convert("RGB").save(jpeg, "JPEG")
    r = client.post("/search", content=jpeg.getvalue(), headers={"Content-Type": "image/png"})
    assert r.status_code == 415 and error_code(r) == "not_png"


def test_a_search_without_a_sketch_says_how_to_send_one(client: TestClient) -> None:
    for r in (
        client.post("/search", data={"nofile": "x"}),  # a url-encoded form
        client.post("/search", files={"other": ("s.png", sketch_png(), "image/png")}),  # multipart
        client.post("/search", content=b"", headers={"Content-Type": "image/png"}),
        client.post("/search"),
    ):
        assert r.status_code == 422 and error_code(r) == "no_sketch", r.text
        assert "form field 'file'" in r.json()["error"]["message"]
        assert "Content-Type image/png" in r.json()["error"]["message"]
    # an empty file is no sketch, as an empty body is (it was 415 not_png)
    r = client.post("/search", files={"file": ("s.png", b"", "image/png")})
    assert r.status_code == 422 and error_code(r) == "no_sketch" and "field 'file' is empty" in r.text
    # curl --data-binary without -H 'Content-Type: image/png' sends a url-encoded form: the answer says so
    r = client.post(
        "/search", content=sketch_png(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 422 and error_code(r) == "no_sketch"
    assert "sent as a url-encoded form (Content-Type is not image/png)" in r.json()["error"]["message"]
    # ... however many '&' bytes the PNG holds (FastAPI parsed the form first: 400 "Too many fields")
    ampersands = b"\x89PNG\r\n\x1a\n" + b"&" * 1500
    r = client.post(
        "/search", content=ampersands, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 422 and error_code(r) == "no_sketch"


def test_the_api_documents_both_ways_to_send_the_sketch(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/search"]["post"]["requestBody"]
    assert body["required"] is True and set(body["content"]) == {"multipart/form-data", "image/png"}
    assert body["content"]["image/png"]["schema"] == {"type": "string", "contentMediaType": "image/png"}
    # the form's field is a file (Swagger UI offers a file picker), not "a file or null"
    field = body["content"]["multipart/form-data"]["schema"]["properties"]["file"]
    assert (field["type"], field["contentMediaType"]) == ("string", "application/octet-stream")
    assert "anyOf" not in field


def test_a_sketch_upload_the_client_abandons_is_no_server_error() -> None:
    """The page aborts a search in flight when a newer one starts: a body cut short is the client's
    doing (400), never a 500 with a traceback in the log."""

    async def cut_short() -> Message:
        return {"type": "http.disconnect"}

    for content_type in (b"image/png", b"multipart/form-data; boundary=b"):
        headers = [(b"content-type", content_type), (b"content-length", b"5000")]
        scope = {"type": "http", "method": "POST", "path": "/search", "headers": headers}
        with pytest.raises(APIError) as raised:
            asyncio.run(sketch_bytes(Request(scope, cut_short)))
        assert (raised.value.status, raised.value.code) == (400, "incomplete_body"), content_type


def stage_totals(client: TestClient) -> dict[str, tuple[float, float]]:
    """(seconds summed, observations) per search stage, and as "request" the /search route's latency,
    read as the load benchmark reads them."""
    read = metric_totals(client.get("/metrics").text)
    return {**read.stages, "request": read.search}


def stage_count(client: TestClient, stage: str) -> float:
    return stage_totals(client).get(stage, (0.0, 0.0))[1]


def test_more_like_this_rankings_are_measured_like_searches(client: TestClient) -> None:
    """/search/similar ranked without recording its stages, so its scans, database fetches and
    inexact rankings were missing from /metrics."""
    image_id = client.post("/search?k=1", files={"file": ("s.png", sketch_png(), "image/png")}).json()[
        "results"
    ][0]["image_id"]
    before = {stage: stage_count(client, stage) for stage in ("scan", "rerank", "fetch")}
    assert client.post(f"/search/similar/{image_id}?k=5").status_code == 200
    assert {stage: stage_count(client, stage) - before[stage] for stage in before} == {
        "scan": 1,
        "rerank": 1,
        "fetch": 1,
    }


def test_a_search_is_timed_once_in_every_stage_of_its_path_and_they_fit_in_its_latency(
    client: TestClient,
) -> None:
    """The waits for the network and the thread hand-offs were measured by no stage: a lone search's
    /metrics left a millisecond or more unaccounted for. Every stage now counts the search once, and
    the stages are disjoint parts of the request (their sum fits in its latency)."""
    client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")})  # warm
    before = stage_totals(client)
    assert client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")}).status_code == 200
    after = stage_totals(client)
    path = ("decode", "preprocess", "wait", "encode", "scan", "rerank", "fetch", "handoff")
    assert {
        stage: after.get(stage, (0.0, 0.0))[1] - before.get(stage, (0.0, 0.0))[1] for stage in path
    } == dict.fromkeys(path, 1.0)
    spent = sum(after[stage][0] - before.get(stage, (0.0, 0.0))[0] for stage in after if stage != "request")
    latency = after["request"][0] - before["request"][0]
    assert 0 < spent <= latency


def test_a_sketch_waiting_for_the_network_keeps_only_the_photo_check_s_small_ink_map(
    client: TestClient,
) -> None:
    """The full ink map (17 MB for a 2048 px sketch) was held until after the network, only for the
    photo check, which reads it at most 256 px across: a flood of large sketches held it per search."""
    from app.search_service import encode_sketch

    big = Image.open(io.BytesIO(sketch_png())).resize((1600, 1600))
    state = client.app.state.service  # type: ignore[attr-defined]

    def kept_shape(image: Image.Image) -> tuple[int, ...]:
        return asyncio.run(encode_sketch(state, png_bytes(image), lambda _s, photo_ink: photo_ink.shape))[1]

    shape = kept_shape(big)
    assert shape == (256, 256)
    small = Image.open(io.BytesIO(sketch_png())).resize((200, 120))
    shape = kept_shape(small)
    assert shape == (120, 200)  # smaller than that: the map itself


def test_the_load_benchmark_splits_a_search_into_parts_that_add_up() -> None:
    stages = {"decode_ms_mean": 0.3, "preprocess_ms_mean": 1.0, "wait_ms_mean": 0.01, "encode_ms_mean": 6.0}
    stages |= {"scan_ms_mean": 1.3, "rerank_ms_mean": 0.4, "fetch_ms_mean": 0.3, "handoff_ms_mean": 0.2}
    parts = where_the_mean_goes(11.0, 10.1, {**stages, "explain_ms_mean": 50.0})  # explain: other searches
    assert parts == {
        "encode": 6.0,
        "scan": 1.3,
        "other_stages": 2.21,
        "outside_the_stages": 0.59,
        "http_and_client": 0.9,
    }
    assert sum(parts.values()) == pytest.approx(11.0)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"\xff\xd8\xff\xe0" + b"0" * 100, 415, "not_png"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, 422, "unreadable_sketch"),
        (png_bomb_header(), 413, "too_many_pixels"),
        (png_bytes(Image.new("RGBA", (300, 300), (0, 0, 0, 0))), 422, "blank_sketch"),
        (png_bytes(Image.new("RGB", (300, 300), "white")), 422, "blank_sketch"),
    ],
    ids=["jpeg-renamed-png", "corrupt-png", "png-bomb", "blank-transparent", "blank-white"],
)
def test_search_rejects_bad_sketches(client: TestClient, payload: bytes, status: int, code: str) -> None:
    r = client.post("/search", files={"file": ("sketch.png", payload, "image/png")})
    assert r.status_code == status and error_code(r) == code


def test_real_jpeg_renamed_png_is_415(client: TestClient, gallery_source: Path) -> None:
    jpeg = next(gallery_source.rglob("*.jpg")).read_bytes()
    r = client.post("/search", files={"file": ("cat.png", jpeg, "image/png")})
    assert r.status_code == 415 and error_code(r) == "not_png"


def test_a_sketch_over_the_upload_limit_is_413_inside_the_room_left_for_a_form(client: TestClient) -> None:
    """SKETCH_MAX_UPLOAD_BYTES is the largest sketch (README); the body limit allows 64 KiB more for a
    form around it, and a sketch inside that room was read and searched (a 300,010-byte PNG here)."""
    over = b"\x89PNG\r\n\x1a\n" + b"0" * 300_002  # the limit is 300,000 bytes in these tests
    for r in (
        client.post("/search", content=over, headers={"Content-Type": "image/png"}),
        client.post("/search", files={"file": ("s.png", over, "image/png")}),
    ):
        assert r.status_code == 413 and error_code(r) == "too_large"
        assert (
            r.json()["error"]["message"]
            == "the sketch is 300010 bytes; the most is 300000 (SKETCH_MAX_UPLOAD_BYTES)"
        )


def test_oversized_body_is_413(client: TestClient) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"0" * 600_000
    r = client.post("/search", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and error_code(r) == "too_large"
    r = client.post("/search", content=big, headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and error_code(r) == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: found out while it streams in
        yield from (big[i : i + 65536] for i in range(0, len(big), 65536))

    r = client.post("/search", content=chunks(), headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and error_code(r) == "too_large"
    boundary = "sketch-boundary"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def form_chunks() -> Iterator[bytes]:  # a form streamed in: the form parser meets the limit
        yield from (form[i : i + 65536] for i in range(0, len(form), 65536))

    form_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = client.post("/search", content=form_chunks(), headers=form_type)
    assert r.status_code == 413 and error_code(r) == "too_large"
    # each counted as the 413 the client got, under its route: refused on the declared length before
    # the router saw it, or found out while streaming in (not the form parser's 400, nor a server error)
    text = client.get("/metrics").text
    assert 'sketch_requests_total{method="POST",route="/search",status="413"} 4.0' in text
    assert 'status="500"' not in text and 'status="400"' not in text


def test_an_admin_request_refused_before_routing_is_counted_under_its_route(client: TestClient) -> None:
    r = client.post("/admin/galleries", json={"name": "x"})
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    r = client.post("/admin/galleries", json={"name": "x"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    text = client.get("/metrics").text
    assert 'sketch_requests_total{method="POST",route="/admin/galleries",status="401"} 2.0' in text
    # a made-up path still cannot grow the label set
    assert client.post("/admin/galleries/x/made-up").status_code in (404, 405)
    assert "made-up" not in client.get("/metrics").text


def test_bad_parameters_and_unknown_gallery(client: TestClient) -> None:
    files = {"file": ("s.png", sketch_png(), "image/png")}
    for query in ("k=0", "k=101", "k=ten"):
        r = client.post(f"/search?{query}", files=files)
        assert r.status_code == 422 and error_code(r) == "invalid_request"
    r = client.post("/search?gallery=nope", files=files)
    assert r.status_code == 404 and error_code(r) == "unknown_gallery"


def test_gallery_without_index_is_409(client: TestClient, tmp_path: Path) -> None:
    assert client.post("/admin/galleries", json={"name": "empty"}, headers=AUTH).status_code == 201
    r = client.post("/search?gallery=empty", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 409 and error_code(r) == "no_index"
    assert "indexer build --gallery empty" in r.json()["error"]["message"]
    # two galleries now, one with an index: a search naming none still searches that one (it was
    # 422 gallery_required as soon as a second gallery was registered)
    r = client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 200 and r.json()["gallery"] == "demo"
    # two with an index: the search must name one, and is told which
    (tmp_path / "more").mkdir()
    shutil.copy(next((tmp_path / "photos").rglob("*.jpg")), tmp_path / "more")
    assert (
        client.post(
            "/admin/galleries", json={"name": "more", "source_dir": str(tmp_path / "more")}, headers=AUTH
        ).status_code
        == 201
    )
    job = wait_for_job(client, client.post("/admin/galleries/more/reindex", headers=AUTH).json()["job_id"])
    # one job reads the same alone as in the history: its gallery's name and how long it ran
    assert job["gallery"] == "more" and job["duration_s"] >= 0
    assert client.get("/admin/jobs?gallery=more", headers=AUTH).json() == [job]
    wait_until(
        lambda: {"name": "more", "indexed": True, "image_count": 1} in client.get("/galleries").json(),
        "more served",
    )
    r = client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 422 and error_code(r) == "gallery_required"
    assert r.json()["error"]["message"].endswith("(demo, more)")  # the searchable ones, not 'empty'


def test_busy_encoder_answers_429(client: TestClient) -> None:
    state = client.app.state.service  # type: ignore[attr-defined]
    state.batcher.max_pending = 1
    original = state.batcher.encode_batch
    state.batcher.encode_batch = lambda batch: (time.sleep(0.5), original(batch))[1]  # a slow encode
    statuses: list[int] = []

    def fire() -> None:
        statuses.append(
            client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")}).status_code
        )

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state.batcher.encode_batch = original
    assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}


# -- images ----------------------------------------------------------------------------------------
def test_a_gallery_registered_on_a_folder_without_photos_says_so(client: TestClient, tmp_path: Path) -> None:
    """Its reindex then succeeds with 0 photos and says nothing: the registration is where a mistyped
    folder can still be noticed."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a photo")
    r = client.post(
        "/admin/galleries", json={"name": "notes", "source_dir": str(tmp_path / "notes")}, headers=AUTH
    )
    assert r.status_code == 201 and [w["code"] for w in r.json()["warnings"]] == ["no_photos"]
    assert r.json()["warnings"][0]["message"].startswith(f"{tmp_path / 'notes'} holds no photos (JPEG, PNG")
    r = client.post(
        "/admin/galleries", json={"name": "photos", "source_dir": str(tmp_path / "photos")}, headers=AUTH
    )
    assert r.status_code == 201 and r.json()["warnings"] == []


def test_a_deleted_photo_leaves_the_gallery_s_count_at_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /galleries counts what a search can return: a photo deleted is gone from results at once,
    and from the count too (it stayed until the next reindex). The count, a scan of the version's
    rows, is made once for many page loads (the route is public)."""
    import app.photo_counts

    counted: list[list[int]] = []
    real = app.photo_counts.photos_held
    monkeypatch.setattr(
        app.photo_counts, "photos_held", lambda s, ids: counted.append(list(ids)) or real(s, ids)
    )
    for _ in range(3):
        assert client.get("/galleries").json() == [{"name": "demo", "indexed": True, "image_count": 30}]
    assert len(counted) <= 1  # once (or not at all: counted before the patch, within the last 10 s)
    found = client.post("/search?k=1", files={"file": ("s.png", sketch_png(), "image/png")}).json()
    assert client.delete(f"/admin/images/{found['results'][0]['image_id']}", headers=AUTH).status_code == 204
    assert client.get("/galleries").json()[0]["image_count"] == 29
    assert client.get("/admin/galleries", headers=AUTH).json()[0]["image_count"] == 29
    assert len(counted) <= 2


def test_images_and_thumbnails(client: TestClient) -> None:
    image_id = client.post("/search?k=1", files={"file": ("s.png", sketch_png(), "image/png")}).json()[
        "results"
    ][0]["image_id"]
    full = client.get(f"/images/{image_id}")
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    thumb = client.get(f"/images/{image_id}/thumbnail")
    assert thumb.status_code == 200
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert max(im.size) <= 256
    assert client.get(f"/images/{image_id}/thumbnail").content == thumb.content  # cached
    assert client.get("/images/999999").status_code == 404
    assert client.get("/images/../../etc/passwd").status_code == 404
    assert client.get("/images/abc").status_code == 422


# -- health ----------------------------------------------------------------------------------------
def test_health_ready_metrics_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["indexes"] == ["demo"]
    client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")})
    text = client.get("/metrics").text
    assert 'sketch_requests_total{method="POST",route="/search",status="200"}' in text
    for stage in ("decode", "preprocess", "encode", "scan", "rerank", "fetch"):
        assert f'sketch_search_stage_seconds_count{{stage="{stage}"}}' in text
    assert client.get("/docs").status_code == 200
    assert "/search" in client.get("/openapi.json").json()["paths"]


def test_not_ready_without_index(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False and r.json()["database"] is True


# -- admin -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "short"])
def test_admin_disabled_without_a_good_token(
    tmp_path: Path, tiny_checkpoint: Path, token: str | None
) -> None:
    settings = load_settings(data_dir=tmp_path / "d", checkpoint=tiny_checkpoint, admin_token=token)
    with TestClient(create_app(settings)) as c:
        r = c.get("/admin/galleries", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and error_code(r) == "admin_disabled"


def test_admin_auth(client: TestClient) -> None:
    assert client.get("/admin/galleries").status_code == 401
    r = client.get("/admin/galleries", headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    assert client.get("/admin/galleries", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    listed = client.get("/admin/galleries", headers=AUTH)
    assert listed.status_code == 200 and [g["name"] for g in listed.json()] == ["demo"]


def test_admin_galleries_uploads_and_reindex(client: TestClient, tmp_path: Path, sketchy: Path) -> None:
    galleries = client.get("/admin/galleries", headers=AUTH).json()
    assert galleries[0]["name"] == "demo" and galleries[0]["image_count"] == 30
    assert galleries[0]["active_version"]["count"] == 30
    assert client.post("/admin/galleries", json={"name": "demo"}, headers=AUTH).status_code == 409
    r = client.post(
        "/admin/galleries", json={"name": "x", "source_dir": str(tmp_path / "nope")}, headers=AUTH
    )
    assert r.status_code == 422 and error_code(r) == "bad_source_dir"
    assert client.post("/admin/galleries", json={"name": "../evil"}, headers=AUTH).status_code == 422

    photo = next((sketchy / "photo" / "tx_000000000000" / "zebra").glob("*.jpg")).read_bytes()
    bad = client.post(
        "/admin/galleries/demo/images",
        files=[
            ("files", ("z.jpg", photo, "image/jpeg")),
            ("files", ("bad.jpg", b"not an image", "image/jpeg")),
        ],
        headers=AUTH,
    )
    assert bad.status_code == 415 and "bad.jpg" in bad.json()["error"]["message"]
    assert client.get("/admin/galleries", headers=AUTH).json()[0]["image_count"] == 30  # nothing stored
    ok = client.post(
        "/admin/galleries/demo/images", files=[("files", ("z.jpg", photo, "image/jpeg"))], headers=AUTH
    )
    assert ok.status_code == 201
    uploaded = ok.json()["images"][0]
    again = client.post(
        "/admin/galleries/demo/images", files=[("files", ("z.jpg", photo, "image/jpeg"))], headers=AUTH
    )
    assert again.json()["images"][0] == {**uploaded, "duplicate": True}
    assert (
        client.post(
            "/admin/galleries/nope/images", files=[("files", ("z.jpg", photo, "image/jpeg"))], headers=AUTH
        ).status_code
        == 404
    )

    job_id = client.post("/admin/galleries/demo/reindex", headers=AUTH).json()["job_id"]
    job = wait_for_job(client, job_id)
    assert job["state"] == "succeeded" and job["processed"] == job["total"] == 31
    versions = client.get("/admin/index", headers=AUTH).json()[0]
    assert (
        versions["versions"][0]["count"] == 31
        and versions["serving_version"] == versions["versions"][0]["id"]
    )
    assert client.get(f"/images/{uploaded['image_id']}").status_code == 200

    # a labelled upload is found by its label once indexed (uploads were always unlabelled)
    zebra = sorted((sketchy / "photo" / "tx_000000000000" / "zebra").glob("*.jpg"))[1].read_bytes()
    labelled = client.post(
        "/admin/galleries/demo/images",
        files=[("files", ("z2.jpg", zebra, "image/jpeg"))],
        data={"label": " zebra "},
        headers=AUTH,
    )
    assert labelled.status_code == 201 and labelled.json()["images"][0]["label"] == "zebra"
    assert uploaded["label"] is None
    r = client.post(
        "/admin/galleries/demo/images",
        files=[("files", ("z3.jpg", zebra, "image/jpeg"))],
        data={"label": "  "},
        headers=AUTH,
    )
    assert r.status_code == 422 and error_code(r) == "invalid_request"
    wait_for_job(client, client.post("/admin/galleries/demo/reindex", headers=AUTH).json()["job_id"])
    found = client.post(
        "/search?label=zebra&k=5", files={"file": ("s.png", sketch_png(), "image/png")}
    ).json()
    assert found["label"] == "zebra" and [m["image_id"] for m in found["results"]] == [
        labelled.json()["images"][0]["image_id"]
    ]

    assert client.delete(f"/admin/images/{uploaded['image_id']}", headers=AUTH).status_code == 204
    assert client.delete(f"/admin/images/{uploaded['image_id']}", headers=AUTH).status_code == 404
    assert client.get(f"/images/{uploaded['image_id']}").status_code == 404
    found = client.post("/search?k=100", files={"file": ("s.png", sketch_png(), "image/png")}).json()[
        "results"
    ]
    assert uploaded["image_id"] not in {m["image_id"] for m in found}  # gone from results before the reindex
    assert client.get("/admin/jobs/99999", headers=AUTH).status_code == 404


def test_hot_swap_under_load(client: TestClient, gallery_source: Path, sketchy: Path) -> None:
    before = client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")}).json()[
        "index_version"
    ]
    photos_of(sketchy, ("zebra", "airplane"), gallery_source, per_class=10)
    stop = threading.Event()
    seen: list[tuple[int, int | None]] = []

    def hammer() -> None:
        while not stop.is_set():
            r = client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")})
            seen.append((r.status_code, r.json().get("index_version")))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    job = wait_for_job(client, client.post("/admin/galleries/demo/reindex", headers=AUTH).json()["job_id"])
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert job["state"] == "succeeded"
    assert seen and all(status == 200 for status, _ in seen)
    versions = {v for _, v in seen}
    assert before in versions and len(versions) == 2  # served the old, then the new, never an error


# -- databases and start-up ------------------------------------------------------------------------
def test_search_and_reindex_on_postgres(
    tmp_path: Path, tiny_checkpoint: Path, gallery_source: Path, postgres_url: str
) -> None:
    migrate.upgrade(postgres_url)
    with make_client(tmp_path, tiny_checkpoint, postgres_url) as c:
        assert (
            c.post(
                "/admin/galleries", json={"name": "pg", "source_dir": str(gallery_source)}, headers=AUTH
            ).status_code
            == 201
        )
        job = wait_for_job(c, c.post("/admin/galleries/pg/reindex", headers=AUTH).json()["job_id"])
        assert job["state"] == "succeeded" and job["total"] == 30
        r = c.post("/search?k=5", files={"file": ("s.png", sketch_png(), "image/png")})
        assert r.status_code == 200 and len(r.json()["results"]) == 5


def test_refuses_to_start_on_unmigrated_database(
    tmp_path: Path, tiny_checkpoint: Path, postgres_url: str
) -> None:
    settings = load_settings(data_dir=tmp_path / "d", database_url=postgres_url, checkpoint=tiny_checkpoint)
    with pytest.raises(StartupError, match=r"run 'indexer migrate' \(or 'alembic upgrade head'\) first"):
        prepare_database(settings)
    # the real server process refuses to start and says why
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(tmp_path / "d"),
        "SKETCH_DATABASE_URL": postgres_url,
        "SKETCH_CHECKPOINT": str(tiny_checkpoint),
    }
    server = Path(sys.executable).parent / "sketch-server"
    proc = subprocess.run([str(server), "--port", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "run 'indexer migrate' (or 'alembic upgrade head') first" in proc.stderr
    engine = make_engine(postgres_url)
    assert not migrate.is_at_head(engine)  # and it did not migrate a deployed database by itself
    make_session_factory(engine)


def test_invalid_settings_are_refused_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from catalog.settings import SettingsError

    monkeypatch.setenv("SKETCH_MAX_UPLOAD_BYTES", "-5")
    monkeypatch.setenv("SKETCH_DEVICE", "tpu")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "SKETCH_MAX_UPLOAD_BYTES" in message and "SKETCH_DEVICE" in message


def test_more_photos_than_the_per_request_limit_are_refused(client: TestClient) -> None:
    from app.admin_service import MAX_UPLOAD_FILES

    def photo(i: int) -> tuple[str, tuple[str, bytes, str]]:
        return ("files", (f"p{i}.png", png_bytes(Image.new("RGB", (8, 8), (i, 0, 0))), "image/png"))

    before = client.get("/admin/galleries", headers=AUTH).json()[0]["image_count"]
    r = client.post(
        "/admin/galleries/demo/images", files=[photo(i) for i in range(MAX_UPLOAD_FILES + 1)], headers=AUTH
    )
    assert r.status_code == 413 and error_code(r) == "too_many_files"
    assert client.get("/admin/galleries", headers=AUTH).json()[0]["image_count"] == before  # none stored
    r = client.post(
        "/admin/galleries/demo/images", files=[photo(i) for i in range(MAX_UPLOAD_FILES)], headers=AUTH
    )
    assert r.status_code == 201 and len(r.json()["images"]) == MAX_UPLOAD_FILES


def test_openapi_documents_typed_answers_and_error_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    error_ref = "#/components/schemas/ErrorResponse"

    def ref(route: str, method: str, status: str) -> str:
        content = paths[route][method]["responses"][status]["content"]["application/json"]["schema"]
        return str(content.get("$ref") or content.get("items", {}).get("$ref"))

    for status in ("400", "404", "409", "413", "415", "422", "429", "503"):
        assert ref("/search", "post", status) == error_ref
    assert ref("/admin/jobs/{job_id}", "get", "200") == "#/components/schemas/JobOut"
    assert ref("/admin/jobs/{job_id}", "get", "401") == error_ref
    assert ref("/admin/galleries", "get", "200") == "#/components/schemas/AdminGalleryStatus"
    assert schemas["JobOut"]["properties"]["state"]["$ref"] == "#/components/schemas/JobState"
    assert schemas["JobState"]["enum"] == ["queued", "running", "succeeded", "failed"]
    assert "distance" in schemas["Match"]["required"]
    # every error answer is documented in the shape it has, FastAPI's default 422 shape nowhere
    documented = [(path, method) for path, item in paths.items() for method, op in item.items()]
    assert not [
        (path, method) for path, method in documented if "HTTPValidationError" in str(paths[path][method])
    ]
    # the admin token is a bearer scheme (Swagger UI's Authorize button sends it), not a header field
    scheme = spec["components"]["securitySchemes"]["adminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer") and "SKETCH_ADMIN_TOKEN" in scheme[
        "description"
    ]
    for path, method in documented:
        operation = paths[path][method]
        assert operation.get("security") == ([{"adminToken": []}] if path.startswith("/admin") else None), (
            path
        )
        assert "authorization" not in [p["name"].lower() for p in operation.get("parameters", [])], path


def test_every_get_route_answers_head_as_get_does(client: TestClient) -> None:
    """RFC 9110 §9.1: a server that answers GET answers HEAD (curl -I, uptime monitors, a load
    balancer's probe). FastAPI's routes answered 405; the body is the server's to drop (the real
    server's answer: test_newcomer's make demo test)."""
    image_id = client.post("/search?k=1", files={"file": ("s.png", sketch_png(), "image/png")}).json()[
        "results"
    ][0]["image_id"]
    for url, headers in (
        ("/healthz", {}),
        ("/readyz", {}),
        ("/galleries", {}),
        (f"/images/{image_id}", {}),
        (f"/images/{image_id}/thumbnail", {}),
        ("/admin/galleries", AUTH),
    ):
        got, head = client.get(url, headers=headers), client.head(url, headers=headers)
        assert head.status_code == got.status_code == 200, url
        for name in ("content-type", "content-length"):
            assert head.headers[name] == got.headers[name], (url, name)
    r = client.head("/admin/galleries")  # the token is checked before the route runs, as for GET
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.head("/images/999999").status_code == 404
    r = client.put("/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    r = client.head("/search")  # POST only
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    # HEAD is implied by GET: the schema lists each operation once
    assert not [path for path, item in client.get("/openapi.json").json()["paths"].items() if "head" in item]
    text = client.get("/metrics").text
    assert 'sketch_requests_total{method="HEAD",route="/images/{image_id}",status="200"} 1.0' in text
    assert 'sketch_requests_total{method="HEAD",route="/admin/galleries",status="401"} 1.0' in text
    # FastAPI's own /docs page answers GET only: its HEAD is a 405 counted like any other method's
    assert client.head("/docs").status_code == 405
    assert 'route="/docs",status="405"' not in client.get("/metrics").text
