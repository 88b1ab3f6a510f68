"""Refining a search through the API: class guesses, the label filter, "more like this", attention heat
maps, job history and deleting a gallery. The real app, the committed checkpoint, real photos."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import event, func, select

from catalog.builder import gallery_dir
from catalog.db.models import Gallery, ImageRecord, IndexVersion, Job
from catalog.locks import gallery_lock
from tests.helpers import (
    AUTH,
    CHECKPOINT,
    SHARED,
    build,
    error_code,
    make_client,
    migrated_sessions,
    photos_of,
    sketch_png,
    wait_for_job,
)

CLASSES = ("cat", "teapot", "bicycle", "airplane", "fish")
PER_CLASS = 8


def test_sketches(label: str) -> list[Path]:
    """Dev test sketches of a class (never trained on), read from ../shared at test time."""
    lines = (Path(__file__).parent.parent / "splits" / "sketchy_test_sketches.txt").read_text().splitlines()
    return [SHARED / "data" / line.split(" ")[0] for line in lines if line.endswith(f" {label}")]


test_sketches.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, sketchy: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("refine")
    source = tmp / "photos"
    photos_of(sketchy, CLASSES, source, per_class=PER_CLASS)
    with make_client(tmp, CHECKPOINT, default_gallery="demo") as c:
        build(c, CHECKPOINT, "demo", source)
        yield c


def search(client: TestClient, png: bytes, query: str = "") -> dict:
    r = client.post(f"/search?{query}", files={"file": ("s.png", png, "image/png")})
    assert r.status_code == 200, r.text
    return r.json()


# -- "looks like" ------------------------------------------------------------------------------------
def test_guesses_name_what_a_real_sketch_shows(client: TestClient) -> None:
    hits = 0
    sketches = test_sketches("teapot")
    for path in sketches:
        guesses = search(client, path.read_bytes())["guesses"]
        assert len(guesses) == 5
        probabilities = [g["probability"] for g in guesses]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
        hits += guesses[0]["label"] == "teapot"
    assert hits >= len(sketches) - 1, hits  # the checkpoint's classes, from its own classifier


def test_label_filter_keeps_only_that_class(client: TestClient) -> None:
    png = test_sketches("teapot")[0].read_bytes()
    plain = search(client, png, "k=24")
    assert plain["label"] is None and len({m["label"] for m in plain["results"]}) > 1
    body = search(client, png, "k=24&label=cat")
    assert body["label"] == "cat"
    assert [m["label"] for m in body["results"]] == ["cat"] * PER_CLASS  # every cat, nothing else
    assert [m["rank"] for m in body["results"]] == list(range(1, PER_CLASS + 1))
    distances = [m["distance"] for m in body["results"]]
    assert distances == sorted(distances)
    # a label no photo carries is refused with its own code, never a silent empty page
    r = client.post("/search?label=no_such_class", files={"file": ("s.png", png, "image/png")})
    assert r.status_code == 422 and error_code(r) == "unknown_label"
    assert "'no_such_class'" in r.json()["error"]["message"] and "teapot" in r.json()["error"]["message"]


@pytest.mark.parametrize("value", ["", "x" * 257])
def test_bad_label_is_422(client: TestClient, value: str) -> None:
    r = client.post(f"/search?label={value}", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_gallery_without_labels_does_not_filter(client: TestClient, sketchy: Path, tmp_path: Path) -> None:
    assert client.post("/admin/galleries", json={"name": "mine"}, headers=AUTH).status_code == 201
    photos = sorted((sketchy / "photo" / "tx_000000000000" / "cat").glob("*.jpg"))[:3]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    assert client.post("/admin/galleries/mine/images", files=files, headers=AUTH).status_code == 201
    job = wait_for_job(client, client.post("/admin/galleries/mine/reindex", headers=AUTH).json()["job_id"])
    assert job["state"] == "succeeded", job
    client.app.state.service.indexes.refresh()  # type: ignore[attr-defined]
    body = search(client, sketch_png(), "gallery=mine&label=cat")
    assert body["label"] is None and len(body["results"]) == 3


# -- more like this ---------------------------------------------------------------------------------
def test_more_like_this(client: TestClient) -> None:
    teapot = search(client, test_sketches("teapot")[0].read_bytes(), "k=1")["results"][0]
    r = client.post(f"/search/similar/{teapot['image_id']}?k=6")
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [m["image_id"] for m in body["results"]]
    assert len(ids) == 6 and teapot["image_id"] not in ids and body["guesses"] == []
    assert [m["hamming_distance"] for m in body["results"]] == sorted(
        m["hamming_distance"] for m in body["results"]
    )
    assert all(m["distance"] == m["hamming_distance"] for m in body["results"])  # its own bits as the query
    assert sum(m["label"] == "teapot" for m in body["results"]) >= 4
    only = client.post(f"/search/similar/{teapot['image_id']}?label=teapot&k=50").json()["results"]
    assert len(only) == PER_CLASS - 1 and {m["label"] for m in only} == {"teapot"}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/search/similar/999999", 404, "unknown_image"),
        ("/search/similar/0", 422, "invalid_request"),
        ("/search/similar/99999999999", 422, "invalid_request"),
        ("/search/similar/abc", 422, "invalid_request"),
        ("/search/similar/1?k=0", 422, "invalid_request"),
        ("/search/similar/1?k=101", 422, "invalid_request"),
    ],
)
def test_more_like_this_bad_input(client: TestClient, path: str, status: int, code: str) -> None:
    r = client.post(path)
    assert r.status_code == status and error_code(r) == code


def test_more_like_this_of_a_photo_not_yet_indexed(client: TestClient, sketchy: Path) -> None:
    assert client.post("/admin/galleries", json={"name": "fresh"}, headers=AUTH).status_code == 201
    fish = sorted((sketchy / "photo" / "tx_000000000000" / "fish").glob("*.jpg"))
    image_id = upload(client, "fresh", fish[0])
    r = client.post(f"/search/similar/{image_id}")
    assert r.status_code == 409 and error_code(r) == "no_index"
    wait_for_job(client, client.post("/admin/galleries/fresh/reindex", headers=AUTH).json()["job_id"])
    client.app.state.service.indexes.refresh()  # type: ignore[attr-defined]
    late = upload(client, "fresh", fish[1])
    r = client.post(f"/search/similar/{late}")
    assert r.status_code == 409 and error_code(r) == "not_indexed"
    assert client.post(f"/search/similar/{image_id}").status_code == 200


# -- why this match ---------------------------------------------------------------------------------
def decode_uri(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_explain_returns_heat_maps(client: TestClient) -> None:
    metrics = client.app.state.service.metrics  # type: ignore[attr-defined]
    stage = metrics.stage.labels("explain")

    def explained() -> float:
        metrics.settle()  # stages are recorded once an answer has gone out
        return float(stage._sum.get())

    before = explained()
    plain = search(client, sketch_png(), "k=12")
    assert plain["explanation"] is None and all(m["attention"] is None for m in plain["results"])
    assert explained() == before  # a plain search computes no explanation
    body = search(client, sketch_png(), "k=12&explain=1")
    assert explained() > before
    sketch = body["explanation"]
    image = decode_uri(sketch["png"])
    assert image.mode == "RGBA" and image.size == (48, 48)
    assert 0 <= sketch["mask_min"] <= sketch["mask_max"] <= 1
    # the committed model's masks are flat to 1e-3: reported as such, drawn as an even tint
    assert sketch["uniform"] == (sketch["mask_max"] - sketch["mask_min"] < 0.05)
    left, top, side = sketch["box"]
    # the drawing of sketch_png() spans x 40..200, y 60..260 of a 400 px canvas: the box frames it
    assert (sketch["width"], sketch["height"]) == (400, 400)
    assert left < 40 and top < 60 and left + side > 200 and top + side > 260 and side < 260
    explained = [m for m in body["results"] if m["attention"] is not None]
    assert [m["rank"] for m in explained] == list(range(1, 9))  # the top 8
    state = client.app.state.service  # type: ignore[attr-defined]
    with state.sessions() as session:
        for match in explained:
            row = session.get(ImageRecord, match["image_id"])
            heat = decode_uri(match["attention"]["png"])
            assert max(heat.size) == 48
            # cropped to the photo's own area: the heat map has the photo's shape
            assert abs(heat.width / heat.height - row.width / row.height) < 0.1
            assert len(match["attention"]["png"]) < 8000


def test_explain_is_one_at_a_time(client: TestClient) -> None:
    state = client.app.state.service  # type: ignore[attr-defined]
    with state.explain_slots:  # another explanation is running
        r = client.post("/search?explain=1", files={"file": ("s.png", sketch_png(), "image/png")})
        assert r.status_code == 429 and error_code(r) == "busy" and r.headers["Retry-After"] == "1"
        plain = client.post("/search", files={"file": ("s.png", sketch_png(), "image/png")})
        assert plain.status_code == 200  # plain searches are not held up
    assert search(client, sketch_png(), "explain=1")["explanation"] is not None


def test_explain_bad_value(client: TestClient) -> None:
    r = client.post("/search?explain=maybe", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_explain_without_attention_is_409(tmp_path: Path, sketchy: Path) -> None:
    import torch

    from model.checkpoint import Checkpoint, save_checkpoint
    from model.config import ModelConfig
    from model.cscan import CSCAN

    torch.manual_seed(0)
    config = ModelConfig(
        image_size=64, num_classes=2, class_names=["a", "b"], edge_detector="canny", use_attention=False
    )
    checkpoint = tmp_path / "plain.safetensors"
    save_checkpoint(checkpoint, Checkpoint(config, CSCAN(config, pretrained=False).state_dict()))
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=3)
    with make_client(tmp_path, checkpoint) as c:
        build(c, checkpoint, "demo", source)
        r = c.post("/search?explain=1", files={"file": ("s.png", sketch_png(), "image/png")})
        assert r.status_code == 409 and error_code(r) == "no_attention"
        assert c.post("/search", files={"file": ("s.png", sketch_png(), "image/png")}).status_code == 200


# -- admin: history and delete ----------------------------------------------------------------------
def test_job_history(client: TestClient) -> None:
    job_id = client.post("/admin/galleries/demo/reindex", headers=AUTH).json()["job_id"]
    wait_for_job(client, job_id)
    r = client.get("/admin/jobs?gallery=demo", headers=AUTH)
    assert r.status_code == 200, r.text
    jobs = r.json()
    assert jobs[0]["id"] == job_id and jobs[0]["gallery"] == "demo" and jobs[0]["state"] == "succeeded"
    assert jobs[0]["duration_s"] >= 0 and jobs[0]["total"] == len(CLASSES) * PER_CLASS
    assert all(j["gallery"] == "demo" for j in jobs)
    assert [j["id"] for j in client.get("/admin/jobs?limit=1", headers=AUTH).json()] == [
        max(j["id"] for j in jobs)
    ]
    assert error_code(client.get("/admin/jobs?gallery=nope", headers=AUTH)) == "unknown_gallery"
    assert client.get("/admin/jobs?limit=0", headers=AUTH).status_code == 422
    assert client.get("/admin/jobs").status_code == 401


@pytest.fixture
def deletable(tmp_path: Path, sketchy: Path, tiny_checkpoint: Path) -> Iterator[tuple[TestClient, Path]]:
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat", "teapot"), source, per_class=4)
    with make_client(tmp_path, tiny_checkpoint) as c:
        build(c, tiny_checkpoint, "doomed", source)
        yield c, source


def upload(client: TestClient, gallery: str, photo: Path) -> int:
    files = [("files", (photo.name, photo.read_bytes(), "image/jpeg"))]
    r = client.post(f"/admin/galleries/{gallery}/images", files=files, headers=AUTH)
    assert r.status_code == 201, r.text
    return int(r.json()["images"][0]["image_id"])


def test_delete_gallery(deletable: tuple[TestClient, Path], sketchy: Path) -> None:
    client, source = deletable
    state = client.app.state.service  # type: ignore[attr-defined]
    photos = sorted((sketchy / "photo" / "tx_000000000000" / "fish").glob("*.jpg"))
    only_here, shared = photos[0], photos[1]
    upload(client, "doomed", only_here)
    upload(client, "doomed", shared)
    assert client.post("/admin/galleries", json={"name": "keeper"}, headers=AUTH).status_code == 201
    upload(client, "keeper", shared)
    with state.sessions() as session:
        stored = dict(
            session.execute(
                select(ImageRecord.sha256, ImageRecord.stored_path).where(ImageRecord.origin == "upload")
            ).all()
        )
    with state.sessions() as session:
        doomed_id = session.scalar(select(Gallery.id).where(Gallery.name == "doomed"))
    index_folder = gallery_dir(state.settings, "doomed")
    assert index_folder.is_dir()
    source_files = sorted(p.name for p in source.rglob("*"))

    r = client.delete("/admin/galleries/doomed", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"gallery": "doomed", "images_removed": 10}
    assert not index_folder.exists()
    assert sorted(p.name for p in source.rglob("*")) == source_files  # the source folder is the user's
    paths = set(stored.values())
    kept = [p for p in paths if Path(p).exists()]
    assert len(paths) == 2 and len(kept) == 1  # the photo "keeper" also holds stays
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Gallery).where(Gallery.name == "doomed")) == 0
        for table in (ImageRecord, IndexVersion, Job):
            rows = session.scalar(
                select(func.count()).select_from(table).where(table.gallery_id == doomed_id)
            )
            assert rows == 0, table
    search = client.post("/search?gallery=doomed", files={"file": ("s.png", sketch_png(), "image/png")})
    assert search.status_code == 404 and error_code(search) == "unknown_gallery"
    assert error_code(client.delete("/admin/galleries/doomed", headers=AUTH)) == "unknown_gallery"
    assert client.get("/admin/galleries", headers=AUTH).json()[0]["name"] == "keeper"


def test_delete_refused_while_a_build_runs(deletable: tuple[TestClient, Path]) -> None:
    client, _ = deletable
    state = client.app.state.service  # type: ignore[attr-defined]
    with gallery_lock(state.settings.lock_dir, "doomed"):
        r = client.delete("/admin/galleries/doomed", headers=AUTH)
    assert r.status_code == 409 and error_code(r) == "gallery_busy"
    assert (
        client.post(
            "/search?gallery=doomed", files={"file": ("s.png", sketch_png(), "image/png")}
        ).status_code
        == 200
    )


def test_failed_delete_loses_nothing(deletable: tuple[TestClient, Path]) -> None:
    client, _ = deletable
    state = client.app.state.service  # type: ignore[attr-defined]
    folder = gallery_dir(state.settings, "doomed")
    files = sorted(p.relative_to(folder) for p in folder.rglob("*"))

    def fail(session) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("the database went away at commit")

    event.listen(state.sessions, "before_commit", fail)
    try:
        with pytest.raises(RuntimeError):
            client.delete("/admin/galleries/doomed", headers=AUTH)
    finally:
        event.remove(state.sessions, "before_commit", fail)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == files  # moved back
    state.indexes.refresh()
    r = client.post("/search?gallery=doomed", files={"file": ("s.png", sketch_png(), "image/png")})
    assert r.status_code == 200 and len(r.json()["results"]) == 8


def test_heat_maps_amplify_structure_not_noise() -> None:
    import numpy as np

    from model.explain import heatmap_png

    def alpha(mask: np.ndarray) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(heatmap_png(mask))))[..., 3].astype(int)

    flat = 1 - np.random.default_rng(0).random((16, 16)) * 1e-3  # a saturated mask, as trained
    assert np.ptp(alpha(flat)) <= 2  # an even tint
    peaked = np.full((16, 16), 0.2)
    peaked[4:8, 4:8] = 0.9  # real structure
    a = alpha(peaked)
    assert a[16:20, 16:20].mean() > a[40:, 40:].mean() + 100  # where the mask is high, the map is strong


@pytest.mark.postgres
def test_nul_characters_are_refused_not_500_on_postgres(
    tmp_path: Path, sketchy: Path, tiny_checkpoint: Path, postgres_url: str
) -> None:
    """Found by Schemathesis: PostgreSQL refuses a NUL in a query parameter, which surfaced as a 500."""
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=3)
    migrated_sessions(postgres_url)
    with make_client(tmp_path, tiny_checkpoint, url=postgres_url) as c:
        build(c, tiny_checkpoint, "demo", source)
        png = {"file": ("s.png", sketch_png(), "image/png")}
        cases = [
            (c.get("/admin/jobs?gallery=%02%00", headers=AUTH), 404, "unknown_gallery"),
            (c.delete("/admin/galleries/a%00b", headers=AUTH), 404, "unknown_gallery"),
            (c.post("/admin/galleries/a%00b/reindex", headers=AUTH), 404, "unknown_gallery"),
            (c.post("/search?gallery=a%00b", files=png), 404, "unknown_gallery"),
            (c.post("/search?label=a%00b", files=png), 422, "invalid_request"),
            (c.post("/search/similar/1?label=%00"), 422, "invalid_request"),
        ]
        for response, status, code in cases:
            assert (response.status_code, error_code(response)) == (status, code), response.text
