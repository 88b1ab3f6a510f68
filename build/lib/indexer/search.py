"""Loading an index version for search, and finding a gallery's active version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Gallery, IndexVersion
from indexer.index_files import Manifest, read_version


@dataclass
class LoadedIndex:
    """An immutable, loaded index version; searches on it are thread-safe (FAISS reads only)."""

    gallery: str
    version_id: int
    manifest: Manifest
    index: faiss.IndexBinary

    @property
    def bits(self) -> int:
        return self.manifest.bits

    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and image ids, nearest first; ids of -1 (fewer images than k) are dropped."""
        k = max(1, min(k, self.index.ntotal)) if self.index.ntotal else 0
        if k == 0:
            return np.zeros((len(codes), 0), np.int32), np.zeros((len(codes), 0), np.int64)
        distances, ids = self.index.search(np.ascontiguousarray(codes, dtype=np.uint8), k)
        return distances, ids


def active_version(session: Session, gallery: str) -> IndexVersion | None:
    return session.scalar(
        select(IndexVersion)
        .join(Gallery, Gallery.id == IndexVersion.gallery_id)
        .where(Gallery.name == gallery, IndexVersion.state == "active")
    )


def load_index(gallery: str, version: IndexVersion) -> LoadedIndex:
    index, manifest = read_version(Path(version.path))
    return LoadedIndex(gallery, version.id, manifest, index)
