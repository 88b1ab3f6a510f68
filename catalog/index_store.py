"""Index versions on disk: one directory per version, written whole or not at all.

A version holds ``index.faiss`` (a plain FAISS binary index over positions 0..n-1, built from a factory
string) and ``manifest.json`` (model, bits, count, factory string and search parameters, and the
sha256 of the index file). Which photo each position holds is in the database (``index_entries``,
``catalog.index_rows``), so a loaded version costs bits/8 bytes a photo: the codes and nothing else
(an id array beside them cost 8 more; FAISS's IndexBinaryIDMap2 a reverse hash table, ~50 more).
It is written into a temporary directory, fsynced and renamed into place, so a reader only ever sees
complete versions; a file damaged later fails its checksum instead of loading silently.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db.models import Gallery, IndexVersion
from catalog.enums import VersionState
from model.checkpoint import file_checksum
from model.files import fsync_dir

INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"


class IndexType(StrEnum):
    FLAT = "flat"  # exact: every code compared (the default; ~2 ms per million 64-bit codes)
    HNSW = "hnsw"  # graph search: approximate
    IVF = "ivf"  # inverted lists: approximate


class IndexFileError(RuntimeError):
    """An index version on disk is missing, damaged or inconsistent with its manifest."""


@dataclass
class IndexSpec:
    """A FAISS binary factory string and the search-time parameters applied after loading."""

    factory: str
    params: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_type(cls, index_type: IndexType, count: int) -> IndexSpec:
        if index_type == IndexType.FLAT:
            return cls("BFlat")
        if index_type == IndexType.HNSW:
            return cls("BHNSW32", {"efSearch": 64})
        nlist = max(1, min(4096, int(np.sqrt(max(1, count)) * 4)))
        return cls(f"BIVF{nlist}", {"nprobe": max(1, nlist // 16)})


@dataclass
class Manifest:
    model_checksum: str
    bits: int
    count: int
    created: str
    source: str | None
    factory: str = "BFlat"
    params: dict[str, int] = field(default_factory=dict)
    gallery_id: int | None = None
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> digest
    # Whose photo codes (ImageEncoder.photo_codes_key: the checkpoint, and for int8 which quantised
    # graph); empty in versions written before it was recorded.
    photo_codes: str = ""


def apply_params(index: faiss.IndexBinary, params: dict[str, int]) -> None:
    concrete: Any = faiss.downcast_IndexBinary(index)  # SWIG: the concrete class carries the knobs
    if "nprobe" in params:
        concrete.nprobe = params["nprobe"]
    if "efSearch" in params:
        concrete.hnsw.efSearch = params["efSearch"]


def build_index(codes: np.ndarray, bits: int, spec: IndexSpec) -> faiss.IndexBinary:
    """A plain binary index over ``codes`` in order: result positions are row numbers."""
    if codes.ndim != 2 or codes.shape[1] != bits // 8:
        raise ValueError(f"codes {codes.shape} are not {bits}-bit codes")
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    index = faiss.index_binary_factory(bits, spec.factory)
    if not index.is_trained and len(codes):
        index.train(codes)
    if len(codes):
        index.add(codes)
    apply_params(index, spec.params)
    return index


def write_version(parent: Path, index: faiss.IndexBinary, manifest: Manifest) -> Path:
    """Write into ``parent/.tmp-*``, fsync, rename to ``parent/v<time>-<id>``; returns the final path.
    The rows' photos go into the database with the version's row (``catalog.index_rows``)."""
    if index.ntotal != manifest.count:
        raise ValueError(f"{index.ntotal} codes, manifest says {manifest.count}")
    parent.mkdir(parents=True, exist_ok=True)
    name = f"v{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp = parent / f".tmp-{name}"
    tmp.mkdir()
    faiss.write_index_binary(index, str(tmp / INDEX_FILE))
    manifest.sha256 = {INDEX_FILE: file_checksum(tmp / INDEX_FILE)}
    (tmp / MANIFEST_FILE).write_text(json.dumps(asdict(manifest), indent=1))
    for file in (INDEX_FILE, MANIFEST_FILE):
        with open(tmp / file, "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(tmp)
    final = parent / name
    tmp.rename(final)
    fsync_dir(parent)
    return final


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads((Path(path) / MANIFEST_FILE).read_text())
        data.pop("index_type", None)  # versions written before factory strings
        return Manifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise IndexFileError(f"index version {path} has no valid manifest: {exc}") from None


def _check_files(path: Path, manifest: Manifest) -> None:
    for file, expected in manifest.sha256.items():
        try:
            actual = file_checksum(path / file)
        except OSError as exc:
            raise IndexFileError(f"index version {path}: {file} cannot be read: {exc}") from None
        if actual != expected:
            raise IndexFileError(f"index version {path}: {file} is damaged (checksum mismatch)")


def read_version(path: Path) -> tuple[faiss.IndexBinary, Manifest]:
    """Load and check a version: checksums, and as many codes of as many bits as the manifest says."""
    path = Path(path)
    manifest = read_manifest(path)
    _check_files(path, manifest)
    try:
        index = faiss.read_index_binary(str(path / INDEX_FILE))
        wrapped: Any = faiss.downcast_IndexBinary(index)  # SWIG: attributes are not typed
        if isinstance(wrapped, faiss.IndexBinaryIDMap2):  # written before plain indexes: drop its map
            index = faiss.downcast_IndexBinary(wrapped.index)
            wrapped.own_fields = False
    except (RuntimeError, ValueError, OSError, AttributeError) as exc:
        raise IndexFileError(f"index version {path} cannot be read: {exc}") from None
    if index.d != manifest.bits or index.ntotal != manifest.count:
        raise IndexFileError(
            f"index version {path} holds {index.ntotal} codes of {index.d} bits, "
            f"manifest says {manifest.count} of {manifest.bits}"
        )
    apply_params(index, manifest.params)
    return index, manifest


def remove_version(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# The OpenMP thread count LoadedIndex last set on each thread. The service sets it nowhere else; code
# that calls faiss.omp_set_num_threads itself on a thread that searches must not count on a search to
# set it back.
_OMP = threading.local()


@dataclass
class LoadedIndex:
    """An immutable, loaded index version; searches on it are thread-safe (FAISS reads only)."""

    gallery: str
    gallery_id: int
    version_id: int
    manifest: Manifest
    index: faiss.IndexBinary  # on the CPU: re-ranking reads candidates' codes from it
    search_index: faiss.IndexBinary | None = None  # a GPU copy when placed on one
    # FAISS (OpenMP) threads per search, None for FAISS's default. Set on the searching thread, once
    # per thread (``_set_threads``): OpenMP's thread count is a per-thread setting, so setting it once
    # on the main thread leaves every pool thread at one per core, and on a small machine a lone
    # query's idle OpenMP team then spins against the encoder (docs/benchmarks/search_load.json).
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.search_index is None:
            self.search_index = self.index
        # A flat index stores its codes contiguously: a zero-copy numpy view of them makes reading 300
        # candidates' codes a fancy index (microseconds) instead of 300 reconstruct() calls.
        concrete: Any = faiss.downcast_IndexBinary(self.index)
        self.is_flat = isinstance(concrete, faiss.IndexBinaryFlat)  # exact scans: results can be widened
        self._codes: np.ndarray | None = None
        if self.is_flat and concrete.ntotal:
            size = concrete.ntotal * concrete.code_size
            codes: Any = getattr(concrete, "xb")  # noqa: B009  (SWIG vector, untyped; data() backs the view)
            self._codes = faiss.rev_swig_ptr(codes.data(), size).reshape(concrete.ntotal, -1)

    @property
    def bits(self) -> int:
        return self.manifest.bits

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def codes_at(self, positions: np.ndarray) -> np.ndarray:
        """The packed codes stored at these positions (for re-ranking the candidates)."""
        if not len(positions):
            return np.zeros((0, self.bits // 8), np.uint8)
        if self._codes is not None:
            return self._codes[positions]
        return np.stack([self.index.reconstruct(int(p)) for p in positions])

    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hamming distances and positions, nearest first; -1 where the index holds fewer than k."""
        k = max(1, min(k, self.count))
        if self.count == 0:
            return np.zeros((len(codes), 0), np.int32), np.zeros((len(codes), 0), np.int64)
        assert self.search_index is not None
        self._set_threads()
        return self.search_index.search(np.ascontiguousarray(codes, dtype=np.uint8), k)

    def within(self, code: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and Hamming distances of every code at most ``radius`` bits from one packed
        ``code`` (bits/8,), in FAISS's order (a range search of the CPU index)."""
        self._set_threads()
        lims, dist, pos = self.index.range_search(code.reshape(1, -1), radius + 1)  # range is d < radius
        return pos[lims[0] : lims[1]].astype(np.int64), dist[lims[0] : lims[1]].astype(np.int64)

    def _set_threads(self) -> None:
        # Only when this thread's count differs from what was last set here: each FAISS call releases
        # and retakes the GIL, and on a search's critical path the other pool thread (the answer's
        # other parts, worked out beside the scan) then holds it, delaying the scan by its whole work.
        if self.threads is not None and getattr(_OMP, "threads", None) != self.threads:
            faiss.omp_set_num_threads(self.threads)
            _OMP.threads = self.threads

    def memory_bytes(self) -> int:
        """What the loaded version holds: its codes (the index's own sizes)."""
        return int(self.count * self.index.code_size)


def active_version(session: Session, gallery: str) -> IndexVersion | None:
    return session.scalar(
        select(IndexVersion)
        .join(Gallery, Gallery.id == IndexVersion.gallery_id)
        .where(Gallery.name == gallery, IndexVersion.state == VersionState.ACTIVE)
    )


def load_index(
    gallery: str,
    version: IndexVersion,
    place: Callable[[faiss.IndexBinary], faiss.IndexBinary] | None = None,
    threads: int | None = None,
) -> LoadedIndex:
    """Load and check a version; ``place`` puts a search copy elsewhere (a GPU); ``threads``: FAISS
    threads per search (``LoadedIndex.threads``)."""
    index, manifest = read_version(Path(version.path))
    search_index = place(index) if place is not None else index
    return LoadedIndex(gallery, version.gallery_id, version.id, manifest, index, search_index, threads)
