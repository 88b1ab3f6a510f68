"""Decoding untrusted image bytes safely: size checked from the header before any pixel is decoded.

The one table of the image formats the project reads (``FORMATS``): what a folder scan picks up, how an
upload is stored and what media type it is served with all come from it. HEIC/HEIF is read through the
pillow-heif plugin, AVIF by Pillow itself.

Metadata is not the image: a PNG's ancillary chunks (text, ICC profiles, ...) are dropped before Pillow
sees them, so a 2 MB workflow in a zTXt chunk never makes a drawing unreadable, and is never inflated.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

pillow_heif.register_heif_opener()

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Photos are decoded to at least this many pixels on their short side, no more than twice it when they
# are larger: what the network's photos were trained at (Sketchy's 256x256), above every input size we
# train (128-224), so nothing the network needs is lost, and edges are found at the scale they were
# trained at whatever the camera. A 48 MP JPEG is decoded at 1/8 scale (JPEG draft mode).
PHOTO_MIN_SIDE = 256
# Names how photos are decoded (upright, scaled, reduced): what is cached from decoded photos (codes,
# edge maps) is kept under it, so a change of decoding never reuses what the old one computed.
PHOTO_DECODING = f"upright-{PHOTO_MIN_SIDE}"
_PNG_KEPT_ANCILLARY = frozenset({b"tRNS", b"eXIf"})  # transparency is pixels; EXIF holds orientation


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
    ImageFormat("JPEG", ".jpg", "image/jpeg", (".jpeg", ".jpe", ".jfif")),
    ImageFormat("MPO", ".jpg", "image/jpeg"),  # a JPEG with more frames (phones, 3D cameras), named .jpg
    ImageFormat("PNG", ".png", "image/png"),
    ImageFormat("WEBP", ".webp", "image/webp"),
    ImageFormat("HEIF", ".heic", "image/heic", (".heif", ".hif")),  # iPhones' default
    ImageFormat("AVIF", ".avif", "image/avif"),
)
Image.init()
# For Image.open(formats=...): an MPO file is opened as a JPEG (Pillow then names it MPO).
FORMAT_NAMES = tuple(f.name for f in FORMATS if f.name in Image.OPEN)
IMAGE_EXTENSIONS = frozenset(s for f in FORMATS for s in f.suffixes)  # what galleries and datasets pick up
# Image files the project does not read: a folder scan reports each as a failed item rather than pass
# over it in silence.
UNREADABLE_EXTENSIONS = frozenset(
    {".gif", ".bmp", ".tif", ".tiff", ".jxl", ".jp2", ".psd", ".svg", ".ico", ".tga", ".ppm", ".pgm"}
    | {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw", ".raw"}
)
_BY_NAME = {f.name: f for f in FORMATS}
_BY_SUFFIX = {s: f for f in reversed(FORMATS) for s in f.suffixes}  # the first entry wins: .jpg is JPEG


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
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT = "corrupt"


class ImageRejected(ValueError):
    """The bytes are not a usable image; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def without_png_metadata(data: bytes) -> bytes:
    """The PNG with only the chunks that make its pixels (critical ones, transparency, and EXIF for the
    orientation); anything else, or bytes that are no well-formed chunk stream, comes back unchanged."""
    if not is_png(data):
        return data
    kept, pos, dropped = [data[:8]], 8, False
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return data  # truncated: let the decoder say so
        if kind[:1].isupper() or kind in _PNG_KEPT_ANCILLARY:  # upper-case first letter: critical
            kept.append(data[pos:end])
        else:
            dropped = True
        pos = end
        if kind == b"IEND":
            break
    return b"".join(kept) if dropped else data


