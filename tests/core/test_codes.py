"""Packing and Hamming kernels against slow, obviously-correct pure-Python references."""

from __future__ import annotations

import numpy as np
import pytest

from imagehash_app.core import codes as codes_mod
from imagehash_app.core.codes import (
    codes_from_bytes,
    codes_to_bytes,
    hamming_distances,
    hamming_topk,
    pack_signs,
    unpack_signs,
    words_for,
)

BITS = [1, 16, 63, 64, 65, 100, 128, 256]


def naive_pack(z: np.ndarray) -> list[list[int]]:
    """Bit i of a row goes to word i // 64, position i % 64, set when z > 0."""
    rows = []
    for row in z.tolist():
        words = [0] * ((len(row) + 63) // 64)
        for i, value in enumerate(row):
            if value > 0:
                words[i // 64] |= 1 << (i % 64)
        rows.append(words)
    return rows


def naive_hamming(a: list[int], b: list[int]) -> int:
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))


def naive_topk(query: list[int], db: list[list[int]], k: int) -> list[tuple[int, int]]:
    """(distance, index) pairs, sorted by distance then index."""
    return sorted((naive_hamming(query, row), i) for i, row in enumerate(db))[:k]


def random_codes(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    return pack_signs(rng.standard_normal((n, bits)))


@pytest.mark.parametrize("bits", BITS)
def test_pack_signs_matches_naive(bits: int) -> None:
    rng = np.random.default_rng(bits)
    z = rng.standard_normal((7, bits)).astype(np.float32)
    z[0, 0] = 0.0  # zero is not > 0: bit clear
    packed = pack_signs(z)
    assert packed.dtype == np.uint64
    assert packed.shape == (7, words_for(bits))
    assert packed.tolist() == naive_pack(z)


@pytest.mark.parametrize("bits", BITS)
def test_unpack_inverts_pack(bits: int) -> None:
    rng = np.random.default_rng(bits)
    z = rng.standard_normal((5, bits))
    signs = unpack_signs(pack_signs(z), bits)
    assert signs.dtype == np.float32
    np.testing.assert_array_equal(signs, np.where(z > 0, 1.0, -1.0))


def test_padding_bits_stay_zero() -> None:
    packed = pack_signs(np.ones((3, 100)))
    assert packed[:, 0].tolist() == [2**64 - 1] * 3
    assert packed[:, 1].tolist() == [2**36 - 1] * 3


@pytest.mark.parametrize("bits", BITS)
def test_hamming_distances_match_naive(bits: int) -> None:
    rng = np.random.default_rng(100 + bits)
    db = random_codes(rng, 50, bits)
    query = random_codes(rng, 1, bits)[0]
    dist = hamming_distances(query, db)
    assert dist.dtype == np.int32
    expected = [naive_hamming(query.tolist(), row) for row in db.tolist()]
    assert dist.tolist() == expected


@pytest.mark.parametrize("bits", [16, 64, 100, 128])
def test_hamming_topk_matches_naive_with_ties(bits: int) -> None:
    rng = np.random.default_rng(200 + bits)
    # Few distinct codes, each repeated: many exact ties that must come back by index.
    base = random_codes(rng, 40, bits)
    db = base[rng.integers(0, 40, 300)]
    queries = np.concatenate([base[:3], random_codes(rng, 3, bits)])
    idx, dist = hamming_topk(queries, db, 25)
    assert idx.shape == dist.shape == (6, 25)
    assert idx.dtype == np.int64 and dist.dtype == np.int32
    for q in range(6):
        expected = naive_topk(queries[q].tolist(), db.tolist(), 25)
        assert list(zip(dist[q].tolist(), idx[q].tolist(), strict=True)) == expected


def test_hamming_topk_k_larger_than_n_and_zero() -> None:
    rng = np.random.default_rng(3)
    db = random_codes(rng, 9, 64)
    idx, dist = hamming_topk(db[:2], db, 100)
    assert idx.shape == (2, 9)
    assert idx[0, 0] == 0 and dist[0, 0] == 0
    assert sorted(idx[1].tolist()) == list(range(9))
    idx, dist = hamming_topk(db[:2], db, 0)
    assert idx.shape == dist.shape == (2, 0)
    idx, dist = hamming_topk(db[:2], db[:0], 5)
    assert idx.shape == (2, 0)


@pytest.mark.parametrize("one_pass_max", [0, 10_000])
def test_hamming_topk_sampled_threshold_paths(monkeypatch, one_pass_max: int) -> None:
    """Exercise the large-n paths (sampled k-th distance, tie fill across blocks) on small data."""
    monkeypatch.setattr(codes_mod, "BLOCK_ROWS", 64)
    monkeypatch.setattr(codes_mod, "_SAMPLE_ABOVE", 100)
    monkeypatch.setattr(codes_mod, "_SAMPLE_SIZE", 50)
    monkeypatch.setattr(codes_mod, "_ONE_PASS_MAX", one_pass_max)
    rng = np.random.default_rng(4)
    db = random_codes(rng, 1000, 16)
    db[::7] = db[0]  # a large tie group spread over many blocks
    queries = np.concatenate([db[:2], random_codes(rng, 4, 16)])
    for k in (1, 30, 200, 1000):
        idx, dist = hamming_topk(queries, db, k)
        for q in range(queries.shape[0]):
            expected = naive_topk(queries[q].tolist(), db.tolist(), k)
            assert list(zip(dist[q].tolist(), idx[q].tolist(), strict=True)) == expected


def test_hamming_topk_large_matches_sort_reference() -> None:
    """Default block and sample sizes on more codes than one block (numpy sort as reference)."""
    rng = np.random.default_rng(5)
    db = random_codes(rng, 150_000, 64)
    queries = db[[0, 77_777]]
    idx, dist = hamming_topk(queries, db, 100)
    for q in range(2):
        full = hamming_distances(queries[q], db)
        order = np.lexsort((np.arange(db.shape[0]), full))[:100]
        np.testing.assert_array_equal(idx[q], order)
        np.testing.assert_array_equal(dist[q], full[order])


def test_hamming_topk_threads_give_same_answer(monkeypatch) -> None:
    monkeypatch.setattr(codes_mod, "_THREADS_ABOVE", 0)
    rng = np.random.default_rng(8)
    db = random_codes(rng, 2000, 100)
    queries = random_codes(rng, 7, 100)
    single = hamming_topk(queries, db, 33, workers=1)
    for workers in (2, 3, 16):
        for a, b in zip(single, hamming_topk(queries, db, 33, workers=workers), strict=True):
            np.testing.assert_array_equal(a, b)


def test_codes_bytes_round_trip_little_endian() -> None:
    rng = np.random.default_rng(6)
    codes = random_codes(rng, 4, 100)
    blobs = codes_to_bytes(codes)
    assert [len(b) for b in blobs] == [16] * 4
    np.testing.assert_array_equal(codes_from_bytes(blobs, 2), codes)
    assert codes_to_bytes(np.array([[1]], dtype=np.uint64)) == [b"\x01" + b"\x00" * 7]
    assert codes_from_bytes([], 1).shape == (0, 1)
    with pytest.raises(ValueError):
        codes_from_bytes([b"\x00" * 8], 2)


def test_rejects_wrong_dtype_and_width() -> None:
    with pytest.raises(TypeError):
        hamming_topk(np.zeros((1, 1), np.int64), np.zeros((3, 1), np.uint64), 1)
    with pytest.raises(ValueError):
        hamming_topk(np.zeros((1, 2), np.uint64), np.zeros((3, 1), np.uint64), 1)
