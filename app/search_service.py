"""A search from PNG bytes to ranked results; no HTTP here beyond the APIError it raises.

Nothing blocking runs on the event loop: the database and the ranking run in worker threads, and the
sketch is decoded and preprocessed on the encoder's pool, inside its bounded queue, so a flood of
expensive uploads meets the 429 limit before any of them is decoded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
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
from catalog.galleries import gallery_has_labels, gallery_names, normal_label, resolve_gallery
from catalog.index_store import LoadedIndex
from catalog.ranking import RankedImage, resolve, scan, scan_depth
from model.encode_batcher import Busy
from model.factory import Codes
from model.hashing import unpack_bits
from model.imageio import ImageRejected, RejectReason, decode_image, is_png
from model.preprocessing import BlankSketchError, looks_like_photo

GUESSES = 5


def decode_sketch(data: bytes, max_pixels: int) -> Image.Image:
    if not is_png(data):
        raise APIError(415, "not_png", "the sketch must be a PNG image (the file's signature is not PNG)")
    try:
        return decode_image(data, max_pixels, formats=("PNG",))
    except ImageRejected as exc:
        if exc.reason == RejectReason.TOO_LARGE:
            raise image_rejected(exc, "too_many_pixels", str(exc)) from None
        raise image_rejected(exc, "unreadable_sketch", f"the sketch could not be read: {exc}") from None


def _index_for(state: ServiceState, gallery: str | None) -> LoadedIndex:
    with state.sessions() as session:
        name = resolve_gallery(session, gallery, state.settings.default_gallery)
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
    prepared: torch.Tensor
    warnings: list[SearchWarning]


async def encode_sketch(state: ServiceState, data: bytes) -> EncodedSketch:
    metrics, encoder = state.metrics, state.encoder
    kept: dict[str, Any] = {}

    def prepare():
        with metrics.timed("decode"):
            kept["image"] = decode_sketch(data, state.settings.max_sketch_pixels)
        with metrics.timed("preprocess"):
            kept["prepared"] = encoder.prepare_sketches([kept["image"]])
            kept["warnings"] = [PHOTO_WARNING] if looks_like_photo(kept["image"]) else []
            return kept["prepared"]

    try:
        codes = await state.batcher.encode(prepare)
    except BlankSketchError as exc:  # blank_sketch, sketch_too_small
        raise APIError(422, exc.code, str(exc)) from None
    except Busy:
        raise APIError(
            429, "busy", "too many searches are waiting; try again in a moment", {"Retry-After": "1"}
        ) from None
    return EncodedSketch(codes, kept["image"], kept["prepared"], kept["warnings"])


def _served_index(state: ServiceState, gallery: str | None) -> LoadedIndex | None:
    """The common case (the page names its gallery) without a database query or a thread hop: the named
    or default gallery is being served. Anything else (no name, unknown, no index) takes the full path."""
    name = gallery or state.settings.default_gallery
    return state.indexes.get(name) if name is not None else None


def class_guesses(state: ServiceState, continuous: np.ndarray) -> list[ClassGuess]:
    names = state.encoder.class_names
    if not names:
        return []
    probabilities = state.encoder.sketch_class_probabilities(continuous.reshape(1, -1))[0]
    top = np.argsort(-probabilities, kind="stable")[:GUESSES]
    return [ClassGuess(label=names[i], probability=round(float(probabilities[i]), 4)) for i in top]


def applicable_label(state: ServiceState, index: LoadedIndex, label: str | None) -> str | None:
    """The label filter, unless the gallery has no labels at all (then nothing is filtered)."""
    if label is None:
        return None
    label = normal_label(label)  # as stored: NFC, whichever form the client sent
    labelled = state.labelled_versions.get(index.version_id)
    if labelled is None:
        with state.sessions() as session:
            labelled = gallery_has_labels(session, index.gallery_id)
        state.labelled_versions[index.version_id] = labelled
    return label if labelled else None


def _response(
    index: LoadedIndex, results: list[RankedImage], started: float, **fields: Any
) -> SearchResponse:
    return SearchResponse(
        gallery=index.gallery,
        index_version=index.version_id,
        bits=index.bits,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        results=[
            Match(
                rank=n,
                image_id=r.image_id,
                label=r.label,
                url=f"/images/{r.image_id}",
                thumbnail_url=f"/images/{r.image_id}/thumbnail",
                hamming_distance=r.hamming_distance,
                similarity=round(1 - r.hamming_distance / index.bits, 4),
                distance=round(r.distance, 4),
            )
            for n, r in enumerate(results, start=1)
        ],
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
) -> SearchResponse:
    started = time.perf_counter()
    served = _served_index(state, gallery)
    index = served if served is not None else await run_in_threadpool(_index_for, state, gallery)
    sketch = await encode_sketch(state, data)
    codes = sketch.codes

    def ranked() -> tuple[list[RankedImage], str | None]:
        applied = applicable_label(state, index, label)
        with state.metrics.timed("scan"):
            found = scan(index, codes.packed[0], scan_depth(k, applied))
        with state.metrics.timed("rank"):
            return resolve(state.sessions, index, found, k, codes.continuous[0], applied), applied

    results, applied = await run_in_threadpool(ranked)
    response = _response(
        index,
        results,
        started,
        guesses=class_guesses(state, codes.continuous[0]),
        label=applied,
        warnings=sketch.warnings,
    )
    if explain:
        await _explain(state, sketch, response)
        response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response


def _similar(
    state: ServiceState, image_id: int, k: int, label: str | None
) -> tuple[LoadedIndex, list[RankedImage], str | None]:
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
    position = index.position_of(image_id)
    if position is None:
        raise APIError(
            409,
            "not_indexed",
            f"photo {image_id} was added to gallery {name!r} after its index was built: reindex it first",
        )
    packed = index.codes_at(np.array([position]))[0]
    # the photo's own bits as the query: the re-ranking distance is then the Hamming distance
    query = unpack_bits(packed.reshape(1, -1), index.bits)[0].astype(np.float32)
    applied = applicable_label(state, index, label)
    found = scan(index, packed, scan_depth(k + 1, applied))
    return index, resolve(state.sessions, index, found, k, query, applied, exclude=image_id), applied


async def similar(state: ServiceState, image_id: int, k: int, label: str | None = None) -> SearchResponse:
    """ "More like this": the gallery ranked by one of its photos' own code (the photo itself left out)."""
    started = time.perf_counter()
    index, results, applied = await run_in_threadpool(_similar, state, image_id, k, label)
    return _response(index, results, started, guesses=[], label=applied)


def public_galleries(state: ServiceState) -> list[GalleryInfo]:
    """What the search page needs to offer a choice: names, sizes, whether they can be searched."""
    with state.sessions() as session:
        names = gallery_names(session)
    loaded = state.indexes.loaded
    return [
        GalleryInfo(name=n, indexed=n in loaded, image_count=loaded[n].count if n in loaded else 0)
        for n in names
    ]
