"""``explain=1``: the attention masks behind a search, as small PNG heat maps in data URIs.

Only computed when asked, after the ranking, and one explanation at a time per process (a second one
waiting gets 429): the low-level network stages it runs would otherwise take the cores from plain
searches. The photos' masks come from the stored photo files and the edge-map cache.
"""

from __future__ import annotations

import base64

import numpy as np
from PIL import Image
from sqlalchemy import select

from app.errors import APIError
from app.schemas import Heatmap, SketchExplanation
from app.state import ServiceState
from catalog.db.models import ImageRecord
from model.edges.cache import EdgeCache
from model.explain import UNIFORM_SPAN, heatmap_png
from model.imageio import PHOTO_DECODING, ImageRejected, decode_photo
from model.preprocessing import sketch_frame

EXPLAIN_TOP = 8  # photos explained per search: the first row or two of the page


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def heatmap(mask: np.ndarray, crop: tuple[float, float, float, float] | None = None) -> Heatmap:
    lo, hi = float(mask.min()), float(mask.max())
    return Heatmap(
        png=data_uri(heatmap_png(mask, crop)), mask_min=lo, mask_max=hi, uniform=hi - lo < UNIFORM_SPAN
    )


def no_attention() -> APIError:
    return APIError(
        409, "no_attention", "the served model was trained without attention: there is nothing to show"
    )


def explain_sketch(state: ServiceState, image: Image.Image, prepared: np.ndarray) -> SketchExplanation:
    masks = state.encoder.sketch_attention(prepared)
    if masks is None:
        raise no_attention()
    left, top, side = sketch_frame(image)
    return SketchExplanation(
        **heatmap(masks[0]).model_dump(), box=[left, top, side], width=image.width, height=image.height
    )


def explain_photos(state: ServiceState, image_ids: list[int]) -> dict[int, Heatmap]:
    """Heat maps of the photos that can be read; a photo that cannot simply has none."""
    with state.sessions() as session:
        rows = session.execute(
            select(ImageRecord.id, ImageRecord.stored_path, ImageRecord.sha256).where(
                ImageRecord.id.in_(image_ids)
            )
        ).all()
    photos, hashes, ids = [], [], []
    for row in rows:
        try:
            with open(row.stored_path, "rb") as f:
                photos.append(decode_photo(f.read(), state.settings.max_pixels))
        except (OSError, ImageRejected):
            continue
        hashes.append(row.sha256)
        ids.append(row.id)
    if not photos:
        return {}
    encoder = state.encoder
    edges = (
        EdgeCache(state.settings.edge_cache / PHOTO_DECODING, encoder.edges).get_many(hashes, photos)
        if encoder.edges is not None
        else None
    )
    found = encoder.photo_attention(photos, edges)
    if found is None:
        raise no_attention()
    masks, areas = found
    return {image_id: heatmap(masks[i], areas[i]) for i, image_id in enumerate(ids)}
