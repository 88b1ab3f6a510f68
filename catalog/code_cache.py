"""Codes cached by (photo sha256, model checksum): a rebuild only encodes photos it has not seen with
this model, and a build killed midway resumes from what it had already encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.files import atomic_write


class CodeCache:
    def __init__(self, root: Path, codes_key: str, code_bytes: int) -> None:
        """``codes_key``: whose codes these are (``ImageEncoder.photo_codes_key``: the checkpoint and the
        photo branch's precision), one folder each."""
        self.dir = Path(root) / codes_key
        self.code_bytes = code_bytes

    def _path(self, sha256: str) -> Path:
        return self.dir / sha256[:2] / f"{sha256}.bin"

    def get(self, sha256: str) -> np.ndarray | None:
        try:
            data = self._path(sha256).read_bytes()
        except OSError:
            return None
        if len(data) != self.code_bytes:  # a damaged entry is recomputed
            return None
        return np.frombuffer(data, dtype=np.uint8)

    def put(self, sha256: str, code: np.ndarray) -> None:
        # A lost entry is recomputed, so no fsync: a build writes thousands of these.
        atomic_write(self._path(sha256), np.ascontiguousarray(code, dtype=np.uint8).tobytes(), durable=False)
