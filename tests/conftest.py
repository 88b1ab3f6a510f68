"""Shared fixtures: real data from ../shared, real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import create_database, find_pg_bin, postgres_server

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SKETCH_SHARED_DIR", REPO.parent / "shared"))
SKETCHY = SHARED / "data" / "sketchy-subset"
CHECKPOINT = REPO / "checkpoints" / "cscan-sketchy-64.safetensors"


def _required(what: str) -> None:
    """In CI a missing prerequisite is a failure, not a skip: a skipped test proves nothing."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def sketchy() -> Path:
    if not (SKETCHY / "splits" / "photos.txt").exists():
        _required(f"the Sketchy subset at {SKETCHY}")
    return SKETCHY


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    if find_pg_bin() is None:
        _required("PostgreSQL (initdb)")
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    return create_database(postgres_server_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, untrained CSCAN at 64 px with Canny edges: fast enough to exercise indexing mechanics."""
    import torch

    from model.checkpoint import Checkpoint, save_checkpoint
    from model.config import ModelConfig
    from model.cscan import CSCAN

    torch.manual_seed(0)
    config = ModelConfig(image_size=64, num_classes=3, class_names=["a", "b", "c"], edge_detector="canny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, Checkpoint(config, CSCAN(config, pretrained=False).state_dict()))
    return path


def photos_of(sketchy: Path, classes: tuple[str, ...], dest: Path, per_class: int = 25) -> list[Path]:
    """Copy a few classes' real photos into a scratch gallery folder (in tmp, never the repository)."""
    import shutil

    copied = []
    for cls in classes:
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for src in sorted((sketchy / "photo" / "tx_000000000000" / cls).glob("*.jpg"))[:per_class]:
            copied.append(Path(shutil.copy(src, dest / cls / src.name)))
    return copied
