"""Edge maps cached on disk by photo content hash, so training and indexing compute each one once."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from model.edges.base import EdgeDetector
from model.files import atomic_write


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EdgeCache:
    def __init__(self, root: str | Path, detector: EdgeDetector) -> None:
        self.detector = detector
        self.root = Path(root) / detector.cache_key

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.png"

    def get_many(self, hashes: list[str], photos: list[Image.Image]) -> list[Image.Image]:
        """Edge maps for photos, computing (as one batch) and storing only the missing ones."""
        result: list[Image.Image | None] = []
        missing = []
        for i, sha in enumerate(hashes):
            path = self.path_for(sha)
            try:
                with Image.open(path) as im:
                    result.append(im.convert("L"))
            except (OSError, ValueError):
                result.append(None)
                missing.append(i)
        if missing:
            computed = self.detector.detect_batch([photos[i] for i in missing])
            for i, edge in zip(missing, computed, strict=True):
                self._store(self.path_for(hashes[i]), edge)
                result[i] = edge
        return [r for r in result if r is not None]

    @staticmethod
    def _store(path: Path, edge: Image.Image) -> None:
        # a cache: a lost entry is recomputed, so no fsync; readers never see a half-written file
        atomic_write(path, lambda tmp: edge.save(tmp, format="PNG"), durable=False)
