"""Decoding untrusted image bytes safely: size checked from the header before any pixel is decoded.

The one table of the image formats the project reads (``FORMATS``): what a folder scan picks up, how an
upload is stored and what media type it is served with all come from it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageFormat:
    """One image format: Pillow's name for it, the suffix a stored copy gets, its media type, and every
    file-name suffix a folder scan takes for it."""

    name: str
    suffix: str
    media_type: str
    other_suffixes: tuple[str, ...] = ()

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (self.suffix, *self.other_suffixes)


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("JPEG", ".jpg", "image/jpeg", (".jpeg",)),
    ImageFormat("PNG", ".png", "image/png"),
    ImageFormat("WEBP", ".webp", "image/webp"),
)
FORMAT_NAMES = tuple(f.name for f in FORMATS)  # for Image.open(formats=...)
IMAGE_EXTENSIONS = frozenset(s for f in FORMATS for s in f.suffixes)  # what galleries and datasets pick up
_BY_NAME = {f.name: f for f in FORMATS}
_BY_SUFFIX = {s: f for f in FORMATS for s in f.suffixes}


def format_named(name: str | None) -> ImageFormat:
    """The table's entry for a Pillow format name; KeyError for one the table does not hold."""
    return _BY_NAME[name or ""]


def media_type(path: str | Path) -> str:
    """The media type a stored file is served with, from its suffix."""
    found = _BY_SUFFIX.get(Path(path).suffix.lower())
    return found.media_type if found else "application/octet-stream"


class RejectReason(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT = "corrupt"


class ImageRejected(ValueError):
    """The bytes are not a usable image; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


@contextmanager
def _rejections(damaged: str) -> Iterator[None]:
    """Pillow's ways of failing on bad bytes, as ImageRejected; ``damaged`` says what was being read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(
            RejectReason.TOO_LARGE, "the image has too many pixels (decompression bomb guard)"
        ) from None
    except UnidentifiedImageError:
        raise ImageRejected(
            RejectReason.NOT_AN_IMAGE, "the file is not an image in a supported format"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(RejectReason.CORRUPT, f"the image {damaged} ({exc})") from None


def _open_checked(data: bytes, max_pixels: int, formats: tuple[str, ...] | None) -> Image.Image:
    """Opened (header parsed, no pixel decoded) and its size checked against ``max_pixels``."""
    if not data:
        raise ImageRejected(RejectReason.EMPTY, "the file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        claimed = _signature_of(data, formats or FORMAT_NAMES)
        if claimed is None:
            raise
        raise ImageRejected(RejectReason.CORRUPT, f"the {claimed} image is damaged or truncated") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            RejectReason.TOO_LARGE,
            f"the image is {width}x{height} pixels, more than the limit of {max_pixels}",
        )
    return image


def _signature_of(data: bytes, formats: tuple[str, ...]) -> str | None:
    """The format whose signature the bytes start with, though Pillow could not read them."""
    Image.init()
    for name in formats:
        accept = Image.OPEN.get(name, (None, None))[1]
        if accept is not None and accept(data[:16]) is True:
            return name
    return None


def read_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height from the header alone (no pixels decoded); rejects empty, non-image, huge."""
    with _rejections("header is damaged"), _open_checked(data, max_pixels, None) as image:
        return image.size


def decode_image(data: bytes, max_pixels: int, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open, check dimensions against ``max_pixels`` (decompression bombs), then fully decode.

    Raises ImageRejected with reason empty / too_large / not_an_image / corrupt.
    """
    with _rejections("is damaged or truncated"):
        image = _open_checked(data, max_pixels, formats)
        image.load()
    return image