@contextmanager
def _rejections(damaged: str) -> Iterator[None]:
    """Pillow's ways of failing on bad bytes, as ImageRejected; ``damaged`` says what was being read.

    Pillow's own decompression-bomb warning is silenced: the callers' ``max_pixels`` is the limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise ImageRejected(
            RejectReason.TOO_LARGE, "the image has too many pixels (decompression bomb guard)"
        ) from None
    except UnidentifiedImageError:
        raise ImageRejected(
            RejectReason.NOT_AN_IMAGE, "the file is not an image in a supported format"
        ) from None
    except (OSError, SyntaxError, ValueError, struct.error, IndexError, TypeError) as exc:
        raise ImageRejected(RejectReason.CORRUPT, f"the image {damaged} ({exc})") from None


def _signature_of(data: bytes, formats: tuple[str, ...]) -> str | None:
    """The format whose signature the bytes start with, though Pillow could not read them."""
    for name in formats:
        accept = Image.OPEN.get(name, (None, None))[1]
        if accept is not None and accept(data[:16]) is True:
            return name
    return None


def _unsupported(data: bytes, formats: tuple[str, ...]) -> ImageRejected:
    """Why Pillow could not open the bytes as one of ``formats``: another format (named), a damaged file
    of one of them, or no image at all."""
    claimed = _signature_of(data, formats)
    if claimed is not None:
        return ImageRejected(RejectReason.CORRUPT, f"the {claimed} image is damaged or truncated")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as other:  # header only, to name the format
                name = other.format
    except Exception:  # whatever fails here, the answer is "not an image"
        name = None
    if name is None:
        return ImageRejected(RejectReason.NOT_AN_IMAGE, "the file is not an image in a supported format")
    readable = ", ".join(formats)
    return ImageRejected(
        RejectReason.UNSUPPORTED_FORMAT, f"{name} images are not supported (these are: {readable})"
    )


def _open(data: bytes, formats: tuple[str, ...] | None) -> Image.Image:
    """Opened, header parsed, no pixel decoded. A JPEG over Pillow's own bomb limit is still opened:
    it can be decoded at 1/8 scale, and the caller checks the size it will decode at."""
    if not data:
        raise ImageRejected(RejectReason.EMPTY, "the file is empty")
    data = without_png_metadata(data)
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError:
        if data.startswith(JPEG_SIGNATURE) and (formats is None or "JPEG" in formats):
            return JpegImagePlugin.jpeg_factory(io.BytesIO(data))
        raise
    except UnidentifiedImageError:
        raise _unsupported(data, formats or FORMAT_NAMES) from None


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            RejectReason.TOO_LARGE,
            f"the image is {width}x{height} pixels, more than the limit of {max_pixels}",
        )


def _draft(image: Image.Image, min_side: int | None) -> None:
    """Let a JPEG decode at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides >= min_side."""
    if min_side is not None and image.format in ("JPEG", "MPO"):
        image.draft(image.mode, (min_side, min_side))


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # damaged EXIF is metadata, not the image: no rotation
        return 1


@dataclass(frozen=True)
class Probe:
    """What a header says: the format, and the size as shown (EXIF orientation applied)."""

    format: ImageFormat
    width: int
    height: int


def probe(data: bytes, max_pixels: int, min_side: int = PHOTO_MIN_SIDE) -> Probe:
    """Format and size of a photo from its header alone, no pixel decoded.

    Rejects (ImageRejected) what ``decode_photo`` would before decoding: empty, not an image or not
    one of ``FORMATS``, more than ``max_pixels`` at the size it would be decoded at (a JPEG at its
    reduced scale)."""
    with _rejections("header is damaged"), _open(data, FORMAT_NAMES) as image:
        width, height = image.size
        _draft(image, min_side)
        _check_pixels(image, max_pixels)
        if _orientation(image) in (5, 6, 7, 8):  # turned a quarter: shown the other way round
            width, height = height, width
        return Probe(format_named(image.format), width, height)


def decode_sketch_png(data: bytes, max_pixels: int) -> Image.Image:
    """A sketch as the service and ``indexer search`` take one: a PNG, its size checked against
    ``max_pixels`` (SKETCH_MAX_SKETCH_PIXELS) from its header, then decoded. Raises ImageRejected:
    unsupported_format for anything but a PNG by its signature, else as ``decode_image`` (empty, ...)."""
    if data and not is_png(data):  # empty: decode_image's own refusal
        raise ImageRejected(
            RejectReason.UNSUPPORTED_FORMAT,
            "the sketch must be a PNG image (the file's signature is not PNG)",
        )
    return decode_image(data, max_pixels, formats=("PNG",))


def decode_image(data: bytes, max_pixels: int, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open, check dimensions against ``max_pixels`` (decompression bombs), then fully decode, pixels
    as stored (any mode; see ``decode_photo`` for photos).

    Raises ImageRejected with reason empty / too_large / not_an_image / unsupported_format / corrupt.
    """
    with _rejections("is damaged or truncated"):
        image = _open(data, formats)
        _check_pixels(image, max_pixels)
        image.load()
    return image


def decode_photo(data: bytes, max_pixels: int, min_side: int = PHOTO_MIN_SIDE) -> Image.Image:
    """A photo as every viewer shows it, at the size the network needs: 8-bit RGB, upright (EXIF
    orientation applied), transparency on white, its short side reduced to min_side..2*min_side when
    larger (a JPEG decoded at reduced scale in draft mode, so a 48 MP photo costs what a 1 MP one does).

    ``max_pixels`` bounds the pixels decoded (after JPEG draft scaling). Raises ImageRejected like
    ``decode_image``; only the formats of ``FORMATS`` are read."""
    with _rejections("is damaged or truncated"):
        image = _open(data, FORMAT_NAMES)
        _draft(image, min_side)
        _check_pixels(image, max_pixels)
        image.load()
        image = _upright(image)
        factor = min(image.size) // min_side
        if factor >= 2:
            image = image.reduce(factor)
    return to_rgb(image)


def _upright(image: Image.Image) -> Image.Image:
    """EXIF orientation applied, as thumbnails and viewers do; damaged EXIF is ignored (metadata)."""
    if _orientation(image) == 1:
        return image
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # a broken EXIF block: the pixels are still the photo
        return image
    return image


def high_bit_depth(image: Image.Image) -> bool:
    return image.mode.startswith("I") or image.mode == "F"


def unit_range(image: Image.Image) -> np.ndarray:
    """A single-channel image of any bit depth as float32 in 0..1, scaled, never clipped: 8-bit modes
    by 255, 16-bit by 65535; 32-bit integer and float images by the range their values show
    (1, 255 or 65535, else their maximum)."""
    if image.mode in ("1", "L", "P"):
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if image.mode.startswith("I;16"):
        return values / 65535.0
    top = float(values.max(initial=0.0))
    scale = next((s for s in (1.0, 255.0, 65535.0) if top <= s), top)
    if image.mode != "F" and scale == 1.0:
        scale = 255.0  # integers 0/1 are a very dark 8-bit image, not a full range
    return np.clip(values / scale, 0.0, 1.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: high bit depths scaled down (not clipped), transparency on white."""
    if high_bit_depth(image):
        gray = Image.fromarray(np.round(unit_range(image) * 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
