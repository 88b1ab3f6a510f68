"""Load test of POST /search against the real server on loopback, with real test sketches and an index
of 1M codes (the real gallery's codes padded with random codes).

    python -m benchmarks.search_load [--codes 1000000] [--requests 300] [--duration 30] [--against REV]

Starts `sketch-server` as a subprocess on a scratch data directory, measures concurrency 1 (latency)
and concurrency 8 (throughput), reads the per-stage histograms from /metrics and the server's memory.

Absolute times differ up to 3x between machines of one kind, so the figures that count are ratios
against limits measured in the same run:

- ``lone_p50_over_encode_plus_scan``: the lone search's median against the sum of its two irreducible
  parts, one sketch encode and one scan of the index (the server's own stage means for those requests);
  ``lone_mean_over_encode_plus_scan`` is the same with the search's mean, every term a mean (a phase
  where the host slowed for a while lifts the stage means more than the median, and so lowers the
  first ratio, not the second);
- ``c8_throughput_over_encoder_alone``: searches a second at concurrency 8 against what the encoder
  alone sustains in this process at the server's mean batch size (measured after the load, with the
  server idle, with the same threads).

The lone search's mean is also split into parts that add up (``where_the_mean_goes_ms``): the network,
the scan, the server's other stages (its /metrics), the server's time outside every stage (its /search
latency less the stages) and HTTP with this client (the client's mean less the server's).

The sketch is sent as the drawing page sends it, as the whole body; ``multipart_form`` is the lone
search with the sketch in a multipart form (``curl -F``), measured between two more phases sent the
body, against their mean (``form_less_body_ms``).

With ``--against REV`` the lone search is also measured at git revision REV (a temporary worktree,
its server on the same index and database, so REV must share this revision's database schema), in
alternating phases with this revision's: before and after in one run, on the same host.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx
import numpy as np
from sqlalchemy import select

from benchmarks.common import REPO, free_port, percentiles, rss_mb, wait_until_serving, write_result
from catalog.builder import GalleryBuilder, gallery_dir
from catalog.db import migrate
from catalog.db.models import Gallery, IndexVersion
from catalog.db.session import make_engine, make_session_factory
from catalog.enums import VersionState
from catalog.index_rows import image_ids, write_rows
from catalog.index_store import IndexSpec, Manifest, build_index, read_version, write_version
from catalog.settings import DEFAULT_CHECKPOINT, load_settings
from model.factory import load_encoder
from training.datasets import read_split

SKETCHY = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset"


def padded_index(settings, sessions, encoder, total: int) -> None:  # type: ignore[no-untyped-def]
    """Build the real gallery, then activate a version that adds random codes up to ``total``."""
    GalleryBuilder(settings, sessions, encoder).build("bench", SKETCHY / "photo")
    with sessions.begin() as session:
        gallery = session.scalar(select(Gallery).where(Gallery.name == "bench"))
        active = session.scalar(select(IndexVersion).where(IndexVersion.state == VersionState.ACTIVE))
        index, manifest = read_version(Path(active.path))
        real_ids = image_ids(session, active.id, index.ntotal)
        real_codes = np.stack([index.reconstruct(i) for i in range(index.ntotal)]).astype(np.uint8)
        rng = np.random.default_rng(0)
        extra = total - len(real_ids)
        codes = np.concatenate([real_codes, rng.integers(0, 256, (extra, encoder.bits // 8), dtype=np.uint8)])
        big = build_index(codes, encoder.bits, IndexSpec("BFlat"))
        path = write_version(
            gallery_dir(settings, "bench"),
            big,
            Manifest(
                manifest.model_checksum,
                encoder.bits,
                total,
                manifest.created,
                "padded",
                gallery_id=gallery.id,
            ),
        )
        active.state = VersionState.RETIRED
        padded = IndexVersion(
            gallery_id=gallery.id,
            model_checksum=manifest.model_checksum,
            bits=encoder.bits,
            count=total,
            path=str(path),
            state=VersionState.ACTIVE,
        )
        session.add(padded)
        session.flush()
        write_rows(session, padded.id, real_ids)  # the random codes' rows hold no photo: never resolved


def search_request(path: str, host: str, sketch: bytes, form: bool = False) -> bytes:
    """One complete HTTP/1.1 POST of ``sketch``, keep-alive: as the whole body (``image/png``, what the
    drawing page sends) or, with ``form``, as the multipart field ``file`` (what ``curl -F`` sends)."""
    content_type, body = "image/png", sketch
    if form:
        boundary = b"----sketchload7MA4YWxkTrZu0gW"
        content_type = f"multipart/form-data; boundary={boundary.decode()}"
        body = (
            b"--" + boundary + b"\r\n"
            b'Content-Disposition: form-data; name="file"; filename="s.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + sketch + b"\r\n--" + boundary + b"--\r\n"
        )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, timeout: float = 30
) -> int:
    """Send one prepared request on a kept-alive connection; read the whole answer; its status. Raises
    TimeoutError after ``timeout`` seconds, RuntimeError for an answer without a Content-Length."""
    return await asyncio.wait_for(_exchange(reader, writer, request), timeout)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    lengths = [v for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length"]
    if not lengths:
        raise RuntimeError(f"an answer without Content-Length: {lines[0]}")
    length = int(lengths[0])
    await reader.readexactly(length)
    return status


async def run_load(
    base: str, sketches: list[bytes], concurrency: int, duration: float, max_requests: int, form: bool = False
) -> dict:
    """Searches at ``concurrency`` for ``duration`` seconds (or ``max_requests``). The load generator
    shares the server's two cores, so it is kept cheap: each user holds one keep-alive connection
    and sends requests prepared in advance, and an answer is read as bytes (what a client library
    adds, parsing multipart and JSON in Python, is the client's cost, not the service's)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + duration
    counter = iter(range(max_requests))
    address = urlsplit(base)
    requests = [search_request("/search?k=20&gallery=bench", address.netloc, s, form) for s in sketches]

    async def user() -> None:
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            for i in counter:
                if time.perf_counter() > stop_at:
                    return
                start = time.perf_counter()
                status = await exchange(reader, writer, requests[i % len(requests)])
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        finally:
            writer.close()
            await writer.wait_closed()

    begin = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    elapsed = time.perf_counter() - begin
    return {
        "concurrency": concurrency,
        **percentiles(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "errors": errors,
    }


async def round_trip_floor(base: str, requests: int = 300) -> float:
    """Median milliseconds of GET /healthz on one kept-alive connection with the same client: what
    HTTP on loopback costs before any search work."""
    address = urlsplit(base)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    request = f"GET /healthz HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        await exchange(reader, writer, request)
        times.append(time.perf_counter() - start)
    writer.close()
    await writer.wait_closed()
    return round(float(np.median(times)) * 1000, 3)


class Totals(NamedTuple):
    """One reading of the server's /metrics, each as (sum, count) so far: the seconds of every search
    stage, the /search route's own latency (the search as the server's metrics middleware saw it,
    without the HTTP parsing and sending around it), and the sketches of the network's batches."""

    stages: dict[str, tuple[float, float]]
    search: tuple[float, float]
    batches: tuple[float, float]


def _sum_count(text: str, series: str, labels: str = "") -> tuple[float, float]:
    found = [re.search(rf"{series}_{part}{re.escape(labels)} ([\d.e+-]+)", text) for part in ("sum", "count")]
    return (float(found[0].group(1)), float(found[1].group(1))) if found[0] and found[1] else (0.0, 0.0)


def totals(text: str) -> Totals:
    """``Totals`` from the text of /metrics."""
    stages = re.findall(r'sketch_search_stage_seconds_count\{stage="(\w+)"\}', text)
    return Totals(
        {s: _sum_count(text, "sketch_search_stage_seconds", f'{{stage="{s}"}}') for s in stages},
        _sum_count(text, "sketch_request_seconds", '{route="/search"}'),
        _sum_count(text, "sketch_encode_batch_size"),
    )


def read_totals(base: str) -> Totals:
    return totals(httpx.get(f"{base}/metrics").text)


def per_count(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The mean of what was summed between two readings of one (sum, count) series."""
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def where_the_mean_goes(client_ms: float, server_ms: float, stages: dict[str, float]) -> dict[str, float]:
    """A search's mean milliseconds split into parts that add up to ``client_ms``: the network
    ("encode") and the scan, the server's other stages (decode, preprocess, wait, widen, rerank,
    fetch, handoff: ``stage_means``' keys), what the server spends outside every stage (FastAPI, its
    middleware, reading the body (or parsing the form), building and serialising the answer:
    ``server_ms`` less the stages), and HTTP with this client (``client_ms`` less ``server_ms``)."""
    encode, scan = stages["encode_ms_mean"], stages["scan_ms_mean"]
    apart = ("encode_ms_mean", "scan_ms_mean", "explain_ms_mean")  # explain: not a plain search's
    others = sum(v for k, v in stages.items() if k not in apart)
    return {
        "encode": round(encode, 3),
        "scan": round(scan, 3),
        "other_stages": round(others, 3),
        "outside_the_stages": round(server_ms - encode - scan - others, 3),
        "http_and_client": round(client_ms - server_ms, 3),
    }


def stage_means(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict:
    """Mean milliseconds per stage between two /metrics readings (one load phase)."""
    return {
        f"{stage}_ms_mean": round(per_count(before.get(stage, (0.0, 0.0)), now) * 1000, 3)
        for stage, now in after.items()
    }


def encoder_alone(checkpoint: Path, sketches: list[bytes], batch: float, seconds: float = 8.0) -> float:
    """Sketches a second through the network alone (prepared inputs, the server's backend and threads),
    in batches of the server's mean size: the ceiling the concurrent service is held against."""
    import io

    from PIL import Image

    from model.loader import configure_threads, load_encoder

    configure_threads(2)  # SKETCH_TORCH_THREADS' default, as the server ran
    encoder = load_encoder(checkpoint, "cpu")
    size = max(1, round(batch))
    prepared = encoder.prepare_sketches([Image.open(io.BytesIO(s)) for s in sketches[:size]])
    encoder.encode_prepared_sketches(prepared)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        encoder.encode_prepared_sketches(prepared)
        done += len(prepared)
    return round(done / (time.perf_counter() - start), 1)


@contextmanager
def serving(
    root: Path, data_dir: str, checkpoint: Path, onnx_cache: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes], bool]]:
    """`sketch-server` of the code under ``root`` (this checkout or a worktree) on ``data_dir``, warmed
    up with 20 searches: its base URL, its process, and whether it must be sent a multipart form
    (``takes_the_body``). ``onnx_cache``: where it exports its ONNX graphs (another revision's export
    may differ; the cache is keyed by the checkpoint only)."""
    port = free_port()
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": data_dir,
        "SKETCH_CHECKPOINT": str(checkpoint),
        "SKETCH_EMBEDDED_WORKER": "false",
        "PYTHONPATH": str(root),
    }
    if onnx_cache is not None:
        env["SKETCH_ONNX_CACHE_DIR"] = str(onnx_cache)
    server = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--port", str(port)],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, timeout=300)
        form = not takes_the_body(base)
        asyncio.run(run_load(base, split_sketches(), 1, 10, 20, form))  # warm-up
        yield base, server, form
    finally:
        server.terminate()
        server.wait(timeout=30)


