"""Hamming search speed: 1M and 10M random codes, k=100, one query at a time, exact (flat) index,
plus HNSW/IVF recall against flat for very large galleries.

    python -m benchmarks.hamming_search            # writes docs/benchmarks/hamming_search.json
    python -m benchmarks.hamming_search --no-approximate   # flat only (skips the HNSW/IVF builds)

Bytes a photo come from the index's own sizes as the service keeps them: each flat index is written as
an index version (``catalog.index_store.write_version``), read back, and measured as a
``LoadedIndex`` (``memory_bytes``) and as a file. Which photo a row holds lives in the database
(``index_entries``), not beside the codes.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from benchmarks.common import percentiles, rss_mb, write_result
from catalog.index_store import (
    INDEX_FILE,
    IndexSpec,
    IndexType,
    LoadedIndex,
    Manifest,
    build_index,
    read_version,
    write_version,
)


def stored_sizes(index: faiss.IndexBinary, bits: int) -> tuple[float, float]:
    """Bytes a photo of the version once loaded (LoadedIndex.memory_bytes) and of its index file."""
    n = index.ntotal
    manifest = Manifest("benchmark", bits, n, datetime.now(UTC).isoformat(), None)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_version(Path(tmp), index, manifest)
        file_bytes = (path / INDEX_FILE).stat().st_size
        loaded_index, loaded_manifest = read_version(path)
        loaded = LoadedIndex("benchmark", 0, 0, loaded_manifest, loaded_index)
        memory = loaded.memory_bytes()
        del loaded, loaded_index
    return memory / n, file_bytes / n


def time_queries(index: faiss.IndexBinary, queries: np.ndarray, k: int) -> list[float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - start)
    return times


def recall(approx: faiss.IndexBinary, exact: faiss.IndexBinary, queries: np.ndarray, k: int) -> float:
    """Share of the exact top-k distances the approximate index also reaches (ties count as found)."""
    exact_d, _ = exact.search(queries, k)
    approx_d, _ = approx.search(queries, k)
    hits = [np.sum(np.sort(a) <= e[-1]) / k for a, e in zip(approx_d, exact_d, strict=True)]
    return float(np.mean(np.minimum(hits, 1.0)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--bits", default="64,128")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--no-approximate", action="store_true", help="flat indexes only")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for bits in map(int, args.bits.split(",")):
        for n in map(int, args.sizes.split(",")):
            gc.collect()
            before = rss_mb()
            codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
            index = build_index(codes, bits, IndexSpec.for_type(IndexType.FLAT, n))
            del codes
            gc.collect()
            memory = (rss_mb() - before) * 1024 * 1024 / n
            own, on_disk = stored_sizes(index, bits)
            queries = rng.integers(0, 256, size=(args.queries, bits // 8), dtype=np.uint8)
            time_queries(index, queries[:10], args.k)  # warm caches
            stats = percentiles(time_queries(index, queries, args.k))
            row = {
                "bits": bits,
                "codes": n,
                "index": "flat",
                **stats,
                "bytes_per_image": own,
                "file_bytes_per_image": round(on_disk, 3),
                "rss_bytes_per_image": round(memory, 1),
            }
            print(row, flush=True)
            rows.append(row)
            if n <= 1_000_000 and not args.no_approximate:
                for kind in ("hnsw", "ivf"):
                    codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
                    exact = build_index(codes, bits, IndexSpec.for_type(IndexType.FLAT, n))
                    t0 = time.perf_counter()
                    approx = build_index(codes, bits, IndexSpec.for_type(IndexType(kind), n))
                    build_s = time.perf_counter() - t0
                    stats = percentiles(time_queries(approx, queries, args.k))
                    row = {
                        "bits": bits,
                        "codes": n,
                        "index": kind,
                        **stats,
                        "recall_vs_flat": round(recall(approx, exact, queries[:100], args.k), 4),
                        "build_s": round(build_s, 1),
                    }
                    print(row, flush=True)
                    rows.append(row)
                    del exact, approx, codes
            del index
    write_result(
        "hamming_search",
        {"k": args.k, "faiss_threads": args.threads, "faiss_version": faiss.__version__, "results": rows},
        "python -m benchmarks.hamming_search",
    )


if __name__ == "__main__":
    main()
