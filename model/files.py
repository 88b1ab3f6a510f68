"""Crash-safe file writes: a reader sees the old file or the complete new one, never a torn one.

At the bottom layer so that every writer (checkpoints, training state, edge and ONNX caches, code cache,
uploads, thumbnails) uses the one helper."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | Callable[[Path], None], durable: bool = True) -> None:
    """Write ``data`` (bytes, or a function that writes a given path) next to ``path``, fsync, rename.

    ``durable=False`` skips the fsyncs for caches, where a lost entry is simply recomputed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
