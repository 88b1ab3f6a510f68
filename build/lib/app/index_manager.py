"""Keeps every gallery's active index loaded and swaps in new versions atomically.

A poller asks the database which version is active per gallery; a new one is loaded and checked
first, then put in place by replacing one dict entry. A search holds its own reference to the index
it started with, so searches in flight finish on the old version and none fails during a swap.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Gallery, IndexVersion
from indexer.index_files import IndexFileError
from indexer.search import LoadedIndex, load_index

log = logging.getLogger(__name__)


class IndexManager:
    def __init__(self, sessions: sessionmaker[Session], poll_seconds: float) -> None:
        self.sessions = sessions
        self.poll_seconds = poll_seconds
        self._indexes: dict[str, LoadedIndex] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, gallery: str) -> LoadedIndex | None:
        return self._indexes.get(gallery)

    @property
    def loaded(self) -> dict[str, LoadedIndex]:
        return dict(self._indexes)

    def refresh(self) -> None:
        with self._refresh_lock:
            with self.sessions() as session:
                rows = session.execute(
                    select(Gallery.name, IndexVersion)
                    .join(IndexVersion, IndexVersion.gallery_id == Gallery.id)
                    .where(IndexVersion.state == "active")
                ).all()
            active = {name: version for name, version in rows}
            current = dict(self._indexes)
            for name, version in active.items():
                if name in current and current[name].version_id == version.id:
                    continue
                try:
                    loaded = load_index(name, version)
                except IndexFileError as exc:  # keep serving what we have
                    log.error("cannot load index version %s of %s: %s", version.id, name, exc)
                    continue
                current[name] = loaded
                log.info(
                    "gallery %s: now serving index version %s (%d images)",
                    name,
                    version.id,
                    loaded.index.ntotal,
                )
            for name in set(current) - set(active):
                del current[name]
            self._indexes = current  # one reference replaced: readers see the old or the new dict

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the database may be briefly unavailable; try again next time
                log.exception("index refresh failed")

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="index-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
