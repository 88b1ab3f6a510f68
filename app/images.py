"""Gallery photos and their thumbnails, found by database id only, and served only when safe.

A stored path is a pointer into a folder the server does not own: the file there can be replaced after
indexing (by a symlink to /etc/passwd, say). So a photo is served only when it is still the regular file
that was indexed — inside its gallery's folder (linked sub-folders allowed, as the scan follows them)
or inside the upload store, not itself a link, and with the size and sha256 recorded at indexing.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from app.errors import APIError
from app.state import ServiceState
from catalog.db.models import Gallery, ImageRecord
from catalog.enums import ImageOrigin
from model.files import atomic_write
from model.imageio import ImageRejected, decode_photo


def _gone(image_id: int) -> APIError:
    return APIError(404, "image_missing", f"image {image_id} is no longer in its gallery's storage")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _reachable(record: ImageRecord, gallery: Gallery, uploads: Path) -> bool:
    """The path lies in the upload store or under the gallery's folder, and its last part is no link."""
    path = Path(os.path.abspath(record.stored_path))
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False  # a link (or anything but a plain file) where the photo was
        if record.origin == ImageOrigin.UPLOAD:
            return _inside(path.resolve(strict=True), uploads.resolve())
        return gallery.source_dir is not None and _inside(path, Path(os.path.abspath(gallery.source_dir)))
    except OSError:
        return False


def _same_content(record: ImageRecord) -> bool:
    digest = hashlib.sha256()
    try:
        with open(record.stored_path, "rb") as f:
            if os.fstat(f.fileno()).st_size != record.size_bytes:
                return False
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == record.sha256


def image_record(state: ServiceState, image_id: int) -> ImageRecord:
    with state.sessions() as session:
        record = session.get(ImageRecord, image_id)
        gallery = session.get(Gallery, record.gallery_id) if record is not None else None
    if record is None or gallery is None:
        raise APIError(404, "unknown_image", f"there is no image with id {image_id}")
    if not _reachable(record, gallery, state.settings.upload_dir) or not _same_content(record):
        raise _gone(image_id)
    return record


def thumbnail_path(state: ServiceState, record: ImageRecord) -> Path:
    """A JPEG thumbnail cached by content hash and size; made on first request from verified bytes."""
    size = state.settings.thumbnail_size
    path = state.settings.thumb_cache / f"{record.sha256}-{size}.jpg"
    if path.exists():
        return path
    try:
        # upright, and decoded no larger than the thumbnail needs (a 48 MP JPEG at 1/8 scale)
        thumb = decode_photo(Path(record.stored_path).read_bytes(), state.settings.max_pixels, size)
        thumb.thumbnail((size, size))
    except ImageRejected as exc:
        raise APIError(404, "image_unreadable", f"image {record.id} cannot be shown: {exc.reason}") from None
    except OSError:
        raise _gone(record.id) from None
    atomic_write(path, lambda tmp: thumb.save(tmp, "JPEG", quality=85), durable=False)
    return path
