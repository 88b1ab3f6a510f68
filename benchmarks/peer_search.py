"""What binary codes cost and save against float vectors, side by side in one run.

The dev split's 3,125 photos are encoded once with the checkpoint. Quality: mAP of the 486 test sketches
with 64-bit Hamming codes (the service's index), with the asymmetric re-ranking the service applies,
and with the 64 continuous values in a FAISS IndexFlatL2. Speed and memory: each index padded to
``--codes`` entries with random vectors (a gallery of that size), one query at a time, k = 100: the
service's plain binary index (its codes alone: which photo a row holds is in the database), the
continuous-64 IndexFlatL2, and a float-512 IndexFlatIP as a CLIP-retrieval-style peer (this model has no
512-d embedding, so that row has no mAP). Bytes per photo come from the indexes' own sizes.

    python -m benchmarks.peer_search [--codes 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from benchmarks.common import percentiles, write_result
from catalog.index_store import IndexSpec, IndexType, build_index
from catalog.settings import DEFAULT_CHECKPOINT
from model.factory import load_encoder
from model.hashing import asymmetric_distances, hamming_matrix, unpack_bits
from training.datasets import load_images, read_split
from training.metrics import retrieval_metrics
from training.training import load_photos

SKETCHY = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset"


def timed(index: faiss.Index | faiss.IndexBinary, queries: np.ndarray, k: int) -> dict[str, float]:
    for q in queries[:10]:
        index.search(q[None], k)
    samples = []
    for q in queries:
        start = time.perf_counter()
        index.search(q[None], k)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/edges"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    faiss.omp_set_num_threads(args.threads)
    encoder = load_encoder(args.checkpoint, "cpu")
    query_items = read_split(SKETCHY / "splits" / "test_sketches.txt")
    gallery_items = read_split(SKETCHY / "splits" / "photos.txt")
    classes = {c: i for i, c in enumerate(sorted({i.label for i in gallery_items}))}
    q_labels = np.array([classes[i.label] for i in query_items])
    g_labels = np.array([classes[i.label] for i in gallery_items])
    queries = encoder.encode_sketches(load_images(query_items))
    photos, edges = load_photos(gallery_items, encoder.edges, args.cache_dir)
    gallery = encoder.encode_photos(photos, edges)
    bits = encoder.bits

    quality = {
        "binary_hamming": retrieval_metrics(
            hamming_matrix(queries.packed, gallery.packed), q_labels, g_labels
        ),
        "binary_asymmetric": retrieval_metrics(
            asymmetric_distances(queries.continuous, unpack_bits(gallery.packed, bits)), q_labels, g_labels
        ),
    }
    flat64 = faiss.IndexFlatL2(bits)
    flat64.add(gallery.continuous)
    d, order = flat64.search(queries.continuous, len(gallery))
    ranks = np.empty_like(d)
    np.put_along_axis(ranks, order, d, axis=1)  # back to gallery order: distances per photo
    quality["continuous_64"] = retrieval_metrics(ranks, q_labels, g_labels)

    rng = np.random.default_rng(0)
    extra = args.codes - len(gallery)
    pad_bits = rng.integers(0, 256, (extra, bits // 8), dtype=np.uint8)
    binary = build_index(
        np.concatenate([gallery.packed, pad_bits]), bits, IndexSpec.for_type(IndexType.FLAT, 0)
    )
    cont = faiss.IndexFlatL2(bits)
    cont.add(np.concatenate([gallery.continuous, rng.random((extra, bits), dtype=np.float32)]))
    peer = faiss.IndexFlatIP(512)
    peer.add(rng.standard_normal((args.codes, 512), dtype=np.float32))
    picks = rng.choice(len(queries), size=args.queries)
    rows = [
        {
            "index": "service: IndexBinaryFlat (64-bit codes)",
            **timed(binary, queries.packed[picks], 100),
            "bytes_per_photo": binary.ntotal * binary.code_size / args.codes,
            "mAP_dev": round(quality["binary_hamming"]["mAP"], 4),
            "mAP_dev_reranked": round(quality["binary_asymmetric"]["mAP"], 4),
        },
        {
            "index": "IndexFlatL2, continuous-64 float32",
            **timed(cont, queries.continuous[picks], 100),
            "bytes_per_photo": cont.ntotal * cont.code_size / args.codes,
            "mAP_dev": round(quality["continuous_64"]["mAP"], 4),
        },
        {
            "index": "IndexFlatIP, float-512 (CLIP-retrieval-style peer)",
            **timed(peer, rng.standard_normal((args.queries, 512), dtype=np.float32), 100),
            "bytes_per_photo": peer.ntotal * peer.code_size / args.codes,
            "mAP_dev": None,
        },
    ]
    for row in rows:
        print(row, flush=True)
    write_result(
        "peer_search",
        {
            "checkpoint": args.checkpoint.name,
            "codes": args.codes,
            "k": 100,
            "faiss_threads": args.threads,
            "dev_split": {"queries": len(queries), "gallery": len(gallery)},
            "quality": quality,
            "results": rows,
        },
        f"python -m benchmarks.peer_search --codes {args.codes} --queries {args.queries}",
    )


if __name__ == "__main__":
    main()
