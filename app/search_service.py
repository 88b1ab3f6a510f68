"""A search from PNG bytes to ranked results; no HTTP here beyond the APIError it raises.

Nothing blocking runs on the event loop: the database and the ranking run in worker threads, and the
sketch is decoded and preprocessed on the encoder's pool, inside its bounded queue, so a flood of
expensive uploads meets the 429 limit before any of them is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from app.errors import APIError, image_rejected
from app.explain_service import EXPLAIN_TOP, explain_photos, explain_sketch
from app.schemas import (
    ClassGuess,
    GalleryInfo,
    Match,
    SearchResponse,
    SearchWarning,
    SearchWarningCode,
)
from app.state import ServiceState
from catalog.db.models import Gallery, ImageRecord
from catalog.errors import NotFound
from catalog.galleries import gallery_labels, gallery_names, normal_label, resolve_gallery
from catalog.index_store import LoadedIndex
from catalog.ranking import Ranking, search_codes, similar_to
from model.encode_batcher import Busy
from model.encoding import Codes
from model.imageio import ImageRejected, RejectReason, decode_sketch_png
from model.preprocessing import BlankSketchError, ink_map, photo_check_ink, photo_judged

GUESSES = 5


def decode_sketch(data: bytes, max_pixels: int) -> Image.Image:
    """``decode_sketch_png``, its refusals as APIErrors: 415 ``not_png``, 413 ``too_many_pixels``, 422
    ``unreadable_sketch``."""
    try:
        return decode_sketch_png(data, max_pixels)
    except ImageRejected as exc:
        if exc.reason == RejectReason.UNSUPPORTED_FORMAT:
            raise APIError(415, "not_png", str(exc)) from None
        if exc.reason == RejectReason.TOO_LARGE:
            raise image_rejected(exc, "too_many_pixels", str(exc)) from None
        raise image_rejected(exc, "unreadable_sketch", f"the sketch could not be read: {exc}") from None


def _index_for(state: ServiceState, gallery: str | None) -> LoadedIndex:
    with state.sessions() as session:
        name = resolve_gallery(session, gallery, state.settings.default_gallery, state.indexes.loaded.keys())
    index = state.indexes.get(name)
    if index is None:
        raise APIError(  # the gallery is in the wrong state for a search: a conflict, not an outage
            409,
            "no_index",
            f"gallery {name!r} has no active index yet: build one with 'indexer build --gallery {name}' "
            f"or POST /admin/galleries/{name}/reindex",
        )
    return index


PHOTO_WARNING = SearchWarning(
    code=SearchWarningCode.LOOKS_LIKE_PHOTO,
    message="this looks like a photo rather than a drawing: it was searched as a drawing, so the "
    "results may not mean much; draw the outline of what you are looking for instead",
)


@dataclass
class EncodedSketch:
    codes: Codes
    image: Image.Image  # as decoded: explain lays the attention map back over it
    prepared: np.ndarray  # the network's input, (1, 3, S, S)


def sketch_warnings(image: Image.Image, photo_ink: np.ndarray) -> list[SearchWarning]:
    """The warnings for a sketch, from the image and its ``photo_check_ink``."""
    return [PHOTO_WARNING] if photo_judged(image, photo_ink) else []


async def encode_sketch(
    state: ServiceState, data: bytes, then: Callable[[EncodedSketch, np.ndarray], Any]
) -> tuple[EncodedSketch, Any]:
    """The sketch decoded, prepared and encoded, and what ``then`` makes of it and of its ink map as
    the photo check reads it (``photo_check_ink``), on a pool thread straight after the network: the
    ranking, without a hop back to the event loop first. Only that small map is kept while the sketch
    waits for the network (a 2048x2048 sketch's full map is 17 MB)."""
    metrics, encoder = state.metrics, state.encoder
    kept: dict[str, Any] = {}

    def prepare():
        with metrics.timed("decode"):
            kept["image"] = decode_sketch(data, state.settings.max_sketch_pixels)
        with metrics.timed("preprocess"):
            ink = ink_map(kept["image"])  # once: the network's input and the photo check read it
            kept["prepared"] = encoder.prepare_sketches([kept["image"]], [ink])
            kept["photo_ink"] = photo_check_ink(kept["image"], ink)
            return kept["prepared"]

    def follow_up(codes: Codes) -> tuple[EncodedSketch, Any]:
        sketch = EncodedSketch(codes, kept["image"], kept["prepared"])
        return sketch, then(sketch, kept.pop("photo_ink"))

    try:
        return await state.batcher.encode(prepare, follow_up)
    except BlankSketchError as exc:  # blank_sketch, sketch_too_small
        raise APIError(422, exc.code, str(exc)) from None
    except Busy:
        raise APIError(
            429, "busy", "too many searches are waiting; try again in a moment", {"Retry-After": "1"}
        ) from None


def _served_index(state: ServiceState, gallery: str | None) -> LoadedIndex | None:
    """The common case (the page names its gallery) without a database query or a thread hop: the named
    or default gallery is being served. Anything else (no name, unknown, no index) takes the full path."""
    name = gallery or state.settings.default_gallery
    return state.indexes.get(name) if name is not None else None


def class_guesses(state: ServiceState, continuous: np.ndarray, labels: frozenset[str]) -> list[ClassGuess]:
    """The model's top classes for the sketch, each saying whether the gallery has photos of it."""
    names = state.encoder.class_names
    if not names:
        return []
    probabilities = state.encoder.sketch_class_probabilities(continuous.reshape(1, -1))[0]
    top = np.argsort(-probabilities, kind="stable")[:GUESSES]
    return [
        ClassGuess(
            label=names[i], probability=round(float(probabilities[i]), 4), in_gallery=names[i] in labels
        )
        for i in top
    ]


def labels_of(state: ServiceState, index: LoadedIndex) -> frozenset[str]:
    """The labels of the index's gallery, read once per index version."""
    labels = state.version_labels.get(index.version_id)
    if labels is None:
        with state.sessions() as session:
            labels = gallery_labels(session, index.gallery_id)
        state.version_labels[index.version_id] = labels
    return labels


LABELS_NAMED = 12  # an unknown label's error names this many of the gallery's labels


def applicable_label(labels: frozenset[str], gallery: str, label: str | None) -> str | None:
    """The label filter against the gallery's ``labels`` (``labels_of``): None when none was asked for
    or the gallery has no labels at all (then nothing is filtered). A label none of a labelled gallery's
    photos carries is APIError 422 ``unknown_label``: the filter could only answer an empty page."""
    if label is None:
        return None
    label = normal_label(label)  # as stored: NFC, whichever form the client sent
    if not labels or label in labels:
        return label if labels else None
    named = ", ".join(sorted(labels)[:LABELS_NAMED])
    more = f" and {len(labels) - LABELS_NAMED} more" if len(labels) > LABELS_NAMED else ""
    raise APIError(
        422,
        "unknown_label",
        f"no photo in gallery {gallery!r} is labelled {label!r}; its labels are {named}{more}",
    )


def relevance_cutoff(matches: list[Match], min_similarity: float | None) -> tuple[list[Match], int]:
    """The matches whose reported ``similarity`` reaches ``min_similarity`` (all of them for None),
    ranked 1.. again, and how many were left out. The one place the cutoff is applied: to the very value
    each match reports, so it keeps meaning what the answer says however similarity is defined."""
    if min_similarity is None:
        return matches, 0
    kept = [m for m in matches if m.similarity >= min_similarity]
    for n, match in enumerate(kept, start=1):
        match.rank = n
    return kept, len(matches) - len(kept)


# The matches validated in one call into pydantic-core rather than one model at a time: the answer's
# building is on a search's path.
_MATCHES = TypeAdapter(list[Match])


def _response(
    index: LoadedIndex,
    ranking: Ranking,
    started: float,
    min_similarity: float | None,
    **fields: Any,
) -> SearchResponse:
    matches = _MATCHES.validate_python(
        [
            {
                "rank": n,
                "image_id": r.image_id,
                "label": r.label,
                "url": f"/images/{r.image_id}",
                "thumbnail_url": f"/images/{r.image_id}/thumbnail",
                "hamming_distance": r.hamming_distance,
                "similarity": round(r.similarity(index.bits), 4),
                "distance": round(r.distance, 4),
            }
            for n, r in enumerate(ranking.images, start=1)
        ]
    )
    kept, below = relevance_cutoff(matches, min_similarity)
    return SearchResponse(
        gallery=index.gallery,
        index_version=index.version_id,
        bits=index.bits,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        results=kept,
        min_similarity=min_similarity,
        below_cutoff=below,
        **fields,
    )


async def _explain(state: ServiceState, sketch: EncodedSketch, response: SearchResponse) -> None:
    def work() -> None:
        with state.metrics.timed("explain"):
            response.explanation = explain_sketch(state, sketch.image, sketch.prepared)
            maps = explain_photos(state, [m.image_id for m in response.results[:EXPLAIN_TOP]])
            for match in response.results:
                match.attention = maps.get(match.image_id)

    with state.explain_slots:
        await run_in_threadpool(work)


async def search(
    state: ServiceState,
    data: bytes,
    gallery: str | None,
    k: int,
    label: str | None = None,
    explain: bool = False,
    min_similarity: float | None = None,
) -> SearchResponse:
    started = time.perf_counter()
    served = _served_index(state, gallery)
    index = served if served is not None else await run_in_threadpool(_index_for, state, gallery)

    def ranked(
        sketch: EncodedSketch, photo_ink: np.ndarray
    ) -> tuple[Ranking, str | None, list[ClassGuess], list[SearchWarning]]:
        codes = sketch.codes
        labels = labels_of(state, index)  # a database query once per index version: off the event loop
        applied = applicable_label(labels, index.gallery, label)

        def other_parts() -> tuple[list[ClassGuess], list[SearchWarning]]:
            return class_guesses(state, codes.continuous[0], labels), sketch_warnings(sketch.image, photo_ink)

        # The answer's other parts are worked out on another pool thread while this one ranks (FAISS
        # scans without the GIL): off a lone search's critical path.
        others = state.batcher.beside(other_parts)
        try:
            ranking = search_codes(state.sessions, index, codes.packed[0], codes.continuous[0], k, applied)
        except BaseException:
            others.cancel()  # e.g. the database is down: the answer's other parts are not needed
            raise
        state.metrics.record_ranking(ranking)
        return ranking, applied, *others()

    sketch, (ranking, applied, guesses, warnings) = await encode_sketch(state, data, ranked)
    response = _response(
        index, ranking, started, min_similarity, guesses=guesses, label=applied, warnings=warnings
    )
    if explain:
        await _explain(state, sketch, response)
        response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response


def _similar(
    state: ServiceState, image_id: int, k: int, label: str | None
) -> tuple[LoadedIndex, Ranking, str | None]:
    with state.sessions() as session:
        record = session.get(ImageRecord, image_id)
        if record is None:
            raise NotFound("unknown_image", f"there is no image with id {image_id}")
        gallery = session.get(Gallery, record.gallery_id)
        assert gallery is not None
        name = gallery.name
    index = state.indexes.get(name)
    if index is None:
        raise APIError(409, "no_index", f"gallery {name!r} has no active index yet: reindex it first")
    applied = applicable_label(labels_of(state, index), index.gallery, label)
    ranking = similar_to(state.sessions, index, image_id, k, applied)
    state.metrics.record_ranking(ranking)  # its stages and inexact rankings count like a search's
    return index, ranking, applied


async def similar(
    state: ServiceState,
    image_id: int,
    k: int,
    label: str | None = None,
    min_similarity: float | None = None,
) -> SearchResponse:
    """ "More like this": the gallery ranked by one of its photos' own code (the photo itself left out)."""
    started = time.perf_counter()
    index, ranking, applied = await run_in_threadpool(_similar, state, image_id, k, label)
    return _response(index, ranking, started, min_similarity, guesses=[], label=applied)


def public_galleries(state: ServiceState) -> list[GalleryInfo]:
    """What the search page needs to offer a choice: names, whether they can be searched, and how many
    photos a search can return (those of the served index not deleted since its build)."""
    loaded = state.indexes.loaded
    with state.sessions() as session:
        names = gallery_names(session)
    held = state.photo_counts.of(state.sessions, [index.version_id for index in loaded.values()])
    return [
        GalleryInfo(
            name=n, indexed=n in loaded, image_count=held.get(loaded[n].version_id, 0) if n in loaded else 0
        )
        for n in names
    ]
