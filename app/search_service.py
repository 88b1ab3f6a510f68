"""A search from PNG bytes to ranked results; no HTTP here beyond the APIError it raises."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from app.db.models import Gallery, ImageRecord
from app.encode_batcher import Busy
from app.errors import APIError
from app.state import ServiceState
from model.imageio import ImageRejected, decode_image, is_png
from model.preprocessing import BlankSketchError


def resolve_gallery(state: ServiceState, name: str | None) -> str:
    """The named gallery, else the configured default, else the only one there is."""
    with state.sessions() as session:
        names = list(session.scalars(select(Gallery.name).order_by(Gallery.name)))
    if name is None:
        name = state.settings.default_gallery or (names[0] if len(names) == 1 else None)
        if name is None:
            if not names:
                raise APIError(
                    503, "no_gallery", "no gallery exists yet: register one with POST /admin/galleries"
                )
            raise APIError(
                422,
                "gallery_required",
                f"several galleries exist; choose one with ?gallery= ({', '.join(names)})",
            )
    if name not in names:
        raise APIError(404, "unknown_gallery", f"there is no gallery named {name!r}")
    return name


def decode_sketch(data: bytes, max_pixels: int) -> Any:
    if not is_png(data):
        raise APIError(415, "not_png", "the sketch must be a PNG image (the file's signature is not PNG)")
    try:
        return decode_image(data, max_pixels, formats=("PNG",))
    except ImageRejected as exc:
        if exc.reason == "too_large":
            raise APIError(413, "too_many_pixels", str(exc)) from None
        raise APIError(422, "unreadable_sketch", f"the sketch could not be read: {exc}") from None


async def search(state: ServiceState, data: bytes, gallery: str | None, k: int) -> dict[str, Any]:
    started = time.perf_counter()
    metrics = state.metrics
    name = resolve_gallery(state, gallery)
    index = state.indexes.get(name)
    if index is None:
        raise APIError(
            503,
            "no_index",
            f"gallery {name!r} has no active index yet: build one with 'indexer build --gallery {name}' "
            f"or POST /admin/galleries/{name}/reindex",
        )
    with metrics.timed("decode"):
        image = decode_sketch(data, state.settings.max_pixels)
    encoder = state.encoder

    def prepare() -> Any:
        with metrics.timed("preprocess"):
            return encoder.prepare_sketches([image])

    try:
        codes = await state.batcher.encode(prepare)
    except BlankSketchError as exc:
        raise APIError(422, "blank_sketch", str(exc)) from None
    except Busy:
        raise APIError(
            429, "busy", "too many searches are waiting; try again in a moment", {"Retry-After": "1"}
        ) from None
    with metrics.timed("search"):
        distances, ids = index.search(codes, k)
    id_list = [int(i) for i in ids[0] if i >= 0]
    with state.sessions() as session:
        rows = {r.id: r for r in session.scalars(select(ImageRecord).where(ImageRecord.id.in_(id_list)))}
    results = []
    for dist, image_id in zip(distances[0], ids[0], strict=True):
        record = rows.get(int(image_id))
        if record is None:  # deleted since the index was built
            continue
        results.append(
            {
                "rank": len(results) + 1,
                "image_id": record.id,
                "label": record.label,
                "url": f"/images/{record.id}",
                "thumbnail_url": f"/images/{record.id}/thumbnail",
                "hamming_distance": int(dist),
                "similarity": round(1 - int(dist) / index.bits, 4),
            }
        )
    return {
        "gallery": name,
        "index_version": index.version_id,
        "bits": index.bits,
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
        "results": results,
    }


def public_galleries(state: ServiceState) -> list[dict[str, Any]]:
    """What the search page needs to offer a choice: names, sizes, whether they can be searched."""
    with state.sessions() as session:
        names = list(session.scalars(select(Gallery.name).order_by(Gallery.name)))
    loaded = state.indexes.loaded
    return [
        {"name": n, "indexed": n in loaded, "image_count": loaded[n].index.ntotal if n in loaded else 0}
        for n in names
    ]
