"""Binary codes in the layout FAISS binary indexes use: bit j of byte i is code bit 8*i + j (LSB first),
the same as faiss.real_to_binary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # serving without PyTorch packs NumPy codes
    import torch


def binarise(codes: torch.Tensor | np.ndarray) -> np.ndarray:
    """Continuous codes in (0, 1) to a {0, 1} uint8 matrix: B = 1[B' >= 0.5]."""
    if not isinstance(codes, np.ndarray) and hasattr(codes, "detach"):  # a torch tensor
        codes = codes.detach().float().cpu().numpy()
    return (np.asarray(codes) >= 0.5).astype(np.uint8)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, nbits) {0,1} to (N, nbits/8) uint8, LSB first as FAISS expects."""
    if bits.ndim != 2 or bits.shape[1] % 8:
        raise ValueError(f"expected (N, multiple of 8) bits, got {bits.shape}")
    return np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")


def unpack_bits(packed: np.ndarray, nbits: int) -> np.ndarray:
    return np.unpackbits(packed, axis=1, bitorder="little", count=nbits)


def hamming_matrix(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances between packed codes (for evaluation; search uses FAISS)."""
    table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int32)
    out = np.zeros((len(queries), len(gallery)), dtype=np.int32)
    for b in range(queries.shape[1]):
        out += table[np.bitwise_xor.outer(queries[:, b], gallery[:, b])]
    return out


def asymmetric_distances(queries: np.ndarray, gallery_bits: np.ndarray) -> np.ndarray:
    """Squared L2 between continuous query codes in (0, 1) and {0, 1} gallery bits (N, nbits).

    ||c - b||² = ||c||² - 2 c·b + |b| since b² = b: the photo side stays binary, and the query's
    continuous code breaks the ties Hamming distances are full of. Same metric as training's triplets.
    """
    q = np.asarray(queries, dtype=np.float32)
    b = np.asarray(gallery_bits, dtype=np.float32)
    return (q * q).sum(axis=1)[:, None] - 2.0 * q @ b.T + b.sum(axis=1)[None, :]
