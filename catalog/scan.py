"""Finding a gallery's photos in its source folder, safely.

Symlinked folders are followed (a gallery is often assembled from links to photo folders), so the walk
guards itself: a folder reached twice (a link back to a parent: a loop) is skipped, system trees
(/proc, /sys, /dev, /) are refused as sources, and a walk that finds too many entries gives up with a
clear error instead of running (and allocating) forever.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from catalog.enums import ImageOrigin
from catalog.errors import Invalid
from catalog.galleries import normal_label
from model.imageio import IMAGE_EXTENSIONS, UNREADABLE_EXTENSIONS

SYSTEM_ROOTS = ("/proc", "/sys", "/dev", "/run", "/boot")
MAX_ENTRIES = 5_000_000  # files and folders looked at in one scan
MAX_SOURCE_PATH = 4096


@dataclass
class Candidate:
    path: Path
    label: str | None
    origin: ImageOrigin
    sha256: str = ""
    size_bytes: int = 0
    width: int = 0
    height: int = 0


class ScanError(Invalid):
    """The source folder cannot be scanned as a gallery; the message says why."""


def check_source_dir(source: str | Path) -> Path:
    """The resolved source folder, or ScanError: too long, missing, not a folder, or a system tree."""
    text = str(source)
    if not text or len(text) > MAX_SOURCE_PATH or "\x00" in text:
        raise ScanError("bad_source_dir", f"a source folder path must be 1 to {MAX_SOURCE_PATH} characters")
    try:
        resolved = Path(text).resolve(strict=True)
        is_dir = resolved.is_dir()
    except (OSError, RuntimeError):  # missing, name too long, a link loop
        raise ScanError("bad_source_dir", "the source folder does not exist on the server") from None
    if not is_dir:
        raise ScanError("bad_source_dir", "the source folder is not a folder on the server")
    if (
        resolved == Path("/")
        or str(resolved).startswith(tuple(r + "/" for r in SYSTEM_ROOTS))
        or (str(resolved) in SYSTEM_ROOTS)
    ):
        raise ScanError("system_folder", f"{resolved} is a system folder, not a photo gallery")
    return resolved


def printable(path: Path | str) -> str:
    """A path as text anyone can read and store: bytes that are not UTF-8 (a Latin-1 ``été.jpg``) as
    ``\\xe9`` escapes, control characters escaped, everything else as it is."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def storable(path: Path | str) -> bool:
    """Whether the path is valid UTF-8 text, as the database stores paths (a file system need not)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan_source(source: Path, max_entries: int = MAX_ENTRIES) -> list[Candidate]:
    """Images below ``source``; a photo's label is its folder's name (in NFC) unless it sits in the root.

    Files named as images the project cannot read (``UNREADABLE_EXTENSIONS``) are found too, so the
    build reports them instead of passing over them. Raises ScanError past ``max_entries``."""
    return sorted(_walk(source, max_entries), key=lambda c: c.path)


PEEK_ENTRIES = 20_000  # what registering a gallery looks through for a photo: a fraction of a second


def holds_photos(source: Path, max_entries: int = PEEK_ENTRIES) -> bool | None:
    """Whether any image file lies below ``source`` (as ``scan_source`` finds them), looking no further
    than the first; None when ``max_entries`` files and folders hold none (it cannot say)."""
    try:
        return next(_walk(source, max_entries), None) is not None
    except ScanError as exc:
        if exc.code != "too_many_entries":
            raise
        return None


def _walk(source: Path, max_entries: int) -> Iterator[Candidate]:
    root = check_source_dir(source)
    seen: set[tuple[int, int]] = set()
    entries = 0
    stack = [Path(source)]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()  # follows links: the folder they point to
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue  # a loop, or two links to one folder: each folder is scanned once
        seen.add((info.st_dev, info.st_ino))
        try:
            children = list(os.scandir(folder))
        except OSError:
            continue
        for child in children:
            entries += 1
            if entries > max_entries:
                raise ScanError(
                    "too_many_entries", f"gave up after {max_entries} files and folders under {root}"
                )
            path = Path(child.path)
            try:
                mode = path.stat().st_mode
            except OSError:
                continue  # a dangling link
            if stat.S_ISDIR(mode):
                stack.append(path)
            elif stat.S_ISREG(mode) and path.suffix.lower() in IMAGE_EXTENSIONS | UNREADABLE_EXTENSIONS:
                label = normal_label(folder.name) if folder != Path(source) else None
                yield Candidate(path, label, ImageOrigin.SOURCE)
