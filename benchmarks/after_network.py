"""What the network costs the work around it: a search's own stages timed warm and right after a
sketch encode, on the same 1M-code index, in one run.

`benchmarks.search_load` finds a lone search spending a few milliseconds outside the network and the
scan, far more than the same steps take in a loop. This measures why: each stage (decode, preprocess,
and the ranking's scan, widening, re-rank and database fetch) is timed per test sketch twice, once
straight after the same stage ran (warm: its code and data in the caches) and once straight after one
sketch encode (as in the service, where the network has just evicted them). The two conditions
alternate which goes first, sketch by sketch. Reported per stage: the medians and their ratio, and
the means (the widening runs for few sketches, so its median is 0).

    python -m benchmarks.after_network [--codes 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.common import write_result
from benchmarks.search_load import padded_index, split_sketches
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.index_store import LoadedIndex, active_version, load_index
from catalog.ranking import search_codes
from catalog.settings import DEFAULT_CHECKPOINT, load_settings
from model.encoding import Codes, ImageEncoder
from model.imageio import decode_image
from model.loader import configure_threads, load_encoder
from model.preprocessing import ink_map

K = 20  # the load benchmark's k
STAGES = ("decode", "preprocess", "scan", "widen", "rerank", "fetch")


def preparation(encoder: ImageEncoder, sketch: bytes, max_pixels: int) -> tuple[dict[str, float], np.ndarray]:
    """Decode and preprocess of one sketch, as the service runs them: seconds, and the network input."""
    started = time.perf_counter()
    image = decode_image(sketch, max_pixels, formats=("PNG",))
    decoded = time.perf_counter()
    prepared = encoder.prepare_sketches([image], [ink_map(image)])
    return {"decode": decoded - started, "preprocess": time.perf_counter() - decoded}, prepared


def ranking(index: LoadedIndex, sessions: sessionmaker[Session], codes: Codes) -> dict[str, float]:
    """The ranking's stages (scan, widen, re-rank, fetch) for one sketch's codes, in seconds."""
    return search_codes(sessions, index, codes.packed[0], codes.continuous[0], K).seconds


def measure(
    encoder: ImageEncoder,
    index: LoadedIndex,
    sessions: sessionmaker[Session],
    sketches: list[bytes],
    rounds: int,
    max_pixels: int,
) -> dict[str, dict[str, list[float]]]:
    """Per condition ("warm", "after_network"), per stage, the seconds of every timed search."""
    inputs = [preparation(encoder, s, max_pixels)[1] for s in sketches]
    codes = [encoder.encode_prepared_sketches(p) for p in inputs]

    def warm(i: int) -> dict[str, float]:
        # Each part straight after itself: its code and data are in the caches.
        preparation(encoder, sketches[i], max_pixels)
        prepared = preparation(encoder, sketches[i], max_pixels)[0]
        ranking(index, sessions, codes[i])
        return {**prepared, **ranking(index, sessions, codes[i])}

    def after_network(i: int) -> dict[str, float]:
        # Each part straight after a sketch encode: the ranking as in the service; the preparation as
        # a lone search's is after the previous search's network (and its ranking and answer).
        encoder.encode_prepared_sketches(inputs[i])
        prepared = preparation(encoder, sketches[i], max_pixels)[0]
        encoder.encode_prepared_sketches(inputs[i])
        return {**prepared, **ranking(index, sessions, codes[i])}

    conditions: list[tuple[str, Callable[[int], dict[str, float]]]] = [
        ("warm", warm),
        ("after_network", after_network),
    ]
    times: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name, _ in conditions}
    done, total, shown = 0, rounds * len(sketches), time.perf_counter()
    for round_ in range(rounds):
        for i in range(len(sketches)):
            for name, run in conditions if (i + round_) % 2 == 0 else conditions[::-1]:
                for stage, seconds in run(i).items():
                    times[name][stage].append(seconds)
            done += 1
            if time.perf_counter() - shown > 10:
                print(f"{done}/{total} sketches", flush=True)
                shown = time.perf_counter()
    return times


def summary(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float | None]]:
    """Per stage: warm and after-network medians and means (ms), and the medians' ratio."""
    out: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        warm = np.array(times["warm"][stage]) * 1000
        cold = np.array(times["after_network"][stage]) * 1000
        warm_median, cold_median = float(np.median(warm)), float(np.median(cold))
        out[stage] = {
            "warm_median_ms": round(warm_median, 3),
            "after_network_median_ms": round(cold_median, 3),
            "median_ratio": round(cold_median / warm_median, 2) if warm_median > 0 else None,
            "warm_mean_ms": round(float(warm.mean()), 3),
            "after_network_mean_ms": round(float(cold.mean()), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args()
    configure_threads(2)  # SKETCH_TORCH_THREADS' default, as the server runs the network
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), checkpoint=args.checkpoint)
        migrate.upgrade(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        sessions = make_session_factory(engine)
        encoder = load_encoder(args.checkpoint, "cpu")
        padded_index(settings, sessions, encoder, args.codes)
        with sessions() as session:
            version = active_version(session, "bench")
            assert version is not None
            index = load_index("bench", version, threads=1)  # one FAISS thread per search, as served
        times = measure(encoder, index, sessions, split_sketches(), args.rounds, settings.max_sketch_pixels)
        engine.dispose()
    result = {
        "index_codes": args.codes,
        "k": K,
        "searches_per_condition": len(times["warm"]["scan"]),
        "backend": encoder.backend,
        "stages": summary(times),
    }
    write_result("after_network", result, "python -m benchmarks.after_network")


if __name__ == "__main__":
    main()
