"""Bit packing and Hamming kernels over packed uint64 codes.

Layout (docs/INTERFACES.md): bit ``i`` of a code lives in word ``i // 64`` at bit position
``i % 64``, least significant first; a set bit means the projection was > 0. Bits past ``bits``
in the last word are always zero, so Hamming distances never need a mask.

The exact scan works block by block: a block of database rows (a few hundred KiB) is XOR-ed with
the query and popcounted (numpy >= 2 ``bitwise_count``) into preallocated buffers that stay in
cache, and the top-k is selected by a distance histogram instead of a full sort: distances are
small integers, so the k-th distance is found by counting, every code strictly closer is taken, and
ties at the k-th distance are filled in index order (which is what makes the result deterministic).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np

WORD_BITS = 64
# Rows per block of the scan: 65 536 rows x 8 bytes = 512 KiB per word column, which keeps the
# XOR buffer and the distances of a block in L2 cache on common CPUs.
BLOCK_ROWS = 65_536
_THREADS_ABOVE = 50_000


def words_for(bits: int) -> int:
    """Number of uint64 words that hold ``bits`` bits."""
    if bits <= 0:
        raise ValueError(f"bits must be positive, got {bits}")
    return (bits + WORD_BITS - 1) // WORD_BITS


def pack_signs(z: np.ndarray) -> np.ndarray:
    """Pack the signs of ``z`` (n, L) into uint64 (n, ceil(L / 64)); bit set where ``z > 0``."""
    z = np.asarray(z)
    if z.ndim != 2:
        raise ValueError(f"expected a 2-d array (n, bits), got shape {z.shape}")
    n, bits = z.shape
    words = words_for(bits)
    signs = np.zeros((n, words * WORD_BITS), dtype=bool)
    signs[:, :bits] = z > 0
    packed = np.packbits(signs, axis=1, bitorder="little")  # (n, words * 8) bytes, LSB first
    return packed.view("<u8").astype(np.uint64, copy=False).reshape(n, words)


def unpack_signs(codes: np.ndarray, bits: int) -> np.ndarray:
    """Unpack uint64 (n, W) codes into float32 (n, bits) of +1 / -1."""
    codes = _as_codes(codes)
    if codes.shape[1] * WORD_BITS < bits:
        raise ValueError(f"{codes.shape[1]} words cannot hold {bits} bits")
    raw = np.ascontiguousarray(codes.astype("<u8", copy=False)).view(np.uint8)
    unpacked = np.unpackbits(raw, axis=1, bitorder="little", count=bits)
    return unpacked.astype(np.float32) * 2.0 - 1.0


def hamming_distances(query: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Hamming distance from one packed ``query`` (W,) to every row of ``db`` (n, W), int32 (n,)."""
    db = _as_codes(db)
    query = np.asarray(query, dtype=np.uint64).reshape(-1)
    if query.shape[0] != db.shape[1]:
        raise ValueError(f"query has {query.shape[0]} words, database has {db.shape[1]}")
    out = np.empty(db.shape[0], dtype=np.int32)
    for start, dist in _iter_block_distances(query, db):
        out[start : start + dist.shape[0]] = dist
    return out


