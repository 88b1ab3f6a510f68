"""What a hostile afternoon throws at the service, counted: bad inputs, fuzzing, a database outage under
load, and searches during hot swaps. Real server processes on loopback, real PostgreSQL.

    python -m benchmarks.reliability [--fuzz-examples 100] [--swap-rounds 3]

Writes docs/benchmarks/reliability.json; docs/reliability.md explains the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image
from sqlalchemy import func, select

from benchmarks.common import wait_until_serving, write_result
from catalog.builder import GalleryBuilder
from catalog.db.models import ImageRecord
from catalog.settings import load_settings
from model.factory import load_encoder
from tests.helpers import (
    SKETCHY,
    TOKEN,
    make_tiny_checkpoint,
    migrated_sessions,
    photos_of,
    png_bomb_header,
    png_bytes,
    sketch_png,
)
from tests.postgres import CONTROLS, create_database, free_port, postgres_server

BIN = Path(sys.executable).parent
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start_server(
    data: Path, url: str, checkpoint: Path, embedded_worker: bool
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(data),
        "SKETCH_DATABASE_URL": url,
        "SKETCH_CHECKPOINT": str(checkpoint),
        "SKETCH_ADMIN_TOKEN": TOKEN,
        "SKETCH_EMBEDDED_WORKER": str(embedded_worker).lower(),
        "SKETCH_INDEX_POLL_SECONDS": "0.5",
    }
    proc = subprocess.Popen(
        [str(BIN / "sketch-server"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, proc, "/healthz")
    return proc, base


def bad_inputs(base: str) -> dict[str, object]:
    """One request per kind of bad input; every answer must be a 4xx with the error body."""
    png = sketch_png()
    blank = png_bytes(Image.new("L", (300, 300), 255))
    huge = png_bytes(Image.new("L", (6300, 6300), 255))
    json_type = {"Content-Type": "application/json"}
    one = {"files": {"file": ("s.png", png)}}
    cases: dict[str, tuple[str, str, dict]] = {  # name -> (method, url, httpx arguments)
        "not a PNG (JPEG)": (
            "post",
            "/search",
            {"files": {"file": ("s.jpg", b"\xff\xd8\xff\xe0" + b"0" * 100)}},
        ),
        "empty file": ("post", "/search", {"files": {"file": ("s.png", b"")}}),
        "truncated PNG": ("post", "/search", {"files": {"file": ("s.png", png[: len(png) // 2])}}),
        "bomb header (10^10 px)": ("post", "/search", {"files": {"file": ("s.png", png_bomb_header())}}),
        "6300x6300 sketch": ("post", "/search", {"files": {"file": ("s.png", huge)}}),
        "blank sketch": ("post", "/search", {"files": {"file": ("s.png", blank)}}),
        "no file field": ("post", "/search", {"data": {"x": "1"}}),
        "k=0": ("post", "/search?k=0", one),
        "k=10^9": ("post", "/search?k=1000000000", one),
        "unknown gallery": ("post", "/search?gallery=nope", one),
        "gallery name of 5000 chars": (
            "post",
            "/search?gallery=" + "g" * 5000,
            {"files": {"file": ("s.png", png)}},
        ),
        "body over the limit": ("post", "/search", {"files": {"file": ("s.png", os.urandom(6_000_000))}}),
        "image id 2^31": ("get", "/images/2147483648", {}),
        "image id 2^63": ("get", "/images/9223372036854775808", {}),
        "thumbnail id -1": ("get", "/images/-1/thumbnail", {}),
        "job id 2^31": ("get", "/admin/jobs/2147483648", {"headers": AUTH}),
        "delete id 2^63": ("delete", "/admin/images/9223372036854775808", {"headers": AUTH}),
        "GET on POST route": ("get", "/search", {}),
        "admin without token": ("get", "/admin/galleries", {}),
        "admin wrong token": ("get", "/admin/galleries", {"headers": {"Authorization": "Bearer wrong"}}),
        "malformed JSON without token": (
            "post",
            "/admin/galleries",
            {"content": b"{x", "headers": json_type},
        ),
        "malformed JSON with token": (
            "post",
            "/admin/galleries",
            {"content": b"{x", "headers": {**AUTH, **json_type}},
        ),
        "source_dir of 5000 chars": (
            "post",
            "/admin/galleries",
            {"json": {"name": "x", "source_dir": "d" * 5000}, "headers": AUTH},
        ),
        "/proc as source_dir": (
            "post",
            "/admin/galleries",
            {"json": {"name": "x", "source_dir": "/proc"}, "headers": AUTH},
        ),
        "bad gallery name": ("post", "/admin/galleries", {"json": {"name": "../etc"}, "headers": AUTH}),
        "21 photos in one upload": (
            "post",
            "/admin/galleries/demo/images",
            {"files": [("files", (f"{i}.png", png)) for i in range(21)], "headers": AUTH},
        ),
        "photo over the per-photo limit": (
            "post",
            "/admin/galleries/demo/images",
            {"files": [("files", ("big.png", b"\x89PNG" + os.urandom(5_300_000)))], "headers": AUTH},
        ),
        "text file as photo": (
            "post",
            "/admin/galleries/demo/images",
            {"files": [("files", ("a.png", b"hello"))], "headers": AUTH},
        ),
    }
    statuses = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for name, (method, url, kwargs) in cases.items():
            r = client.request(method.upper(), url, **kwargs)
            body_ok = r.headers.get("content-type", "").startswith("application/json") and "error" in r.json()
            statuses[name] = {"status": r.status_code, "error_body": body_ok}
    server_errors = sum(1 for s in statuses.values() if s["status"] >= 500)  # type: ignore[operator]
    return {"kinds": len(cases), "server_errors": server_errors, "answers": statuses}


def fuzz(base: str, examples: int) -> dict[str, object]:
    from tests.test_fuzz import CHECKS

    out = {}
    for label, extra in (
        ("with token", ["--header", f"Authorization: Bearer {TOKEN}"]),
        ("without token", []),
    ):
        result = subprocess.run(
            [
                *(str(BIN / "schemathesis"), "run", f"{base}/openapi.json", "--checks", CHECKS),
                *("--max-examples", str(examples), "--seed", "7", "--no-color", *extra),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        generated = re.search(r"(\d+) generated", result.stdout)
        failures = re.search(r"(\d+) unique failures", result.stdout)
        out[label] = {
            "test_cases": int(generated.group(1)) if generated else None,
            "failures": int(failures.group(1)) if failures else 0,
            "exit_code": result.returncode,
        }
    return out


def load(
    base: str, stop: threading.Event, statuses: Counter[int], threads: int = 3
) -> list[threading.Thread]:
    def run() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set():
                r = client.post("/search?k=10", files={"file": ("s.png", sketch_png())})
                statuses[r.status_code] += 1

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers


def outage(base: str, server_url: str, sessions) -> dict[str, object]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        before = session.scalar(select(func.count()).select_from(ImageRecord))
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    workers = load(base, stop, statuses)
    time.sleep(2)
    CONTROLS[server_url].stop()
    time.sleep(10)
    CONTROLS[server_url].start()
    time.sleep(5)
    stop.set()
    for w in workers:
        w.join()
    with httpx.Client(base_url=base, timeout=60) as client:
        job = client.post("/admin/galleries/demo/reindex", headers=AUTH).json()["job_id"]
        while client.get(f"/admin/jobs/{job}", headers=AUTH).json()["state"] not in ("succeeded", "failed"):
            time.sleep(0.3)
        state = client.get(f"/admin/jobs/{job}", headers=AUTH).json()["state"]
    with sessions() as session:
        after = session.scalar(select(func.count()).select_from(ImageRecord))
    return {
        "outage_s": 10,
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "server_errors_other_than_503": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "reindex_after_recovery": state,
        "photos_before": before,
        "photos_after": after,
    }


def hot_swaps(base: str, rounds: int) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    workers = load(base, stop, statuses)
    versions = set()
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(rounds):
            job = client.post("/admin/galleries/demo/reindex", headers=AUTH).json()["job_id"]
            while client.get(f"/admin/jobs/{job}", headers=AUTH).json()["state"] not in (
                "succeeded",
                "failed",
            ):
                time.sleep(0.2)
            time.sleep(1.5)  # the poller picks the new version up
            versions.add(client.get("/admin/index", headers=AUTH).json()[0]["serving_version"])
    stop.set()
    for w in workers:
        w.join()
    return {
        "swaps": rounds,
        "versions_served": len(versions),
        "searches": sum(statuses.values()),
        "failed_searches": sum(n for s, n in statuses.items() if s != 200),
        "statuses": dict(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fuzz-examples", type=int, default=100)
    parser.add_argument("--swap-rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reliability-"))
    checkpoint = make_tiny_checkpoint(tmp / "tiny.safetensors")  # failure paths do not need weights
    with postgres_server() as server_url:
        url = create_database(server_url)
        sessions = migrated_sessions(url)
        settings = load_settings(data_dir=tmp / "data", database_url=url, checkpoint=checkpoint)
        photos_of(SKETCHY, ("cat", "teapot", "bicycle"), tmp / "photos", per_class=10)
        GalleryBuilder(settings, sessions, load_encoder(checkpoint, "cpu"), show_progress=False).build(
            "demo", tmp / "photos"
        )
        proc, base = start_server(tmp / "data", url, checkpoint, embedded_worker=True)
        try:
            result = {
                "bad_inputs": bad_inputs(base),
                "hot_swaps": hot_swaps(base, args.swap_rounds),
                "database_outage": outage(base, server_url, sessions),
                "fuzzing": fuzz(base, args.fuzz_examples),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    write_result("reliability", result, "python -m benchmarks.reliability")


if __name__ == "__main__":
    main()
