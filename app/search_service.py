"""A search from PNG bytes to ranked results; no HTTP here beyond the APIError it raises.

Nothing blocking runs on the event loop: the database and the ranking run in worker threads, and the
sketch is decoded and preprocessed on the encoder's pool, inside its bounded queue, so a flood of
expensive uploads meets the 429 limit before any of them is decoded.
"""

from __future__ import annotations

import time

from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.errors import APIError
from app.schemas import GalleryInfo, Match, SearchResponse
from app.state import ServiceState
from catalog.galleries import gallery_names, resolve_gallery
from catalog.index_store import LoadedIndex
from catalog.ranking import RERANK_CANDIDATES, RankedImage, resolve, scan
from model.encode_batcher import Busy
from model.factory import Codes
from model.imageio import ImageRejected, decode_image, is_png
from model.preprocessing import BlankSketchError


def decode_sketch(data: bytes, max_pixels: int) -> Image.Image:
    if not is_png(data):
        raise APIError(415, "not_png", "the sketch must be a PNG image (the file's signature is not PNG)")
    try:
        return decode_image(data, max_pixels, formats=("PNG",))
    except ImageRejected as exc:
        if exc.reason == "too_large":
            raise APIError(413, "too_many_pixels", str(exc)) from None
        raise APIError(422, "unreadable_sketch", f"the sketch could not be read: {exc}") from None


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


async def encode_sketch(state: ServiceState, data: bytes) -> Codes:
    metrics, encoder = state.metrics, state.encoder

    def prepare():
        with metrics.timed("decode"):
            image = decode_sketch(data, state.settings.max_sketch_pixels)
        with metrics.timed("preprocess"):
            return encoder.prepare_sketches([image])

    try:
        return await state.batcher.encode(prepare)
    except BlankSketchError as exc:
        raise APIError(422, "blank_sketch", str(exc)) from None
    except Busy:
        raise APIError(
            429, "busy", "too many searches are waiting; try again in a moment", {"Retry-After": "1"}
        ) from None


def _served_index(state: ServiceState, gallery: str | None) -> LoadedIndex | None:
    """The common case (the page names its gallery) without a database query or a thread hop: the named
    or default gallery is being served. Anything else (no name, unknown, no index) takes the full path."""
    name = gallery or state.settings.default_gallery
    return state.indexes.get(name) if name is not None else None


async def search(state: ServiceState, data: bytes, gallery: str | None, k: int) -> SearchResponse:
    started = time.perf_counter()
    served = _served_index(state, gallery)
    index = served if served is not None else await run_in_threadpool(_index_for, state, gallery)
    codes = await encode_sketch(state, data)

    def ranked() -> list[RankedImage]:
        with state.metrics.timed("scan"):
            found = scan(index, codes.packed[0], max(k, RERANK_CANDIDATES))
        with state.metrics.timed("rank"):
            return resolve(state.sessions, index, found, k, codes.continuous[0])

    results = await run_in_threadpool(ranked)
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
    )


def public_galleries(state: ServiceState) -> list[GalleryInfo]:
    """What the search page needs to offer a choice: names, sizes, whether they can be searched."""
    with state.sessions() as session:
        names = gallery_names(session)
    loaded = state.indexes.loaded
    return [
        GalleryInfo(name=n, indexed=n in loaded, image_count=loaded[n].count if n in loaded else 0)
        for n in names
    ]
