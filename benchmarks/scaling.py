"""Figures for docs/scaling.md: flat Hamming scans at 1M, 10M and 100M codes, and encoding throughput in
one process against Ray actor pools on this machine.

    python -m benchmarks.scaling [--sizes 1000000 10000000 100000000] [--photos 1500]

Scans: random 64-bit codes in an IndexBinaryFlat (as served), the service's depth of 300 candidates,
1 and 2 FAISS threads. Encoding: full builds of the same photos (decode, edges, network) into fresh data
directories, in-process and on a local Ray with 1 and 2 CPU actors; Ray's start-up is timed apart.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from benchmarks.common import percentiles, rss_mb, write_result
from catalog.builder import GalleryBuilder
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.ray_encoding import RayOptions
from catalog.scan import scan_source
from catalog.settings import DEFAULT_CHECKPOINT, load_settings
from model.factory import load_encoder

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset" / "photo"
DEPTH = 300  # candidates the service scans for (catalog.ranking.RERANK_CANDIDATES)


def scan_figures(size: int, queries: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    before = rss_mb()
    index = faiss.IndexBinaryFlat(64)
    chunk = 10_000_000
    for start in range(0, size, chunk):  # added in chunks: no second full copy of the codes
        index.add(rng.integers(0, 256, (min(chunk, size - start), 8), dtype=np.uint8))
    row: dict[str, object] = {
        "codes": size,
        "index_bytes_per_photo": index.code_size,  # the codes alone: row -> photo is in the database
        "rss_mb_added": round(rss_mb() - before, 1),
    }
    query = rng.integers(0, 256, (queries, 8), dtype=np.uint8)
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        index.search(query[:1], DEPTH)
        samples = []
        for q in query:
            start = time.perf_counter()
            index.search(q.reshape(1, -1), DEPTH)
            samples.append(time.perf_counter() - start)
        row[f"threads_{threads}"] = percentiles(samples)
    del index
    print(row, flush=True)
    return row


def build_rate(photos: Path, checkpoint: Path, onnx: Path, ray: RayOptions | None) -> dict[str, object]:
    """A full build into a fresh data directory (no code or edge cache); the ONNX export is shared."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), checkpoint=checkpoint, onnx_cache_dir=onnx)
        migrate.upgrade(settings.resolved_database_url)
        sessions = make_session_factory(make_engine(settings.resolved_database_url))
        encoder = load_encoder(checkpoint, "cpu", cache_dir=settings.onnx_cache)
        builder = GalleryBuilder(settings, sessions, encoder, show_progress=False, ray=ray)
        start = time.perf_counter()
        report = builder.build("bench", photos)
        seconds = time.perf_counter() - start
    name = "one process (2 network threads)" if ray is None else f"ray, {ray.actors} CPU actor(s)"
    row = {"mode": name, "photos": report.count, "seconds": round(seconds, 1)}
    row["photos_per_s"] = round(report.count / seconds, 1)
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--photos", type=int, default=1500, help="photos encoded per build")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args()
    scans = [scan_figures(size, args.queries) for size in args.sizes]

    with tempfile.TemporaryDirectory() as tmp:
        gallery = Path(tmp) / "photos"
        for n, cand in enumerate(scan_source(SHARED_PHOTOS)):
            if n == args.photos:
                break
            (gallery / f"{n // 100}").mkdir(parents=True, exist_ok=True)
            shutil.copy(cand.path, gallery / f"{n // 100}" / f"{n}{cand.path.suffix}")
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = round(time.perf_counter() - start, 1)
        onnx = Path(tmp) / "onnx"
        builds = [build_rate(gallery, args.checkpoint, onnx, None)]
        for actors in (1, 2):
            builds.append(build_rate(gallery, args.checkpoint, onnx, RayOptions(actors=actors)))
        ray.shutdown()

    write_result(
        "scaling",
        {"depth": DEPTH, "scans": scans, "ray_start_s": ray_start, "builds": builds},
        "python -m benchmarks.scaling",
    )


if __name__ == "__main__":
    main()