def hamming_topk(
    queries: np.ndarray, db: np.ndarray, k: int, *, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming top-k of each query over ``db``.

    Returns ``(idx int64 (q, k'), dist int32 (q, k'))`` with ``k' = min(k, n)``, sorted by
    distance then by index, so equal distances always come back in the same order. A batch of
    queries is split over ``workers`` threads (default: the CPUs this process may use); numpy
    releases the GIL inside the XOR / popcount / compare kernels that dominate the time.
    """
    db = _as_codes(db)
    queries = _as_codes(queries)
    if queries.shape[1] != db.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} words, database has {db.shape[1]}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n, q = db.shape[0], queries.shape[0]
    kk = min(k, n)
    idx = np.empty((q, kk), dtype=np.int64)
    dist = np.empty((q, kk), dtype=np.int32)
    if kk == 0 or q == 0:
        return idx, dist

    def run(lo: int, hi: int) -> None:
        scratch = _Scratch(db.shape[1], n)
        for qi in range(lo, hi):
            idx[qi], dist[qi] = _topk_one(queries[qi], db, kk, scratch)

    workers = min(workers or _available_cpus(), q)
    # Threads only pay off when each query scans enough codes to dwarf the hand-over.
    if workers <= 1 or n < _THREADS_ABOVE:
        run(0, q)
        return idx, dist
    bounds = np.linspace(0, q, workers + 1).astype(int)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, lo, hi) for lo, hi in pairwise(bounds.tolist())]:
            future.result()
    return idx, dist


def codes_to_bytes(codes: np.ndarray) -> list[bytes]:
    """One little-endian BLOB per code row (how the catalogue stores codes in SQLite)."""
    codes = _as_codes(codes)
    little = np.ascontiguousarray(codes.astype("<u8", copy=False))
    row = little.shape[1] * 8
    buf = little.tobytes()
    return [buf[i : i + row] for i in range(0, len(buf), row)]


def codes_from_bytes(blobs: Iterable[bytes], words: int) -> np.ndarray:
    """Inverse of :func:`codes_to_bytes`: uint64 (n, words) from little-endian BLOBs."""
    blobs = blobs if isinstance(blobs, Sequence) else list(blobs)
    row = words * 8
    for i, blob in enumerate(blobs):
        if len(blob) != row:
            raise ValueError(f"code {i} has {len(blob)} bytes, expected {row} ({words} words)")
    if not blobs:
        return np.zeros((0, words), dtype=np.uint64)
    flat = np.frombuffer(b"".join(blobs), dtype="<u8")
    return flat.astype(np.uint64).reshape(len(blobs), words)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _as_codes(codes: np.ndarray) -> np.ndarray:
    """Validate packed codes: a C-contiguous uint64 (n, W) array."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"packed codes must be 2-d (n, words), got shape {codes.shape}")
    if codes.dtype != np.uint64:
        raise TypeError(f"packed codes must be uint64, got {codes.dtype}")
    return np.ascontiguousarray(codes)


class _Scratch:
    """Buffers reused across blocks and queries so the scan allocates nothing per block."""

    def __init__(self, words: int, n: int) -> None:
        rows = min(BLOCK_ROWS, max(n, 1))
        self.xor = np.empty((rows, words), dtype=np.uint64)
        self.count = np.empty((rows, words), dtype=np.uint8)
        self.dist = np.empty(n, dtype=np.uint8 if words * WORD_BITS < 256 else np.uint16)


def _block_distances(query: np.ndarray, block: np.ndarray, s: _Scratch, out: np.ndarray) -> None:
    """Write the Hamming distances of ``block`` rows to ``query`` into ``out``."""
    m = block.shape[0]
    xor = s.xor[:m]
    np.bitwise_xor(block, query, out=xor)
    if block.shape[1] == 1:
        np.bitwise_count(xor[:, 0], out=out)
    else:
        count = s.count[:m]
        np.bitwise_count(xor, out=count)
        np.add.reduce(count, axis=1, dtype=out.dtype, out=out)


def _iter_block_distances(query: np.ndarray, db: np.ndarray):
    """Yield ``(start, distances)`` for consecutive blocks of ``db``."""
    s = _Scratch(db.shape[1], db.shape[0])
    for start in range(0, db.shape[0], BLOCK_ROWS):
        block = db[start : start + BLOCK_ROWS]
        out = s.dist[start : start + block.shape[0]]
        _block_distances(query, block, s, out)
        yield start, out


# Above this many codes the k-th distance is first estimated from a strided sample (a full
# ``bincount`` casts every distance to intp and costs more than the scan itself).
_SAMPLE_ABOVE = 65_536
_SAMPLE_SIZE = 16_384
# When at most this many codes lie within the k-th distance, one pass collects them all.
_ONE_PASS_MAX = 8_192


def _topk_one(
    query: np.ndarray, db: np.ndarray, k: int, s: _Scratch
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one query: blockwise distances, then selection by the k-th distance."""
    n = db.shape[0]
    dist = s.dist
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        _block_distances(query, db[start:stop], s, dist[start:stop])
    t, within = _kth_distance(dist, k)
    if within <= _ONE_PASS_MAX:
        # Indices come out ascending, so a stable sort by distance orders ties by index.
        sel = np.flatnonzero(dist <= t)
        idx = sel[np.argsort(dist[sel], kind="stable")[:k]]
    else:
        closer = np.flatnonzero(dist < t)
        ties = _first_equal(dist, t, k - closer.shape[0])
        idx = np.concatenate([closer[np.argsort(dist[closer], kind="stable")], ties])
    return idx, dist[idx].astype(np.int32)


def _kth_distance(dist: np.ndarray, k: int) -> tuple[int, int]:
    """Smallest ``t`` with ``count(dist <= t) >= k``, and that count."""
    n = dist.shape[0]
    if n <= _SAMPLE_ABOVE:
        cum = np.cumsum(np.bincount(dist))
        t = int(np.searchsorted(cum, k))
        return t, int(cum[t])
    stride = n // _SAMPLE_SIZE
    cum = np.cumsum(np.bincount(dist[::stride])) * stride
    t = min(int(np.searchsorted(cum, k)), cum.shape[0] - 1)
    within = int(np.count_nonzero(dist <= t))
    while within < k:  # estimate too low: walk up
        t += 1
        within = int(np.count_nonzero(dist <= t))
    while t > 0:  # estimate may be too high: walk down while the count still reaches k
        below = int(np.count_nonzero(dist <= t - 1))
        if below < k:
            break
        t, within = t - 1, below
    return t, within


def _first_equal(dist: np.ndarray, value: int, need: int) -> np.ndarray:
    """Indices of the first ``need`` entries equal to ``value``, scanning blocks in order."""
    found: list[np.ndarray] = []
    for start in range(0, dist.shape[0], BLOCK_ROWS):
        hits = np.flatnonzero(dist[start : start + BLOCK_ROWS] == value)
        if hits.shape[0]:
            found.append(hits[:need] + start)
            need -= min(need, hits.shape[0])
            if need == 0:
                break
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