@functools.cache  # read once: every phase sends them
def split_sketches() -> list[bytes]:
    """The Sketchy test split's sketches as PNG bytes: what every phase sends."""
    return [i.path.read_bytes() for i in read_split(SKETCHY / "splits" / "test_sketches.txt")]


def lone_phase(base: str, duration: float, requests: int, form: bool = False) -> dict:
    """Concurrency 1 with the server's stage means for those requests, what lies outside the network
    and the scan, the HTTP floor, and the median against one encode plus one scan. ``form``: the sketch
    sent as a multipart form rather than as the whole body."""
    before = read_totals(base)
    single = asyncio.run(run_load(base, split_sketches(), 1, duration, requests, form))
    after = read_totals(base)
    single["stages"] = stage_means(before.stages, after.stages)
    single["server_ms_mean"] = round(per_count(before.search, after.search) * 1000, 3)
    # The mean (not the median: means add up) from the client's clock down to the server's stages.
    single["where_the_mean_goes_ms"] = where_the_mean_goes(
        single["mean_ms"], single["server_ms_mean"], single["stages"]
    )
    # What the service adds beyond the network and the scan (HTTP, the body, decode, preprocessing,
    # thread hand-offs, re-ranking, the database, JSON), from the same requests' median.
    single["outside_network_and_scan_ms"] = round(
        single["median_ms"] - single["stages"]["encode_ms_mean"] - single["stages"]["scan_ms_mean"], 3
    )
    single["http_round_trip_floor_ms"] = asyncio.run(round_trip_floor(base))
    irreducible = single["stages"]["encode_ms_mean"] + single["stages"]["scan_ms_mean"]
    single["lone_p50_over_encode_plus_scan"] = round(single["median_ms"] / irreducible, 3)
    single["lone_mean_over_encode_plus_scan"] = round(single["mean_ms"] / irreducible, 3)
    return single


