"""How much of the exact asymmetric top k over a million photos the service returns, when the codes have
the tie structure a real gallery gives them.

    python -m benchmarks.tie_recall [--codes 1000000] [--queries 200] [--checkpoint PATH]

The dev gallery's photos are encoded once; a million codes are drawn from their continuous codes, each
jittered (Gaussian, ``--jitter`` on the logit) and binarised, so classes keep their crowds of equal and
nearly equal codes. The dev test sketches are the queries. For each, the exact asymmetric top k over all
rows (numpy, exhaustive) is compared with:

- the service (``catalog.ranking.exact_candidates``: 300 Hamming candidates widened shell by shell until
  the top k is proven exact), and
- the ranking before (the 300 Hamming-nearest re-ranked, no widening).

"Recall" is the share of the exact top k's distance the ranking matches: a returned photo counts when its
distance is at most the exact k-th distance (photos tied at that distance are interchangeable). Writes
docs/benchmarks/tie_recall.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_result
from catalog.index_store import IndexSpec, LoadedIndex, Manifest, build_index
from catalog.ranking import RERANK_CANDIDATES, exact_candidates
from model.hashing import asymmetric_distances, pack_bits, unpack_bits

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def encode_dev(checkpoint: Path, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Continuous codes of the 3,125 dev photos and the 486 dev test sketches."""
    from model.factory import load_encoder
    from training.datasets import load_images, read_items
    from training.training import load_photos

    encoder = load_encoder(checkpoint, "cpu")
    gallery = read_items(ROOT / "splits" / "sketchy_photos.txt", DATA)
    queries = read_items(ROOT / "splits" / "sketchy_test_sketches.txt", DATA)
    photos, edges = load_photos(gallery, encoder.edges, cache_dir)
    return (
        encoder.encode_photos(photos, edges).continuous,
        encoder.encode_sketches(load_images(queries, "sketches")).continuous,
    )


def jittered_codes(photo_codes: np.ndarray, count: int, jitter: float, seed: int = 0) -> np.ndarray:
    """(count, bits/8) packed codes: gallery photos drawn at random, their logits jittered, binarised."""
    rng = np.random.default_rng(seed)
    clipped = np.clip(photo_codes, 1e-4, 1 - 1e-4)
    logits = np.log(clipped / (1 - clipped)).astype(np.float32)
    out = np.empty((count, photo_codes.shape[1] // 8), np.uint8)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        drawn = logits[rng.integers(0, len(logits), n)]
        drawn += rng.normal(0, jitter, drawn.shape).astype(np.float32)
        out[start : start + n] = pack_bits((drawn >= 0).astype(np.uint8))
    return out


def exhaustive_kth(codes: np.ndarray, queries: np.ndarray, k: int, bits: int) -> np.ndarray:
    """For each query, the k-th smallest asymmetric distance over every code."""
    best = np.full((len(queries), k), np.inf, np.float32)
    for start in range(0, len(codes), 200_000):
        d = asymmetric_distances(queries, unpack_bits(codes[start : start + 200_000], bits))
        best = np.sort(np.concatenate([best, np.partition(d, k - 1, axis=1)[:, :k]], axis=1), axis=1)[:, :k]
    return best[:, -1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--jitter", type=float, default=1.0, help="Gaussian noise on each code logit")
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "checkpoints" / "cscan-sketchy-64.safetensors"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/edges"))
    args = parser.parse_args()
    photo_codes, sketch_codes = encode_dev(args.checkpoint, args.cache_dir)
    bits = photo_codes.shape[1]
    codes = jittered_codes(photo_codes, args.codes, args.jitter)
    queries = sketch_codes[np.random.default_rng(1).permutation(len(sketch_codes))[: args.queries]]
    index = build_index(codes, bits, IndexSpec("BFlat"))
    loaded = LoadedIndex("bench", 0, 0, Manifest("", bits, len(codes), "", None), index)
    distinct = len(np.unique(codes, axis=0))
    result: dict = {
        "codes": len(codes),
        "distinct_codes": int(distinct),
        "queries": len(queries),
        "jitter": args.jitter,
        "checkpoint": args.checkpoint.name,
        "rankings": {},
    }
    for k in (20, 100):
        kth = exhaustive_kth(codes, queries, k, bits)
        for name, widen in (("service (widened until exact)", True), ("300 Hamming re-ranked", False)):
            recall, exact, candidates, seconds = [], [], [], []
            for qi, query in enumerate(queries):
                packed = pack_bits((query >= 0.5).astype(np.uint8)[None])[0]
                start = time.perf_counter()
                if widen:
                    found = exact_candidates(loaded, packed, query, k, RERANK_CANDIDATES)
                    positions, distances, proven = found.positions, found.distances, found.exact
                else:
                    _, pos = loaded.search(packed[None], RERANK_CANDIDATES)
                    positions = pos[0][pos[0] >= 0]
                    distances = np.sort(
                        asymmetric_distances(query[None], unpack_bits(loaded.codes_at(positions), bits))[0]
                    )
                    proven = False
                seconds.append(time.perf_counter() - start)
                recall.append(float(np.mean(distances[:k] <= kth[qi] + 1e-5)))
                exact.append(proven)
                candidates.append(len(positions))
            result["rankings"][f"{name}, k={k}"] = {
                "recall_of_exact_top_k": round(float(np.mean(recall)), 4),
                "queries_with_the_whole_exact_top_k": round(float(np.mean(np.array(recall) == 1.0)), 4),
                "proven_exact": round(float(np.mean(exact)), 4),
                "candidates_mean": round(float(np.mean(candidates)), 1),
                "candidates_max": int(np.max(candidates)),
                "ms_median": round(float(np.median(seconds)) * 1000, 2),
                "ms_p99": round(float(np.percentile(seconds, 99)) * 1000, 2),
            }
    write_result("tie_recall", result, "python -m benchmarks.tie_recall")


if __name__ == "__main__":
    main()
