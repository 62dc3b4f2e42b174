"""Candidate stage (scan and hnswlib graph) and the decoder rerank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagehash_app.core import search as search_mod
from imagehash_app.core.codes import hamming_distances, hamming_topk, pack_signs
from imagehash_app.core.search import (
    CandidateIndex,
    Hit,
    choose_method,
    rerank,
    two_stage_search,
)

BITS = 64


def clustered(seed: int, n: int, dim: int = 32, clusters: int = 40) -> np.ndarray:
    """L2-normalised Gaussian clusters: codes of such data have real neighbourhoods."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def lsh_codes(x: np.ndarray, bits: int = BITS, seed: int = 0) -> np.ndarray:
    planes = np.random.default_rng(seed).standard_normal((x.shape[1], bits))
    return pack_signs(x @ planes)


def tie_aware_recall(found: np.ndarray, found_dist: np.ndarray, exact_dist: np.ndarray) -> float:
    """Share of the exact top-k matched, counting any code at the k-th distance as a match."""
    k = exact_dist.shape[0]
    kth = exact_dist[-1]
    closer = int(np.count_nonzero(found_dist < kth))
    at_kth = int(np.count_nonzero(found_dist == kth))
    return (closer + min(at_kth, k - int(np.count_nonzero(exact_dist < kth)))) / k


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = clustered(0, 3000)
    return x, lsh_codes(x)


def test_choose_method_by_size(monkeypatch) -> None:
    monkeypatch.setattr(search_mod, "GRAPH_MIN_SIZE", 1000)
    assert choose_method(999) == "scan"
    assert choose_method(1000) == "graph"
    assert choose_method(10, "graph") == "graph"
    assert choose_method(10**7, "scan") == "scan"
    with pytest.raises(ValueError):
        choose_method(10, "faiss")


def test_auto_index_picks_graph_above_crossover(monkeypatch, data) -> None:
    _, codes = data
    monkeypatch.setattr(search_mod, "GRAPH_MIN_SIZE", 2000)
    assert CandidateIndex(codes[:1999], BITS).method == "scan"
    assert CandidateIndex(codes[:2000], BITS).method == "graph"


def test_graph_constant_is_a_measured_size() -> None:
    assert 1_000 <= search_mod.GRAPH_MIN_SIZE <= 10_000_000


def test_scan_candidates_equal_hamming_topk(data) -> None:
    _, codes = data
    index = CandidateIndex(codes, BITS, method="scan")
    pos, ham = index.candidates(codes[:5], 20)
    idx, dist = hamming_topk(codes[:5], codes, 20)
    np.testing.assert_array_equal(pos, idx)
    np.testing.assert_array_equal(ham, dist)
    assert index.codes is codes or np.array_equal(index.codes, codes)


def test_graph_agrees_with_scan(data) -> None:
    _, codes = data
    queries = lsh_codes(clustered(1, 100))  # unseen queries from the same distribution
    graph = CandidateIndex(codes, BITS, method="graph")
    scan = CandidateIndex(codes, BITS, method="scan")
    assert graph.method == "graph" and scan.method == "scan"
    k = 50
    gpos, gham = graph.candidates(queries, k)
    spos, sham = scan.candidates(queries, k)
    assert gpos.shape == spos.shape == (100, k)
    recalls = []
    for q in range(100):
        # The graph reports true Hamming distances, sorted, of distinct codes.
        np.testing.assert_array_equal(gham[q], hamming_distances(queries[q], codes)[gpos[q]])
        assert np.all(np.diff(gham[q]) >= 0)
        assert len(set(gpos[q].tolist())) == k
        recalls.append(tie_aware_recall(gpos[q], gham[q], sham[q]))
    assert np.mean(recalls) >= 0.95


def test_deep_requests_use_the_exact_scan(data) -> None:
    _, codes = data
    graph = CandidateIndex(codes, BITS, method="graph")
    k = search_mod.GRAPH_MAX_K
    assert graph.method_for(k) == "graph" and graph.method_for(k + 1) == "scan"
    deep = graph.candidates(codes[:3], k + 1)
    exact = hamming_topk(codes[:3], codes, k + 1)
    for a, b in zip(deep, exact, strict=True):
        np.testing.assert_array_equal(a, b)


