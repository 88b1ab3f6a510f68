"""How many Hamming candidates must be re-ranked for the asymmetric top-k to be exact?

For every dev test sketch, the exhaustive asymmetric ranking (continuous sketch code against every
photo's bits) is compared with what the service computes: FAISS's Hamming top-C, re-ranked. Reports, per
candidate depth C, the share of queries whose re-ranked top-k is exactly the exhaustive top-k, and the
mean overlap. `catalog.ranking.RERANK_CANDIDATES` is set from this.

    python -m benchmarks.rerank_depth [--checkpoint CKPT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import faiss
import numpy as np
import torch

from benchmarks.common import write_result
from catalog.settings import DEFAULT_CHECKPOINT
from model.factory import load_encoder
from model.hashing import asymmetric_distances, unpack_bits
from training.datasets import load_images, read_split
from training.training import load_photos

SKETCHY = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset"
DEPTHS = (50, 100, 200, 300, 500, 1000)
TOP_K = (20, 100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/edges"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    encoder = load_encoder(args.checkpoint, "cpu")
    queries = encoder.encode_sketches(load_images(read_split(SKETCHY / "splits" / "test_sketches.txt")))
    photos, edges = load_photos(read_split(SKETCHY / "splits" / "photos.txt"), encoder.edges, args.cache_dir)
    gallery = encoder.encode_photos(photos, edges)
    index = faiss.IndexBinaryFlat(encoder.bits)
    index.add(gallery.packed)
    asym = asymmetric_distances(queries.continuous, unpack_bits(gallery.packed, encoder.bits))
    exact = np.argsort(asym, axis=1, kind="stable")
    rows = []
    for depth in DEPTHS:
        _, candidates = index.search(queries.packed, depth)
        row: dict[str, object] = {"candidates": depth}
        for k in TOP_K:
            same, overlap = 0, 0.0
            for q in range(len(candidates)):
                cand = candidates[q][candidates[q] >= 0]
                reranked = cand[np.argsort(asym[q, cand], kind="stable")][:k]
                truth = exact[q, :k]
                same += int(np.array_equal(np.sort(asym[q, reranked]), np.sort(asym[q, truth])))
                overlap += len(set(reranked.tolist()) & set(truth.tolist())) / k
            row[f"exact_top{k}"] = round(same / len(candidates), 4)
            row[f"mean_overlap_top{k}"] = round(overlap / len(candidates), 4)
        print(row, flush=True)
        rows.append(row)
    write_result(
        "rerank_depth",
        {
            "checkpoint": args.checkpoint.name,
            "queries": len(queries),
            "gallery": len(gallery),
            "note": "exact_topK: share of queries whose re-ranked top K has the exhaustive top K's distances",
            "results": rows,
        },
        "python -m benchmarks.rerank_depth",
    )


if __name__ == "__main__":
    main()
