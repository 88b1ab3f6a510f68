"""From a sketch's codes to ranked gallery images: the one ranking used by the service and the CLI.

FAISS returns the Hamming-nearest candidates (a few hundred); they are re-ranked by the asymmetric
distance between the sketch's continuous code and each photo's stored bits, which breaks the ties
64-bit Hamming distances are full of. The photos' codes stay binary. One database query fetches the
candidates' rows, restricted to the index's own gallery, so an id never resolves to another gallery's
photo, and a photo deleted since the build simply drops out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from catalog.db.models import ImageRecord
from catalog.index_store import LoadedIndex
from model.hashing import asymmetric_distances, unpack_bits

# How many Hamming-nearest candidates are re-ranked. Chosen with `python -m benchmarks.rerank_depth`
# (docs/benchmarks/rerank_depth.json): on the dev split, the re-ranked top 100 of 300 candidates equals
# the exhaustive asymmetric ranking's top 100 for nearly every query; the search stays one FAISS call.
RERANK_CANDIDATES = 300
FETCH_SLACK = 16  # rows fetched beyond k, for photos deleted since the index was built
# With a label filter most candidates are dropped, so ten times as many are scanned: on the demo gallery
# (25 photos a class among 3,125) the filtered top 20 then still comes from the class's own photos.
LABEL_CANDIDATES = 10 * RERANK_CANDIDATES


@dataclass(frozen=True)
class RankedImage:
    image_id: int
    label: str | None
    stored_path: str
    hamming_distance: int
    distance: float  # asymmetric: squared L2 from the sketch's continuous code to the photo's bits


def rerank_order(
    index: LoadedIndex, positions: np.ndarray, continuous: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Order of ``positions`` by asymmetric distance (stable, so Hamming order breaks exact ties)."""
    bits = unpack_bits(index.codes_at(positions), index.bits)
    distances = asymmetric_distances(continuous.reshape(1, -1), bits)[0]
    order = np.argsort(distances, kind="stable")
    return order, distances


@dataclass(frozen=True)
class Candidates:
    hamming: np.ndarray  # distances, nearest first
    positions: np.ndarray  # positions in the index (never -1)


def scan(index: LoadedIndex, packed: np.ndarray, depth: int) -> Candidates:
    """The FAISS step: the ``depth`` Hamming-nearest codes, without the -1 padding of a small index."""
    hamming, positions = index.search(packed.reshape(1, -1), depth)
    keep = positions[0] >= 0
    return Candidates(hamming[0][keep], positions[0][keep])


def rank(
    sessions: sessionmaker[Session],
    index: LoadedIndex,
    packed: np.ndarray,
    k: int,
    continuous: np.ndarray | None = None,
    candidates: int = RERANK_CANDIDATES,
) -> list[RankedImage]:
    """The k best images of the index's gallery for one query (packed code, and continuous to re-rank)."""
    depth = max(k, candidates) if continuous is not None else k
    return resolve(sessions, index, scan(index, packed, depth), k, continuous)


def scan_depth(k: int, label: str | None) -> int:
    return max(k, LABEL_CANDIDATES if label is not None else RERANK_CANDIDATES)


def resolve(
    sessions: sessionmaker[Session],
    index: LoadedIndex,
    found: Candidates,
    k: int,
    continuous: np.ndarray | None = None,
    label: str | None = None,
    exclude: int | None = None,
) -> list[RankedImage]:
    """Re-rank the candidates (when the continuous code is given) and fetch their rows in one query.

    ``label`` keeps only photos with that label (one query over all candidates, since most drop out);
    ``exclude`` drops one image id (the query photo of a "more like this" search)."""
    hamming, positions = found.hamming, found.positions
    if continuous is not None:
        order, asym = rerank_order(index, positions, continuous)
    else:
        order, asym = np.arange(len(positions)), np.full(len(positions), np.nan)
    ids = index.ids[positions]
    results: list[RankedImage] = []
    with sessions() as session:
        # Rows only for the best candidates, in order; a photo deleted since the build is skipped and the
        # next chunk fetched, so the common case is one small query.
        start, chunk = 0, (len(order) if label is not None else k + FETCH_SLACK + (exclude is not None))
        while len(results) < k and start < len(order):
            window = order[start : start + chunk]
            wanted = [int(ids[j]) for j in window]
            # Three columns, not ORM objects: this runs on every search.
            query = select(ImageRecord.id, ImageRecord.label, ImageRecord.stored_path).where(
                ImageRecord.gallery_id == index.gallery_id, ImageRecord.id.in_(wanted)
            )
            if label is not None:
                query = query.where(ImageRecord.label == label)
            rows = {row.id: row for row in session.execute(query)}
            for j in window:
                row = rows.get(int(ids[j]))
                if row is not None and row.id != exclude and len(results) < k:
                    results.append(
                        RankedImage(row.id, row.label, row.stored_path, int(hamming[j]), float(asym[j]))
                    )
            start += chunk
    return results
