"""How many photos each served index version can still return, for GET /galleries: counted briefly
cached, because the route is public and the search page asks it on every load, while counting a
version's rows is a scan of them (about 0.1 s on PostgreSQL at 1M rows)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection

from sqlalchemy.orm import Session, sessionmaker

from catalog.index_rows import photos_held

TTL_SECONDS = 10.0  # another replica's delete shows within this; this process's own at once (forget)


class PhotoCounts:
    """``photos_held`` of the served versions, counted again at most every ``ttl`` seconds, when a
    version not counted yet is asked for, or after ``forget`` (a photo deleted here). Counting holds a
    lock: requests arriving meanwhile wait for that one count instead of each making their own."""

    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._counted_at = -math.inf
        self._counts: dict[int, int] = {}

    def of(self, sessions: sessionmaker[Session], version_ids: Collection[int]) -> dict[int, int]:
        with self._lock:
            now = time.monotonic()
            if now - self._counted_at > self._ttl or not set(version_ids) <= self._counts.keys():
                with sessions() as session:
                    counted = photos_held(session, sorted(set(version_ids)))
                self._counts = {v: counted.get(v, 0) for v in version_ids}
                self._counted_at = now
            return dict(self._counts)

    def forget(self) -> None:
        with self._lock:
            self._counted_at = -math.inf