def form_against_body(base: str, duration: float, requests: int) -> dict:
    """The lone search with the sketch in a multipart form, between two phases sent the body: its
    figures, and its median and time outside the stages less the mean of the two body phases'."""
    phases = [lone_phase(base, duration, requests, form) for form in (False, True, False)]
    form = phases[1]
    kept = ("median_ms", "mean_ms", "where_the_mean_goes_ms", "lone_p50_over_encode_plus_scan")

    def less_body(value: Callable[[dict], float]) -> float:
        return round(value(form) - (value(phases[0]) + value(phases[2])) / 2, 3)

    return {
        **{key: form[key] for key in kept},
        "body_medians_ms": [phases[0]["median_ms"], phases[2]["median_ms"]],
        "form_less_body_ms": less_body(lambda p: p["median_ms"]),
        "outside_the_stages_form_less_body_ms": less_body(
            lambda p: p["where_the_mean_goes_ms"]["outside_the_stages"]
        ),
    }


def takes_the_body(base: str) -> bool:
    """Whether the server searches a PNG sent as the whole body (200), or needs a multipart form (422:
    revisions before the body was taken). Raises RuntimeError for any other answer."""
    sketch = split_sketches()[0]
    answer = httpx.post(
        f"{base}/search?gallery=bench", content=sketch, headers={"Content-Type": "image/png"}, timeout=120
    )
    if answer.status_code not in (200, 422):
        raise RuntimeError(f"the server answered a search {answer.status_code}: {answer.text[:300]}")
    return answer.status_code == 200


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A temporary git worktree of ``revision`` (detached), removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(root), revision], cwd=REPO, check=True
        )
        try:
            yield root
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=REPO, check=False)


