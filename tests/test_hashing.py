"""Bit packing matches FAISS's own layout and Hamming distances."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from model.hashing import asymmetric_distances, binarise, hamming_matrix, pack_bits, unpack_bits


@pytest.mark.parametrize("nbits", [32, 64, 128])
def test_pack_bits_matches_faiss_real_to_binary(nbits: int) -> None:
    rng = np.random.default_rng(nbits)
    continuous = rng.random((20, nbits)).astype(np.float32)
    ours = pack_bits(binarise(continuous))
    theirs = np.zeros((20, nbits // 8), dtype=np.uint8)
    centred = np.ascontiguousarray(continuous - 0.5)  # FAISS sets a bit where the value is > 0
    faiss.real_to_binary(20 * nbits, faiss.swig_ptr(centred), faiss.swig_ptr(theirs))
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("nbits", [32, 64, 128])
def test_hamming_matches_faiss_index(nbits: int) -> None:
    rng = np.random.default_rng(1)
    gallery = pack_bits(rng.integers(0, 2, (300, nbits)))
    queries = pack_bits(rng.integers(0, 2, (7, nbits)))
    index = faiss.IndexBinaryFlat(nbits)
    index.add(gallery)
    dist, ids = index.search(queries, 300)
    ours = hamming_matrix(queries, gallery)
    for q in range(7):
        np.testing.assert_array_equal(ours[q, ids[q]], dist[q])
    # and the count of differing bits, computed bit by bit
    bits_q, bits_g = unpack_bits(queries, nbits), unpack_bits(gallery, nbits)
    np.testing.assert_array_equal(ours, (bits_q[:, None, :] != bits_g[None, :, :]).sum(-1))


def test_binarise_threshold_is_half() -> None:
    np.testing.assert_array_equal(binarise(np.array([[0.49, 0.5, 0.51, 0.0]])), [[0, 1, 1, 0]])


def test_pack_rejects_ragged_bits() -> None:
    with pytest.raises(ValueError):
        pack_bits(np.zeros((2, 12), dtype=np.uint8))


def test_asymmetric_distance_is_squared_l2_to_the_bits() -> None:
    rng = np.random.default_rng(1)
    queries = rng.random((5, 64)).astype(np.float32)
    bits = rng.integers(0, 2, (40, 64)).astype(np.uint8)
    brute = ((queries[:, None, :] - bits[None, :, :].astype(np.float32)) ** 2).sum(axis=2)
    np.testing.assert_allclose(asymmetric_distances(queries, bits), brute, rtol=1e-5, atol=1e-4)


def test_asymmetric_distance_breaks_hamming_ties() -> None:
    # Two photos one bit from the query's binary code: the continuous code says which bit was nearly set.
    query = np.full((1, 8), 0.1, dtype=np.float32)
    query[0, 0], query[0, 1] = 0.45, 0.05
    photos = np.zeros((2, 8), dtype=np.uint8)
    photos[0, 0], photos[1, 1] = 1, 1
    assert hamming_matrix(pack_bits(binarise(query)), pack_bits(photos)).tolist() == [[1, 1]]
    d = asymmetric_distances(query, photos)[0]
    assert d[0] < d[1]
