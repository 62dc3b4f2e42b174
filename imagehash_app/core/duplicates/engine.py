"""Finding copy pairs among many photos without comparing every pair.

Why: all-pairs comparison is what makes other tools take hours or run out of memory at 300 000
photos. Here:
1. candidates: each photo's symmetry-invariant vector (signature.invariant_vectors: the same for
   a photo and its rotations and mirrors) goes into an hnswlib graph, and each photo's `NEIGHBOURS`
   nearest are its candidates (one query per photo, rotations included);
2. a cheap check of every candidate: the DCT signal and the whole thumbnails' correlation at
   their best symmetry; below their gates the pair scores 0 (score.passes_gates);
3. the alignment and the calibrated score, only for the pairs left.
Pairs at or above `floor` are returned; grouping them is report.group_pairs' job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imagehash_app.core.duplicates import score as score_mod
from imagehash_app.core.duplicates import signature as sig
from imagehash_app.core.duplicates.report import TRANSFORMS

NEIGHBOURS = 8  # candidates per photo from the graph
GRAPH_M = 8
GRAPH_EF_CONSTRUCTION = 32
GRAPH_EF = 32
GRAPH_SEED = 15
PARALLEL_ABOVE = 50_000  # below this the graph is built on one thread (deterministic)
CHECK_CHUNK = 16_384  # candidate pairs checked between progress reports


@dataclass(frozen=True)
class FoundPairs:
    """Copy pairs (positions into the input), their scores and symmetries (b onto a), and how
    much work it took: candidates from the graph, and those aligned after the DCT check."""

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    transform: list[str]
    candidates: int
    aligned: int


@dataclass
class CopyIndex:
    """A library's symmetry-invariant vectors, for the copy candidates of one query photo: a
    query is one photo against all (a scan of n x 63 floats, ~25 MB at 100 000 photos, a few
    milliseconds), so no graph is built for it."""

    ids: np.ndarray
    vectors: np.ndarray

    @classmethod
    def build(cls, ids: Sequence[int], signatures: Sequence[bytes]) -> CopyIndex:
        vectors = sig.invariant_vectors(score_mod.Signatures(signatures).blocks)
        return cls(np.asarray(ids, np.int64), vectors)


def query_candidates(copy_index: CopyIndex, signature: bytes,
                     neighbours: int = NEIGHBOURS) -> list[int]:
    """Image ids of the library photos nearest to a query's signature, rotations included."""
    if len(copy_index.ids) == 0:
        return []
    vector = sig.invariant_vectors(score_mod.Signatures([signature]).blocks)[0]
    similarity = copy_index.vectors @ vector
    k = min(neighbours, len(similarity))
    nearest = np.argpartition(-similarity, k - 1)[:k]
    return [int(copy_index.ids[i]) for i in nearest]


def candidate_pairs(vectors: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """(m, 2) unique pairs i < j where one is among the other's nearest, by an hnswlib graph."""
    n = len(vectors)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    import hnswlib

    k = min(neighbours + 1, n)
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=n, M=GRAPH_M, ef_construction=GRAPH_EF_CONSTRUCTION,
                     random_seed=GRAPH_SEED)
    threads = -1 if n > PARALLEL_ABOVE else 1
    index.add_items(vectors, np.arange(n), num_threads=threads)
    index.set_ef(max(GRAPH_EF, k))
    labels, _ = index.knn_query(vectors, k=k, num_threads=threads)
    rows = np.repeat(np.arange(n), k)
    cols = labels.reshape(-1).astype(np.int64)
    keep = rows != cols
    a, b = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    return np.unique(np.stack([a, b], axis=1), axis=0)


def find_pairs(
    signatures: Sequence[bytes],
    floor: float,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> FoundPairs:
    """Copy pairs among `signatures` scoring at least `floor`. `progress(done, total)` counts
    candidate pairs checked; `cancel()` true stops it (CancelledError)."""
    from imagehash_app.core.errors import CancelledError

    sigs = score_mod.Signatures(signatures)
    pairs = candidate_pairs(sig.invariant_vectors(sigs.blocks))
    keep_a, keep_b, keep_s, keep_t = [], [], [], []
    aligned = 0
    for start in range(0, len(pairs), CHECK_CHUNK):
        if cancel is not None and cancel():
            raise CancelledError("Stopped.")
        if progress is not None:
            progress(start, len(pairs))
        chunk = pairs[start : start + CHECK_CHUNK]
        s, passed = score_mod.pair_signals(sigs, chunk[:, 0], chunk[:, 1])
        scores = np.where(passed, score_mod.calibrated(s.dct, s.aligned, s.chroma), 0.0)
        aligned += int(passed.sum())
        keep = scores >= floor
        keep_a.append(chunk[keep, 0])
        keep_b.append(chunk[keep, 1])
        keep_s.append(scores[keep])
        keep_t.append(s.transform[keep])
    if progress is not None:
        progress(len(pairs), len(pairs))
    if not keep_a:
        empty = np.zeros(0, np.int64)
        return FoundPairs(empty, empty, np.zeros(0), [], candidates=0, aligned=0)
    return FoundPairs(
        np.concatenate(keep_a), np.concatenate(keep_b), np.concatenate(keep_s),
        [TRANSFORMS[i] for i in np.concatenate(keep_t)], candidates=len(pairs), aligned=aligned,
    )