def test_graph_save_load_round_trip(tmp_path: Path, data) -> None:
    _, codes = data
    path = tmp_path / "graph" / "model.hnsw"
    first = CandidateIndex(codes, BITS, method="graph", graph_path=path)
    assert first.graph_source == "built" and path.is_file()
    again = CandidateIndex(codes, BITS, method="graph", graph_path=path)
    assert again.graph_source == "loaded"
    for a, b in zip(
        first.candidates(codes[:10], 30), again.candidates(codes[:10], 30), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_graph_stale_or_corrupt_is_rebuilt(tmp_path: Path, data) -> None:
    _, codes = data
    path = tmp_path / "model.hnsw"
    CandidateIndex(codes[:1000], BITS, method="graph", graph_path=path)
    other = codes[1000:2000]  # same count and bits, different codes
    assert CandidateIndex(other, BITS, method="graph", graph_path=path).graph_source == "built"
    path.write_bytes(b"not a graph")
    rebuilt = CandidateIndex(other, BITS, method="graph", graph_path=path)
    assert rebuilt.graph_source == "built"
    pos, ham = rebuilt.candidates(other[:3], 1)
    assert pos[:, 0].tolist() == [0, 1, 2] and ham[:, 0].tolist() == [0, 0, 0]


def test_graph_extends_saved_prefix(tmp_path: Path, data) -> None:
    _, codes = data
    path = tmp_path / "model.hnsw"
    CandidateIndex(codes[:2000], BITS, method="graph", graph_path=path)
    grown = CandidateIndex(codes, BITS, method="graph", graph_path=path)
    assert grown.graph_source == "extended"
    pos, ham = grown.candidates(codes[2990:3000], 1)
    assert ham[:, 0].tolist() == [0] * 10
    assert CandidateIndex(codes, BITS, method="graph", graph_path=path).graph_source == "loaded"


@pytest.mark.parametrize("method", ["scan", "graph"])
def test_add_appends_positions(method: str, data) -> None:
    _, codes = data
    index = CandidateIndex(codes[:2500], BITS, method=method)
    index.add(codes[2500:])
    assert len(index) == 3000 and index.method == method
    pos, ham = index.candidates(codes[2995:], 1)
    assert ham[:, 0].tolist() == [0] * 5
    assert np.array_equal(index.codes, codes)


def test_added_codes_survive_save_and_load(tmp_path: Path, data) -> None:
    _, codes = data
    path = tmp_path / "model.hnsw"
    index = CandidateIndex(codes[:2000], BITS, method="graph", graph_path=path)
    index.add(codes[2000:])
    index.save()
    again = CandidateIndex(codes, BITS, method="graph", graph_path=path)
    assert again.graph_source == "loaded"
    pos, ham = again.candidates(codes[2990:], 1)
    assert ham[:, 0].tolist() == [0] * 10


def test_add_switches_auto_index_to_graph(monkeypatch, data) -> None:
    _, codes = data
    monkeypatch.setattr(search_mod, "GRAPH_MIN_SIZE", 2000)
    index = CandidateIndex(codes[:1500], BITS)
    assert index.method == "scan"
    index.add(codes[1500:2100])
    assert index.method == "graph"


def test_empty_index_answers_nothing() -> None:
    empty = np.zeros((0, 1), dtype=np.uint64)
    for method in ("scan", "graph"):
        index = CandidateIndex(empty, BITS, method=method)
        pos, ham = index.candidates(np.zeros((2, 1), np.uint64), 10)
        assert pos.shape == ham.shape == (2, 0)
        assert two_stage_search(None, np.zeros((2, 1), np.uint64), index, None, 5) == [[], []]


def test_rerank_orders_by_cosine_stably() -> None:
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    cands = np.array([[[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [1.0, 0.0]]], dtype=np.float32)
    assert rerank(q, cands).tolist() == [[1, 3, 2, 0]]


def test_without_decoder_score_is_hamming_similarity(data) -> None:
    _, codes = data
    index = CandidateIndex(codes, BITS, method="scan")
    hits = two_stage_search(None, codes[:2], index, None, top_k=5)
    assert [len(h) for h in hits] == [5, 5]
    assert hits[0][0] == Hit(position=0, score=1.0, hamming=0)
    for h in hits[1]:
        assert h.score == pytest.approx(1 - h.hamming / BITS)
    assert [h.hamming for h in hits[1]] == sorted(h.hamming for h in hits[1])


def test_rerank_with_exact_decoder_finds_true_nearest(data) -> None:
    x, codes = data
    lookup = {row.tobytes(): i for i, row in enumerate(codes)}
    assert len(lookup) == len(codes)  # unique codes, so an exact decoder exists

    def exact_decode(c: np.ndarray) -> np.ndarray:
        return x[[lookup[row.tobytes()] for row in c]]

    rng = np.random.default_rng(7)
    targets = rng.choice(len(x), 40, replace=False)
    queries = x[targets] + 0.3 * rng.standard_normal((40, x.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    true_nearest = np.argmax(queries @ x.T, axis=1)
    index = CandidateIndex(codes, BITS, method="scan")
    reranked = two_stage_search(queries, lsh_codes(queries), index, exact_decode, 10, 3000)
    assert [h[0].position for h in reranked] == true_nearest.tolist()
    assert reranked[0][0].score == pytest.approx(float(queries[0] @ x[true_nearest[0]]), abs=1e-5)
    assert all(len(h) == 10 for h in reranked)
    # Hamming order alone gets many of them wrong: the rerank is doing the work.
    hamming_only = two_stage_search(None, lsh_codes(queries), index, None, 1)
    wrong = sum(h[0].position != t for h, t in zip(hamming_only, true_nearest, strict=True))
    assert wrong >= 5


def test_decoded_once_per_distinct_candidate(data) -> None:
    x, codes = data
    seen: list[int] = []

    def decode(c: np.ndarray) -> np.ndarray:
        seen.append(len(c))
        return np.ones((len(c), x.shape[1]), np.float32)

    index = CandidateIndex(codes, BITS, method="scan")
    two_stage_search(x[:2], np.concatenate([codes[:1], codes[:1]]), index, decode, 5, 50)
    assert seen == [50]
    with pytest.raises(ValueError):
        two_stage_search(None, codes[:1], index, decode, 5, 50)
