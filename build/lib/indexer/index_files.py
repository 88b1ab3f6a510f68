"""Index versions on disk: one directory per version with a FAISS binary index and a manifest.

A version is written into a temporary directory, fsynced and renamed into place, so a reader (the
server) only ever sees complete versions.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
IndexType = Literal["flat", "hnsw", "ivf"]


class IndexFileError(RuntimeError):
    """An index version on disk is missing, incomplete or inconsistent with its manifest."""


@dataclass
class Manifest:
    model_checksum: str
    bits: int
    count: int
    created: str
    source: str | None
    index_type: str = "flat"


def build_faiss_index(
    codes: np.ndarray, ids: np.ndarray, bits: int, index_type: IndexType = "flat"
) -> faiss.IndexBinary:
    """IndexBinaryIDMap2 over a flat (exact) index by default; HNSW or IVF for very large galleries."""
    if codes.shape != (len(ids), bits // 8):
        raise ValueError(f"codes {codes.shape} do not match {len(ids)} ids of {bits} bits")
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if index_type == "flat":
        index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))
    elif index_type == "hnsw":
        index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryHNSW(bits, 32))
    elif index_type == "ivf":
        nlist = max(1, min(4096, int(np.sqrt(max(1, len(ids))) * 4)))
        quantizer = faiss.IndexBinaryFlat(bits)
        ivf = faiss.IndexBinaryIVF(quantizer, bits, nlist)
        ivf.own_fields = True
        quantizer.this.disown()
        if len(ids):
            ivf.train(codes)
        ivf.nprobe = max(1, nlist // 16)
        index = faiss.IndexBinaryIDMap2(ivf)
    else:
        raise ValueError(f"unknown index type {index_type!r}")
    if len(ids):
        index.add_with_ids(codes, ids)
    return index


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_version(parent: Path, index: faiss.IndexBinary, manifest: Manifest) -> Path:
    """Write into ``parent/.tmp-*``, fsync, rename to ``parent/v<time>-<id>``; returns the final path."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"v{stamp}-{uuid.uuid4().hex[:8]}"
    tmp = parent / f".tmp-{name}"
    tmp.mkdir()
    faiss.write_index_binary(index, str(tmp / INDEX_FILE))
    (tmp / MANIFEST_FILE).write_text(json.dumps(asdict(manifest), indent=1))
    for file in (tmp / INDEX_FILE, tmp / MANIFEST_FILE):
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    final = parent / name
    tmp.rename(final)
    _fsync_dir(parent)
    return final


def read_manifest(path: Path) -> Manifest:
    try:
        return Manifest(**json.loads((Path(path) / MANIFEST_FILE).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise IndexFileError(f"index version {path} has no valid manifest: {exc}") from None


def read_version(path: Path) -> tuple[faiss.IndexBinary, Manifest]:
    """Load and check a version: the index must hold as many codes of as many bits as the manifest says."""
    manifest = read_manifest(path)
    try:
        index = faiss.read_index_binary(str(Path(path) / INDEX_FILE))
    except RuntimeError as exc:
        raise IndexFileError(f"index version {path} cannot be read: {exc}") from None
    if index.d != manifest.bits or index.ntotal != manifest.count:
        raise IndexFileError(
            f"index version {path} holds {index.ntotal} codes of {index.d} bits, manifest says "
            f"{manifest.count} of {manifest.bits}"
        )
    return index, manifest


def remove_version(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
