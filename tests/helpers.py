"""Helpers shared by the test modules (fixtures live in conftest.py; no test imports another test file)."""

from __future__ import annotations

import io
import os
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app.main import create_app
from benchmarks.common import wait_until_serving  # noqa: F401  (the tests' own, shared with the benchmarks)
from catalog.builder import GalleryBuilder
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.settings import load_settings
from model.factory import load_encoder

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SKETCH_SHARED_DIR", REPO.parent / "shared"))
SKETCHY = SHARED / "data" / "sketchy-subset"
CHECKPOINT = REPO / "checkpoints" / "cscan-sketchy-64.safetensors"
TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    what: str,
    timeout: float = 120,
    every: float = 0.2,
    ignoring: tuple[type[Exception], ...] = (),
    until: Callable[[T], object] = bool,
) -> T:
    """``check()``'s first answer that ``until`` accepts (the first truthy one), asked every ``every``
    seconds: the tests' one polling loop. Errors in ``ignoring`` count as not yet (a server still
    starting). AssertionError saying ``what`` was awaited, and the last answer, after ``timeout``
    seconds; an assertion in ``check`` (a process that died meanwhile) fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            last = answer = check()
        except ignoring as exc:
            last = exc
        else:
            if until(answer):
                return answer
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}; last: {last!r}"
        time.sleep(every)


def photos_of(sketchy: Path, classes: tuple[str, ...], dest: Path, per_class: int = 25) -> list[Path]:
    """Copy a few classes' real photos into a scratch gallery folder (in tmp, never the repository)."""
    copied = []
    for cls in classes:
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for src in sorted((sketchy / "photo" / "tx_000000000000" / cls).glob("*.jpg"))[:per_class]:
            copied.append(Path(shutil.copy(src, dest / cls / src.name)))
    return copied


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def sketch_png() -> bytes:
    """A small hand-made drawing on a transparent canvas, as the search page sends it."""
    image = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 60, 200, 180), outline=(0, 0, 0, 255), width=4)
    draw.line((60, 180, 40, 260), fill=(0, 0, 0, 255), width=4)
    return png_bytes(image)


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims a huge size: must be refused before decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)  # a little real data; the header promises far more
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def error_code(response: Any) -> str:
    """The error code of a JSON error answer, after checking it has exactly the documented shape."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return str(body["error"]["code"])


def job_finished(job: dict[str, Any]) -> bool:
    """Whether a job (as GET /admin/jobs/{id} answers) has succeeded or failed."""
    return job["state"] in ("succeeded", "failed")


def wait_for_job(client: TestClient, job_id: int, timeout: float = 120) -> dict[str, Any]:
    """The job once it has finished (``job_finished``); the timeout's message shows it as it last was."""
    return wait_until(
        lambda: client.get(f"/admin/jobs/{job_id}", headers=AUTH).json(),
        f"job {job_id} to finish",
        timeout,
        every=0.1,
        until=job_finished,
    )


def make_client(tmp_path: Path, checkpoint: Path, url: str | None = None, **overrides: Any) -> TestClient:
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=url,
        checkpoint=checkpoint,
        admin_token=TOKEN,
        index_poll_seconds=0.2,
        **overrides,
    )
    return TestClient(create_app(settings))


def build(client: TestClient, checkpoint: Path, name: str, source: Path) -> None:
    state = client.app.state.service  # type: ignore[attr-defined]
    GalleryBuilder(
        state.settings, state.sessions, load_encoder(checkpoint, "cpu"), show_progress=False
    ).build(name, source)
    state.indexes.refresh()


def migrated_sessions(url: str):  # type: ignore[no-untyped-def]
    """A session factory on a database brought to the latest schema."""
    migrate.upgrade(url)
    return make_session_factory(make_engine(url))


def make_tiny_checkpoint(path: Path) -> Path:
    """A real, untrained CSCAN at 64 px with Canny edges: fast enough to exercise indexing mechanics."""
    import torch

    from model.checkpoint import Checkpoint, save_checkpoint
    from model.config import ModelConfig
    from model.cscan import CSCAN

    torch.manual_seed(0)
    config = ModelConfig(image_size=64, num_classes=3, class_names=["a", "b", "c"], edge_detector="canny")
    save_checkpoint(path, Checkpoint(config, CSCAN(config, pretrained=False).state_dict()))
    return path
