"""Shared fixtures: real data from ../shared, real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SKETCHY, make_tiny_checkpoint
from tests.postgres import create_database, find_pg_bin, postgres_server


def _required(what: str) -> None:
    """In CI a missing prerequisite is a failure, not a skip: a skipped test proves nothing."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session", autouse=True)
def shared_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every app and server of the session reuses one ONNX export per checkpoint (keyed by checksum),
    as a deployment does across restarts; exporting for each test's fresh data dir costs seconds."""
    folder = tmp_path_factory.mktemp("onnx")
    previous = os.environ.get("SKETCH_ONNX_CACHE_DIR")
    os.environ["SKETCH_ONNX_CACHE_DIR"] = str(folder)
    yield
    if previous is None:
        os.environ.pop("SKETCH_ONNX_CACHE_DIR", None)
    else:
        os.environ["SKETCH_ONNX_CACHE_DIR"] = previous


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
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
