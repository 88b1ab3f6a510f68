"""Keeps every gallery's active index loaded and swaps in new versions atomically.

A poller asks the database which version is active per gallery; a new one is loaded and checked
first, then put in place by replacing one dict entry. A search holds its own reference to the index
it started with, so searches in flight finish on the old version and none fails during a swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import faiss
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from catalog.db.models import Gallery, IndexVersion
from catalog.enums import VersionState
from catalog.index_store import IndexFileError, LoadedIndex, load_index

log = logging.getLogger(__name__)


class IndexManager:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        poll_seconds: float,
        place: Callable[[faiss.IndexBinary], faiss.IndexBinary] | None = None,
        search_threads: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.place = place
        self.search_threads = search_threads  # LoadedIndex.threads of every version loaded
        self.poll_seconds = poll_seconds
        self._indexes: dict[str, LoadedIndex] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broken: set[int] = set()  # versions that failed to load: logged once, not retried

    def get(self, gallery: str) -> LoadedIndex | None:
        return self._indexes.get(gallery)

    @property
    def loaded(self) -> dict[str, LoadedIndex]:
        return dict(self._indexes)

    def _load(self, name: str, version: IndexVersion) -> LoadedIndex | None:
        if version.id in self._broken:
            return None
        try:
            return load_index(name, version, self.place, self.search_threads)
        except IndexFileError as exc:
            self._broken.add(version.id)
            log.error("cannot load index version %s of gallery %s: %s", version.id, name, exc)
            return None

    def _fallback(self, session: Session, name: str, gallery_id: int) -> LoadedIndex | None:
        """The newest earlier version that still loads: a gallery stays searchable when its active
        version is damaged and nothing is being served for it yet (after a restart)."""
        earlier = session.scalars(
            select(IndexVersion)
            .where(IndexVersion.gallery_id == gallery_id, IndexVersion.state == VersionState.RETIRED)
            .order_by(IndexVersion.activated_at.desc(), IndexVersion.id.desc())
        )
        for version in earlier:
            loaded = self._load(name, version)
            if loaded is not None:
                log.warning("gallery %s: serving earlier index version %s instead", name, version.id)
                return loaded
        return None

    def refresh(self) -> None:
        with self._refresh_lock, self.sessions() as session:
            rows = session.execute(
                select(Gallery.name, IndexVersion)
                .join(IndexVersion, IndexVersion.gallery_id == Gallery.id)
                .where(IndexVersion.state == VersionState.ACTIVE)
            ).all()
            active = {name: version for name, version in rows}
            current = dict(self._indexes)
            for name, version in active.items():
                if name in current and current[name].version_id == version.id:
                    continue
                loaded = self._load(name, version)
                if loaded is None:  # keep serving what we have, or the last good version
                    if name not in current:
                        fallback = self._fallback(session, name, version.gallery_id)
                        if fallback is not None:
                            current[name] = fallback
                    continue
                current[name] = loaded
                log.info(
                    "gallery %s: now serving index version %s (%d images)", name, version.id, loaded.count
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
