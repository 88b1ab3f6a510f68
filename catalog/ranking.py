"""From a query's codes to ranked gallery images: the one ranking used by the service and the CLI.

``search_codes`` ranks a gallery for a sketch, ``similar_to`` for one of its photos ("more like this").
Both go the same way:

1. FAISS returns the Hamming-nearest candidates (a few hundred) of the query's bits.
2. They are re-ranked by the asymmetric distance between the query's continuous code and each photo's
   stored bits (the photos' codes stay binary). That distance is a *weighted* Hamming distance to the
   query's own bits q = 1[c >= 0.5]: ||c - b||² = ||c - q||² + Σ_{j: b_j != q_j} |1 - 2 c_j|.
3. Exactness: every photo outside the candidates differs from q in more bits than the farthest complete
   Hamming shell, so its distance is at least ||c - q||² plus the sum of that many of the smallest
   weights. When the k-th best candidate is farther than that bound, the candidates are widened to the
   smallest Hamming radius whose outside cannot beat it (one FAISS range search; bounded by
   ``MAX_CANDIDATES``). So when thousands of photos tie at one Hamming distance, the result is the
   exact asymmetric top k over the whole gallery, not whichever tied rows FAISS happened to return
   first.
4. One database query maps the top positions to their photos (``catalog.index_rows``), restricted to the
   index's own gallery, so a row never resolves to another gallery's photo, and a photo deleted since
   the build simply drops out. Step 3 proves the rows read: when passing over deleted photos takes the
   reading past the rows proven, twice as many are proven and read again.

For "more like this" the query is the photo's own bits: every weight is 1, the distance is the Hamming
distance, and step 3 takes in the whole tie shell at the k-th place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from catalog.db.session import engine_of
from catalog.errors import Conflict
from catalog.index_rows import photos_at, position_of
from catalog.index_store import LoadedIndex
from model.hashing import asymmetric_distances, unpack_bits

# How many Hamming-nearest candidates are re-ranked before the exactness check widens them. Chosen with
# `python -m benchmarks.rerank_depth` (docs/benchmarks/rerank_depth.json).
RERANK_CANDIDATES = 300
# With a label filter most candidates are dropped, so ten times as many are scanned: on the demo gallery
# (25 photos a class among 3,125) the filtered top 20 then still comes from the class's own photos.
LABEL_CANDIDATES = 10 * RERANK_CANDIDATES
# The most candidates the exactness check may widen to (a FAISS range search and one re-rank of them).
MAX_CANDIDATES = 20_000
FETCH_SLACK = 16  # rows fetched beyond k, for photos deleted since the index was built


class RankedImage(NamedTuple):  # a tuple: cheaper to make than a frozen dataclass, k of them a search
    image_id: int
    label: str | None
    stored_path: str
    hamming_distance: int
    distance: float  # asymmetric: squared L2 from the query's continuous code to the photo's bits

    def similarity(self, bits: int) -> float:
        """1 - distance / bits, in [0, 1]: 1 when the photo's bits are the query's code exactly, 0 when
        every bit is the opposite. For a photo query it is 1 - Hamming / bits."""
        return max(0.0, 1.0 - self.distance / bits)


@dataclass(frozen=True)
class Ranking:
    images: list[RankedImage]
    candidates: int  # photos re-ranked
    exact: bool  # the top k is the exact asymmetric top k over the whole index (else MAX_CANDIDATES hit)
    # Per stage: "scan" (FAISS), "widen" (FAISS range), "rerank", "fetch" (database); summed over the
    # passes when photos deleted since the build took a ranking past the rows first proven exact.
    seconds: dict[str, float]


def candidate_depth(k: int, label: str | None) -> int:
    """How many Hamming-nearest candidates are re-ranked first: the one rule for every ranking."""
    return max(k, LABEL_CANDIDATES if label is not None else RERANK_CANDIDATES)


@dataclass(frozen=True)
class Candidates:
    positions: np.ndarray  # (n,) positions in the index, nearest first by asymmetric distance
    hamming: np.ndarray  # (n,) Hamming distances to the query's bits
    distances: np.ndarray  # (n,) asymmetric distances
    exact: bool
    scan_seconds: float  # the first FAISS search
    widen_seconds: float  # the range search that widened it (0 when not needed)
    # How many of the first rows are proven to be the exact asymmetric top of the whole index: at least
    # the k asked for when ``exact``; 0 when nothing is proven (an approximate index, a bound hit).
    proven: int = 0


# A distance within this of a bound counts as reaching it: the candidates' distances are float32.
BOUND_SLACK = 1e-6


class DistanceBound:
    """How near to the query a code can be once it lies outside a Hamming radius of q = 1[c >= 0.5]
    (the module's step 3): ||c - q||² plus the smallest weights |1 - 2 c_j|, one for each bit that differs."""

    def __init__(self, continuous: np.ndarray) -> None:
        weights = np.abs(1.0 - 2.0 * continuous.astype(np.float64))
        self.bits = len(weights)
        self.base = float(np.square(np.minimum(continuous, 1.0 - continuous)).sum())  # ||c - q||²
        # For h = 0..bits: the least extra distance of a code h bits away from q.
        self.least_extra = np.concatenate([[0.0], np.cumsum(np.sort(weights))])

    def outside(self, radius: int) -> float:
        """No code more than ``radius`` bits from q is nearer than this (inf: none can be that far)."""
        if radius >= self.bits:
            return np.inf
        return self.base + float(self.least_extra[radius + 1]) + BOUND_SLACK

    def radius_for(self, distance: float) -> int:
        """The smallest radius whose ``outside`` cannot beat ``distance``."""
        extra = distance - self.base - BOUND_SLACK
        return min(int(np.searchsorted(self.least_extra, extra, side="left")) - 1, self.bits)


def exact_candidates(
    index: LoadedIndex, packed: np.ndarray, continuous: np.ndarray, k: int, depth: int, widen: bool = True
) -> Candidates:
    """The ``depth`` Hamming-nearest codes, widened (once, straight to the radius the bound asks for)
    until they provably hold the exact asymmetric top ``k`` of the index (unless that would take more
    than ``MAX_CANDIDATES``, or ``widen`` is False), ordered by asymmetric distance (ties by Hamming
    distance, then position). ``packed`` (bits/8,), ``continuous`` (bits,)."""
    started = time.perf_counter()
    hamming, positions = index.search(packed.reshape(1, -1), depth)
    scan_seconds = time.perf_counter() - started
    hamming, positions = hamming[0], positions[0]
    if len(positions) and positions.min() < 0:  # -1: FAISS found fewer than asked (approximate indexes)
        keep = positions >= 0
        hamming, positions = hamming[keep], positions[keep]
    found = _ranked(index, continuous, positions, hamming, True, scan_seconds, 0.0)
    if len(positions) >= index.count or not len(positions):  # the whole index: exact by definition
        return replace(found, proven=len(positions))
    # Every code nearer than the farthest candidate is among the candidates; the farthest shell may be
    # cut. (With a flat index FAISS is exact; HNSW/IVF are approximate and are not widened.)
    bound = DistanceBound(continuous)
    kth = found.distances[min(k, len(found.distances)) - 1]
    # Codes outside the complete radius (one bit short of the farthest candidate) are never nearer.
    outside = bound.outside(int(hamming[-1]) - 1)
    if kth <= outside:
        return replace(found, proven=_proven_rows(found.distances, outside))
    if not widen or not index.is_flat:
        return replace(found, exact=False)
    # The smallest radius whose outside cannot beat the k-th: one range search.
    needed = bound.radius_for(kth)
    started = time.perf_counter()
    wider_pos, wider_ham = index.within(packed, needed)
    widen_seconds = time.perf_counter() - started
    if len(wider_pos) > MAX_CANDIDATES:
        return replace(found, exact=False, widen_seconds=widen_seconds)
    # The shell holds every earlier candidate: none is farther than the farthest, which needed reaches.
    wider = _ranked(index, continuous, wider_pos, wider_ham, True, scan_seconds, widen_seconds)
    return replace(wider, proven=_proven_rows(wider.distances, bound.outside(needed)))


def _proven_rows(distances: np.ndarray, bound: float) -> int:
    """How many of the first (ascending) ``distances`` no code outside the candidates can beat."""
    return int(np.searchsorted(distances, bound, side="right"))


def _ranked(
    index: LoadedIndex,
    continuous: np.ndarray,
    positions: np.ndarray,
    hamming: np.ndarray,
    exact: bool,
    scan_seconds: float,
    widen_seconds: float,
) -> Candidates:
    distances = asymmetric_distances(
        continuous.reshape(1, -1), unpack_bits(index.codes_at(positions), index.bits)
    )[0]
    order = np.lexsort((positions, hamming, distances))
    return Candidates(positions[order], hamming[order], distances[order], exact, scan_seconds, widen_seconds)


def _fetch(
    sessions: sessionmaker[Session],
    index: LoadedIndex,
    found: Candidates,
    k: int,
    label: str | None,
    exclude: int | None,
) -> tuple[list[RankedImage], int]:
    """The best ``k`` candidates' photos, in order, in as few queries as the deletes since the build
    allow, and how many candidates (best first) were read to find them: more than k when photos deleted
    since the build, another label's or ``exclude`` were passed over."""
    results: list[RankedImage] = []
    total, read = len(found.positions), 0
    engine = engine_of(sessions)
    # Rows only for the best candidates, in order; a photo deleted since the build is skipped and the
    # next chunk fetched, so the common case is one small query.
    start, chunk = 0, (total if label is not None else k + FETCH_SLACK + (exclude is not None))
    while len(results) < k and start < total:
        end = min(start + chunk, total)
        chunk *= 2  # many deleted: a few queries, not one per chunk of k
        window = found.positions[start:end].tolist()  # Python ints: indexing numpy per row costs more
        photos = photos_at(engine, index.version_id, index.gallery_id, window, label)
        for position, hamming, distance in zip(
            window, found.hamming[start:end].tolist(), found.distances[start:end].tolist(), strict=True
        ):
            read += 1
            photo = photos.get(position)
            if photo is not None and photo.image_id != exclude:
                results.append(RankedImage(photo.image_id, photo.label, photo.stored_path, hamming, distance))
                if len(results) == k:
                    return results, read
        start = end
    return results, read


def search_codes(
    sessions: sessionmaker[Session],
    index: LoadedIndex,
    packed: np.ndarray,
    continuous: np.ndarray,
    k: int,
    label: str | None = None,
    exclude: int | None = None,
) -> Ranking:
    """The k best images of the index's gallery for a query's packed (bits/8,) and continuous (bits,)
    codes, ``label`` keeping only photos with that label, ``exclude`` leaving one image id out.

    Without a label the top k is exact over the whole index (see the module's docstring); with one, the
    label's photos among the ``LABEL_CANDIDATES`` nearest are ranked (exact when the index holds no
    more photos than that)."""
    depth = candidate_depth(k + (exclude is not None), label)
    cont = np.asarray(continuous, np.float32)
    seconds = dict.fromkeys(("scan", "widen", "rerank", "fetch"), 0.0)  # summed over the passes
    # The exactness check asks for the rows a ranking reads: k (and the excluded photo), which widens
    # less often than covering the fetch's slack too (the widen stage in python -m
    # benchmarks.search_load's lone_against). Photos deleted since the build that were passed over can
    # take the reading past the rows proven exact; then twice as many are proven and read again. With a
    # label the label's photos among the nearest are ranked, never proven exact: no widening.
    wanted = depth if label is not None else k + (exclude is not None)
    while True:
        started = time.perf_counter()
        found = exact_candidates(index, packed, cont, wanted, max(depth, wanted), label is None)
        ranked = time.perf_counter()
        images, read = _fetch(sessions, index, found, k, label, exclude)
        seconds["scan"] += found.scan_seconds
        seconds["widen"] += found.widen_seconds
        seconds["rerank"] += ranked - started - found.scan_seconds - found.widen_seconds
        seconds["fetch"] += time.perf_counter() - ranked
        if label is not None or not found.exact or read <= found.proven:
            break
        wanted = 2 * read
    exact = found.exact and (label is None or len(found.positions) >= index.count)
    return Ranking(images, len(found.positions), exact, seconds)


class NotIndexed(Conflict):
    """The photo was added to its gallery after the active index was built."""

    def __init__(self, image_id: int, gallery: str) -> None:
        super().__init__(
            "not_indexed",
            f"photo {image_id} was added to gallery {gallery!r} after its index was built: reindex it first",
        )


def similar_to(
    sessions: sessionmaker[Session], index: LoadedIndex, image_id: int, k: int, label: str | None = None
) -> Ranking:
    """ "More like this": the index's gallery ranked by one of its photos' own bits, the photo left out.
    Raises NotIndexed when the photo is not in this index version."""
    with sessions() as session:
        position = position_of(session, index.version_id, image_id)
    if position is None:
        raise NotIndexed(image_id, index.gallery)
    packed = index.codes_at(np.array([position]))[0]
    bits = unpack_bits(packed.reshape(1, -1), index.bits)[0].astype(np.float32)
    return search_codes(sessions, index, packed, bits, k, label, exclude=image_id)
