"""Two-stage search: Hamming candidates (exact scan or hnswlib graph), then decoder rerank.

Stage 1 finds the top-R codes by Hamming distance. Small libraries use the exact blockwise scan of
:mod:`imagehash_app.core.codes`; large ones an hnswlib graph over the codes as +/-1 vectors in
inner-product space, where ``ip = bits - 2 * hamming`` so the inner-product order is the Hamming
order. The switch happens at ``GRAPH_MIN_SIZE`` codes and only for up to ``GRAPH_MAX_K``
candidates, both measured by ``benchmarks/bench_search.py`` (docs/results-search.md). Stage 2 decodes the candidates' codes back to approximate features and
re-ranks them by cosine with the query's real feature; no real feature of the library is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagehash_app.core.codes import hamming_topk, unpack_signs, words_for

# Library size from which "auto" uses the graph: below it the exact scan is faster (or the graph
# misses more than 5% of the scan's top-100). Measured, see docs/results-search.md.
GRAPH_MIN_SIZE = 300_000
# Largest k (candidates per query) for which the graph is used: its cost grows with ef >= k while
# the scan's barely depends on k; at k = 1000 the scan won at every measured size.
GRAPH_MAX_K = 100
# hnswlib parameters (see its README / ALGO_PARAMS.md): M links per node, ef_construction for the
# build; ef at query time = max(GRAPH_EF_MIN, EF_SEARCH_FACTOR * k), the smallest factor that kept
# tie-aware recall@100 >= 0.96 at every measured size (ef = k dipped to 0.93).
GRAPH_M = 16
GRAPH_EF_CONSTRUCTION = 100
EF_SEARCH_FACTOR = 1.5
GRAPH_EF_MIN = 64  # a floor for small k: ef = 1 would return whatever the greedy walk hits first
GRAPH_SEED = 100
# Graphs smaller than this are built on one thread so that they come out deterministic.
_PARALLEL_BUILD_ABOVE = 50_000
_PARALLEL_QUERY_ABOVE = 32
_SIDECAR_FORMAT = 1
# Most floats of decoded candidate features held at once by a rerank (16 MB).
RERANK_SCRATCH_FLOATS = 1 << 22

Decoder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the code's position in the index, its score, its Hamming distance."""

    position: int
    score: float
    hamming: int


def choose_method(n: int, method: str = "auto") -> str:
    """Resolve ``method`` for a library of ``n`` codes ("auto" picks by ``GRAPH_MIN_SIZE``)."""
    if method == "auto":
        return "graph" if n >= GRAPH_MIN_SIZE else "scan"
    if method not in ("scan", "graph"):
        raise ValueError(f"unknown candidate method {method!r} (use 'auto', 'scan' or 'graph')")
    return method


