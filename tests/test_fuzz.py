"""Schemathesis against the real server process on PostgreSQL, with and without the admin token.

Its checks have teeth because OpenAPI documents every error answer: no 5xx, no status, content type,
header or body the schema does not declare, 405 with a correct Allow header. Sized for CI (a few
hundred generated requests per run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import free_port
from catalog.builder import GalleryBuilder
from catalog.settings import load_settings
from model.factory import load_encoder
from tests.helpers import TOKEN, migrated_sessions, photos_of, wait_until_serving

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "allow_header_conformance",
        "unsupported_method",
        "missing_required_header",
    )
)
BIN = Path(sys.executable).parent


@pytest.fixture  # one server per run: the run with the token may delete the gallery (DELETE is fuzzed too)
def server(
    tmp_path_factory: pytest.TempPathFactory, sketchy: Path, tiny_checkpoint: Path, postgres_server_url: str
) -> Iterator[str]:
    from tests.postgres import create_database

    tmp = tmp_path_factory.mktemp("fuzz")
    url = create_database(postgres_server_url)
    settings = load_settings(data_dir=tmp / "data", database_url=url, checkpoint=tiny_checkpoint)
    sessions = migrated_sessions(url)
    photos_of(sketchy, ("cat", "teapot"), tmp / "photos", per_class=5)
    encoder = load_encoder(tiny_checkpoint, "cpu")
    GalleryBuilder(settings, sessions, encoder, show_progress=False).build("demo", tmp / "photos")
    port = free_port()
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(tmp / "data"),
        "SKETCH_DATABASE_URL": url,
        "SKETCH_CHECKPOINT": str(tiny_checkpoint),
        "SKETCH_ADMIN_TOKEN": TOKEN,
        "SKETCH_EMBEDDED_WORKER": "false",
    }
    log = open(tmp / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "sketch-server"), "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, proc, log=tmp / "server.log")
    yield base
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def schemathesis(base: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--no-color",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_schemathesis_finds_nothing_with_the_admin_token(server: str) -> None:
    result = schemathesis(server, "--header", f"Authorization: Bearer {TOKEN}")
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.mark.postgres
@pytest.mark.slow
def test_schemathesis_finds_nothing_without_a_token(server: str) -> None:
    result = schemathesis(server)
    assert result.returncode == 0, result.stdout[-6000:]