def before_and_after(
    revision: str, data_dir: str, checkpoint: Path, duration: float, requests: int, rounds: int = 2
) -> dict:
    """The lone search at ``revision`` and at this checkout, in alternating phases (this, revision, then
    revision, this, ...: neither side always goes first): each side's median of its phases' medians, and
    its ratio against its own stage means. Each side is sent the sketch as its drawing page sends it:
    as the whole body, or as a multipart form by a revision that takes no other (``sent``)."""
    phases: dict[str, list[dict]] = {"this": [], revision: []}
    with worktree(revision) as root:
        sides = [("this", REPO, None), (revision, root, root.parent / "onnx")]
        for round_ in range(rounds):
            for name, code, onnx_cache in sides if round_ % 2 == 0 else sides[::-1]:
                with serving(code, data_dir, checkpoint, onnx_cache) as (base, _server, form):
                    phases[name].append({**lone_phase(base, duration, requests, form), "form": form})
                    print(name, phases[name][-1], flush=True)
    summary = {}
    for name, runs in phases.items():
        median = float(np.median([r["median_ms"] for r in runs]))
        encode = float(np.mean([r["stages"]["encode_ms_mean"] for r in runs]))
        scan = float(np.mean([r["stages"]["scan_ms_mean"] for r in runs]))
        summary[name] = {
            "sent": "multipart form" if runs[0]["form"] else "body",
            "phase_medians_ms": [r["median_ms"] for r in runs],
            "phase_ratios": [r["lone_p50_over_encode_plus_scan"] for r in runs],
            "median_ms": round(median, 3),
            "encode_plus_scan_ms": round(encode + scan, 3),
            "lone_p50_over_encode_plus_scan": round(median / (encode + scan), 3),
            "stages": {
                stage: round(float(np.mean([r["stages"][stage] for r in runs])), 3)
                for stage in runs[0]["stages"]
            },
        }
    return {"revision": revision, "rounds": rounds, "phase_seconds": duration, **summary}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument(
        "--against", metavar="REV", help="also measure the lone search at this git revision, alternating"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), checkpoint=args.checkpoint)
        migrate.upgrade(settings.resolved_database_url)
        sessions = make_session_factory(make_engine(settings.resolved_database_url))
        encoder = load_encoder(args.checkpoint, "cpu")
        padded_index(settings, sessions, encoder, args.codes)
        del encoder
        with serving(REPO, tmp, args.checkpoint) as (base, server, _form):
            single = lone_phase(base, args.duration, args.requests)
            print(single, flush=True)
            single["multipart_form"] = form_against_body(base, args.duration / 2, args.requests)
            print("multipart form", single["multipart_form"], flush=True)
            before = read_totals(base)
            eight = asyncio.run(run_load(base, split_sketches(), 8, args.duration, args.requests * 4))
            after = read_totals(base)
            eight["stages"] = stage_means(before.stages, after.stages)
            mean_batch = per_count(before.batches, after.batches)
            eight["encode_batch_mean"] = round(mean_batch, 2)
            memory = rss_mb(server.pid)
            eight["encoder_alone_sketches_per_s"] = encoder_alone(
                args.checkpoint, split_sketches(), mean_batch
            )
            eight["c8_throughput_over_encoder_alone"] = round(
                eight["requests_per_s"] / eight["encoder_alone_sketches_per_s"], 3
            )
            print(eight, flush=True)
        compared = (
            before_and_after(args.against, tmp, args.checkpoint, args.duration / 2, args.requests)
            if args.against
            else None
        )
    result: dict[str, object] = {
        "index_codes": args.codes,
        "bits": 64,
        "results": [single, eight],
        "server_rss_mb": round(memory, 1),
    }
    if compared is not None:
        result["lone_against"] = compared
    write_result("search_load", result, "python -m benchmarks.search_load")


if __name__ == "__main__":
    main()
