"""Gallery photos and their thumbnails, found by database id only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from app.db.models import ImageRecord
from app.errors import APIError
from app.state import ServiceState

MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def image_record(state: ServiceState, image_id: int) -> ImageRecord:
    with state.sessions() as session:
        record = session.get(ImageRecord, image_id)
    if record is None:
        raise APIError(404, "unknown_image", f"there is no image with id {image_id}")
    if not Path(record.stored_path).is_file():
        raise APIError(404, "image_missing", f"image {image_id} is no longer in its gallery's storage")
    return record


def thumbnail_path(state: ServiceState, record: ImageRecord) -> Path:
    """A JPEG thumbnail cached by content hash and size; made on first request."""
    size = state.settings.thumbnail_size
    path = state.settings.data_dir / "cache" / "thumbs" / f"{record.sha256}-{size}.jpg"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(record.stored_path) as im:
            thumb = ImageOps.exif_transpose(im).convert("RGB")
            thumb.thumbnail((size, size))
    except OSError as exc:
        raise APIError(404, "image_unreadable", f"image {record.id} cannot be read: {exc}") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    thumb.save(tmp, "JPEG", quality=85)
    os.replace(tmp, path)
    return path
