"""Decoding untrusted image bytes safely: size checked from the header before any pixel is decoded."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})  # what galleries and datasets pick up


class ImageRejected(ValueError):
    """The bytes are not a usable image; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def read_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height from the header alone (no pixels decoded); rejects empty, non-image, huge."""
    if not data:
        raise ImageRejected("empty", "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("too_large", "the image has too many pixels (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise ImageRejected("not_an_image", "the file is not an image in a supported format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("corrupt", f"the image header is damaged ({exc})") from None
    if width * height > max_pixels:
        raise ImageRejected(
            "too_large", f"the image is {width}x{height} pixels, more than the limit of {max_pixels}"
        )
    return width, height


def decode_image(data: bytes, max_pixels: int, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open, check dimensions against ``max_pixels`` (decompression bombs), then fully decode.

    Raises ImageRejected with reason empty / too_large / not_an_image / corrupt.
    """
    if not data:
        raise ImageRejected("empty", "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    "too_large", f"the image is {width}x{height} pixels, more than the limit of {max_pixels}"
                )
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("too_large", "the image has too many pixels (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise ImageRejected("not_an_image", "the file is not an image in a supported format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("corrupt", f"the image is damaged or truncated ({exc})") from None
    return image