class CandidateIndex:
    """Stage 1 of the search over a set of packed codes (grown with :meth:`add`).

    Positions returned are row numbers in ``codes``. The index keeps the codes (``.codes``) so that
    callers can decode the candidates. hnswlib forbids ``add_items`` alongside ``knn_query``, so
    graph access is serialised by a lock; the scan needs none.
    """

    def __init__(
        self,
        codes: np.ndarray,
        bits: int,
        method: str = "auto",
        graph_path: Path | None = None,
        save_graph: bool = True,
    ) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint64)
        if codes.ndim != 2 or codes.shape[1] != words_for(bits):
            raise ValueError(f"codes of shape {codes.shape} do not hold {bits}-bit codes")
        self.bits = bits
        self.graph_path = Path(graph_path) if graph_path is not None else None
        self.save_graph = save_graph  # False for readers: they load a saved graph, never write one
        self.requested_method = method
        self.method = choose_method(codes.shape[0], method)
        self._codes = codes
        self._lock = threading.Lock()
        self._graph = None
        self.ef_factor = EF_SEARCH_FACTOR  # ef = max(GRAPH_EF_MIN, ef_factor * k) at query time
        self.graph_source: str | None = None  # "loaded", "extended" or "built" when a graph is used
        if self.method == "graph":
            self._graph, self.graph_source = _open_graph(
                codes, bits, self.graph_path, self.save_graph
            )

    @property
    def codes(self) -> np.ndarray:
        """The packed codes this index searches, uint64 (n, W); rows are positions."""
        return self._codes

    def __len__(self) -> int:
        return self._codes.shape[0]

    def candidates(self, query_codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k positions by Hamming distance: ``(positions int64 (q, k'), hamming int32 (q, k'))``.

        ``k' = min(k, n)``; rows are sorted by distance then position. With the graph (see
        :meth:`method_for`) the distances are the true Hamming distances of the returned codes,
        but the set is approximate.
        """
        query_codes = np.atleast_2d(np.ascontiguousarray(query_codes, dtype=np.uint64))
        if self.method_for(k) == "scan":
            return hamming_topk(query_codes, self._codes, k)
        return self._graph_candidates(query_codes, min(k, len(self)))

    def method_for(self, k: int) -> str:
        """Which stage-1 method answers a request for ``k`` candidates ("scan" or "graph").

        The graph answers only up to ``GRAPH_MAX_K`` candidates; deeper requests use the exact
        scan, which is faster there (docs/results-search.md).
        """
        if self._graph is None or len(self) == 0 or k > GRAPH_MAX_K:
            return "scan"
        return "graph"

    def add(self, new_codes: np.ndarray) -> None:
        """Append codes (positions ``n .. n + m - 1``) without rebuilding an existing graph."""
        new_codes = np.ascontiguousarray(np.atleast_2d(new_codes), dtype=np.uint64)
        if new_codes.shape[1] != self._codes.shape[1]:
            raise ValueError(
                f"new codes have {new_codes.shape[1]} words, index has {self._codes.shape[1]}"
            )
        with self._lock:
            start = len(self)
            self._codes = np.concatenate([self._codes, new_codes])
            wanted = choose_method(len(self), self.requested_method)
            if self._graph is not None:
                # Not saved here: rewriting a big graph per batch would cost more than adding.
                # A saved prefix stays valid (it is extended on load); call save() when done.
                _extend_graph(self._graph, self._codes, start, self.bits)
                self.graph_source = "extended"
            elif wanted == "graph":
                self._graph, self.graph_source = _open_graph(
                    self._codes, self.bits, self.graph_path, self.save_graph
                )
            self.method = "graph" if self._graph is not None else "scan"

    def save(self) -> None:
        """Write the graph (if any) to ``graph_path``, e.g. after a run of :meth:`add` calls."""
        with self._lock:
            if self._graph is not None and self.graph_path is not None and self.save_graph:
                _save_graph(self._graph, self._codes, self.bits, self.graph_path)

    def _graph_candidates(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = unpack_signs(queries, self.bits)
        with self._lock:
            self._graph.set_ef(max(GRAPH_EF_MIN, k, int(self.ef_factor * k)))
            try:
                # hnswlib starts a thread pool per call: only worth it for real batches.
                threads = -1 if len(queries) >= _PARALLEL_QUERY_ABOVE else 1
                labels, _ = self._graph.knn_query(vectors, k=k, num_threads=threads)
            except RuntimeError:
                # hnswlib could not find k neighbours (tiny or degenerate graph): stay exact.
                return hamming_topk(queries, self._codes, k)
        positions = labels.astype(np.int64)
        found = self._codes[positions]  # (q, k, W)
        hamming = np.bitwise_count(found ^ queries[:, None, :]).sum(axis=2, dtype=np.int32)
        order = np.lexsort((positions, hamming))
        return np.take_along_axis(positions, order, 1), np.take_along_axis(hamming, order, 1)


def cosine_scores(query_features: np.ndarray, candidate_features: np.ndarray) -> np.ndarray:
    """Cosine of each query (q, d) with each of its candidates (q, k, d): float32 (q, k)."""
    q = _normalise(np.asarray(query_features, dtype=np.float32))
    c = _normalise(np.asarray(candidate_features, dtype=np.float32))
    return np.einsum("qd,qkd->qk", q, c)


def rerank(query_features: np.ndarray, candidate_features: np.ndarray) -> np.ndarray:
    """Order of each query's candidates by decreasing cosine with the query's real feature.

    ``query_features`` (q, d); ``candidate_features`` (q, k, d), e.g. the decoded candidate codes.
    Returns int64 (q, k): ``order[i, 0]`` is the index (in the candidate list) of query i's best
    candidate. Equal scores keep the candidate order (the Hamming order), so the result is stable.
    """
    scores = cosine_scores(query_features, candidate_features)
    return np.argsort(-scores, axis=1, kind="stable")


def two_stage_search(
    query_features: np.ndarray | None,
    query_codes: np.ndarray,
    index: CandidateIndex,
    decode: Decoder | None,
    top_k: int = 20,
    rerank_depth: int = 1000,
) -> list[list[Hit]]:
    """Hamming top-R candidates, then rerank by cosine with the decoded candidates.

    ``R = max(rerank_depth, top_k)``. ``decode(codes uint64 (m, W)) -> float32 (m, d)`` is the
    hasher's decoder; each distinct candidate code is decoded once per group of queries (groups
    keep the decoded candidates under ``RERANK_SCRATCH_FLOATS``). Without a decoder the Hamming
    order stands and ``score = 1 - hamming / bits``. Returns best first per query.
    """
    query_codes = np.atleast_2d(np.asarray(query_codes, dtype=np.uint64))
    if decode is None:
        positions, hamming = index.candidates(query_codes, top_k)
        scores = 1.0 - hamming / float(index.bits)
        return _hits(positions, scores, hamming)
    if query_features is None:
        raise ValueError("reranking with a decoder needs the queries' real features")
    query_features = np.atleast_2d(np.asarray(query_features, dtype=np.float32))
    if query_features.shape[0] != query_codes.shape[0]:
        raise ValueError(
            f"{query_features.shape[0]} query features for {query_codes.shape[0]} query codes"
        )
    depth = max(rerank_depth, top_k)
    # Queries go through in groups whose gathered candidate features (queries x R x d floats) stay
    # under RERANK_SCRATCH_FLOATS: all at once, R = 200 candidates of 1280 floats held 2 MB a query
    # (twice: gathered, then normalised), 5.5 GB for 2 000 queries.
    group = max(1, RERANK_SCRATCH_FLOATS // (depth * max(1, query_features.shape[1])))
    hits: list[list[Hit]] = []
    for lo in range(0, query_codes.shape[0], group):
        hits += _rerank_group(
            query_features[lo : lo + group], query_codes[lo : lo + group], index, decode, top_k,
            depth,
        )
    return hits


def _rerank_group(
    query_features: np.ndarray, query_codes: np.ndarray, index: CandidateIndex, decode: Decoder,
    top_k: int, depth: int,
) -> list[list[Hit]]:
    """`two_stage_search` of a few queries: each distinct candidate code is decoded once."""
    positions, hamming = index.candidates(query_codes, depth)
    if positions.shape[1] == 0:
        return [[] for _ in range(query_codes.shape[0])]
    unique, inverse = np.unique(positions, return_inverse=True)
    decoded = _normalise(np.asarray(decode(index.codes[unique]), dtype=np.float32))
    queries = _normalise(query_features)
    scores = np.einsum("qd,qkd->qk", queries, decoded[inverse.reshape(positions.shape)])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    take = np.take_along_axis
    return _hits(take(positions, order, 1), take(scores, order, 1), take(hamming, order, 1))


def _hits(positions: np.ndarray, scores: np.ndarray, hamming: np.ndarray) -> list[list[Hit]]:
    return [
        [Hit(int(p), float(s), int(h)) for p, s, h in zip(pr, sr, hr, strict=True)]
        for pr, sr, hr in zip(positions, scores, hamming, strict=True)
    ]


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# --- the hnswlib graph and its sidecar -------------------------------------------------------


def _empty_graph(bits: int):
    import hnswlib  # imported lazily: only large libraries pay for it

    return hnswlib.Index(space="ip", dim=bits)


def _new_graph(bits: int, capacity: int):
    graph = _empty_graph(bits)
    graph.init_index(
        max_elements=max(capacity, 1),
        ef_construction=GRAPH_EF_CONSTRUCTION,
        M=GRAPH_M,
        random_seed=GRAPH_SEED,
    )
    return graph


def _extend_graph(graph, codes: np.ndarray, start: int, bits: int) -> None:
    """Add ``codes[start:]`` to ``graph`` with labels equal to their positions."""
    n = codes.shape[0]
    if n <= start:
        return
    if graph.get_max_elements() < n:
        graph.resize_index(max(n, int(graph.get_max_elements() * 1.25)))
    threads = -1 if n - start > _PARALLEL_BUILD_ABOVE else 1
    for lo in range(start, n, 100_000):  # bounded float copies for very large libraries
        hi = min(lo + 100_000, n)
        graph.add_items(unpack_signs(codes[lo:hi], bits), np.arange(lo, hi), num_threads=threads)


def _build_graph(codes: np.ndarray, bits: int):
    graph = _new_graph(bits, codes.shape[0])
    _extend_graph(graph, codes, 0, bits)
    return graph


def _sidecar_path(graph_path: Path) -> Path:
    return graph_path.with_name(graph_path.name + ".json")


def _digest(codes: np.ndarray) -> str:
    """Content hash of the codes, so a graph built for other codes is never reused."""
    return hashlib.blake2b(np.ascontiguousarray(codes).tobytes(), digest_size=16).hexdigest()


def _open_graph(codes: np.ndarray, bits: int, graph_path: Path | None, save: bool = True):
    """Load the graph from ``graph_path`` when it matches the codes, extend or rebuild otherwise
    (and save what was extended or built, when ``save``)."""
    if graph_path is not None:
        loaded = _load_graph(codes, bits, graph_path)
        if loaded is not None:
            graph, count = loaded
            if count == codes.shape[0]:
                return graph, "loaded"
            _extend_graph(graph, codes, count, bits)
            if save:
                _save_graph(graph, codes, bits, graph_path)
            return graph, "extended"
    graph = _build_graph(codes, bits)
    if graph_path is not None and save:
        _save_graph(graph, codes, bits, graph_path)
    return graph, "built"


def _load_graph(codes: np.ndarray, bits: int, graph_path: Path):
    """The saved graph and its code count when it was built from a prefix of ``codes``."""
    sidecar = _sidecar_path(graph_path)
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    count = meta.get("count")
    if (
        meta.get("format") != _SIDECAR_FORMAT
        or meta.get("bits") != bits
        or not isinstance(count, int)
        or not 0 < count <= codes.shape[0]
        or meta.get("digest") != _digest(codes[:count])
        or not graph_path.is_file()
    ):
        return None
    graph = _empty_graph(bits)
    try:
        graph.load_index(str(graph_path), max_elements=codes.shape[0])
    except (RuntimeError, ValueError, OSError):
        return None
    if graph.get_current_count() != count:
        return None
    return graph, count


def _save_graph(graph, codes: np.ndarray, bits: int, graph_path: Path) -> None:
    """Write the graph then its sidecar, each atomically, so a crash never pairs them wrongly."""
    graph_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = _sidecar_path(graph_path)
    sidecar.unlink(missing_ok=True)
    tmp = graph_path.with_name(graph_path.name + ".tmp")
    graph.save_index(str(tmp))
    os.replace(tmp, graph_path)
    meta = {
        "format": _SIDECAR_FORMAT,
        "bits": bits,
        "count": int(codes.shape[0]),
        "digest": _digest(codes),
        "M": GRAPH_M,
        "ef_construction": GRAPH_EF_CONSTRUCTION,
    }
    tmp_meta = sidecar.with_name(sidecar.name + ".tmp")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, sidecar)


__all__ = [
    "GRAPH_MIN_SIZE",
    "CandidateIndex",
    "Hit",
    "choose_method",
    "cosine_scores",
    "rerank",
    "two_stage_search",
]
