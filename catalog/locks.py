"""One build per gallery at a time, across processes: an exclusive, non-blocking file lock.

The kernel drops the lock when its holder dies (even by kill -9), so a crashed build never blocks the
next one.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class BuildLocked(RuntimeError):
    """Another build of this gallery is running."""


@contextmanager
def gallery_lock(lock_dir: Path, gallery: str) -> Iterator[None]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", gallery)
    fd = os.open(lock_dir / f"{safe}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLocked(f"another build of gallery {gallery!r} is running") from None
        yield
    finally:
        os.close(fd)
