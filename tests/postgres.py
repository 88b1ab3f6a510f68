"""A throwaway PostgreSQL server on loopback for tests: initdb into a temp dir, run as an unprivileged
user when we are root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchmarks.common import free_port
from tests.helpers import wait_until

UNPRIVILEGED_USER = "nobody"


@dataclass
class ServerControl:
    """Stop and start a test server in place (same data, same port): a database outage on demand."""

    stop: Callable[[], None]
    start: Callable[[], None]


CONTROLS: dict[str, ServerControl] = {}  # server URL -> its control


def find_pg_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _run(cmd: list[str], as_user: str | None) -> None:
    if as_user:
        cmd = ["runuser", "-u", as_user, "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a superuser URL (postgresql+psycopg://postgres@127.0.0.1:PORT/postgres)."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb) not found")
    user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="sketch-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if user:
        shutil.chown(base, user)
        shutil.chown(sock, user)
    port = free_port()
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(pg_bin / "pg_ctl"), "-D", str(data)]

    def start() -> None:
        _run([*pg_ctl, "-o", opts, "-w", "-t", "60", "-l", str(base / "log"), "start"], user)

        def connects() -> bool:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres").close()
            return True

        wait_until(connects, "PostgreSQL to accept connections", 30, ignoring=(psycopg.OperationalError,))

    def stop() -> None:
        _run([*pg_ctl, "-m", "immediate", "-w", "stop"], user)

    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        _run([str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], user)
        start()
        CONTROLS[url] = ServerControl(stop, start)
        yield url
    finally:
        CONTROLS.pop(url, None)
        if data.exists():
            with suppress(subprocess.CalledProcessError):
                _run([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user)
        shutil.rmtree(base, ignore_errors=True)


def create_database(server_url: str) -> str:
    """A fresh, empty database on the server; returns its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
