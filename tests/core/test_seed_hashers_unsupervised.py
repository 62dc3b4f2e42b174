"""HARR, DistillHash, DSG and DMUH: each mechanism against a slow reference on tiny shapes, each
method learning on a seeded clustered set (beats LSH at 32 bits) and reloading to the same codes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_urph import clustered
from torch import nn

from imagehash_app.core.evaluation import Benchmark
from imagehash_app.core.hashing import METHODS, TrainProgress, load_hasher, make_hasher
from imagehash_app.core.hashing.code_objectives import (
    cosine_quantization_loss,
    cross_correlation_loss,
    momentum_update,
    pair_nll,
    priority_pair_loss,
    similarity_mse,
    uncertainty_weights,
)
from imagehash_app.core.hashing.similarity_signals import (
    distilled_labels,
    distilled_neighbours,
    drop_contradictions,
    kmeans,
    knn_relation,
    shared_neighbour_confidence,
    smooth_guidance,
    wta_codes,
    wta_levels,
    wta_permutations,
    wta_similarity,
    wta_target,
)

SEED_METHODS = ("harr", "distillhash", "dsg", "dmuh")
SMALL = {
    "hidden": 32,
    "decoder_hidden": 32,
    "batch_size": 128,
    "neighbours_per_query": 1,
    "input_dim": 32,
    "epochs": 6,
    "decoder_epochs": 2,
    "init": "random",  # learning from a random head: the objective, not the ITQ start, must work
}
EXTRA = {"harr": {"wta_hashes": 64}}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- HARR ----------------------------------------------------------------------------------------
def test_wta_codes_and_similarity_match_slow_reference() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 9, generator=g)
    windows = wta_permutations(9, 5, 3, g)
    assert windows.shape == (5, 3)
    assert all(len(set(w.tolist())) == 3 for w in windows)  # distinct coordinates per window
    codes = wta_codes(X, windows, block=4)
    for i, h in itertools.product(range(6), range(5)):
        vals = [float(X[i, j]) for j in windows[h]]
        assert int(codes[i, h]) == vals.index(max(vals))
    # Rank order is all WTA sees: a monotone transform changes nothing.
    assert torch.equal(wta_codes(X.pow(3) * 2 + 1, windows), codes)
    sim = wta_similarity(codes, 3)
    for i, j in itertools.product(range(6), range(6)):
        agree = sum(int(codes[i, h]) == int(codes[j, h]) for h in range(5)) / 5
        assert float(sim[i, j]) == pytest.approx(agree)
    # The background agreement is "unrelated" (0), the nearest neighbours' is 1; clipped.
    t = wta_target(torch.tensor([0.3, 0.6, 0.9, 0.0]), 0.3, 0.6)
    assert t.tolist() == pytest.approx([0.0, 1.0, 1.0, -1.0])
    # Levels: items 2k and 2k+1 share their codes and are each other's neighbour.
    twins = torch.randint(3, (5, 40), generator=g).repeat_interleave(2, dim=0)
    knn = (torch.arange(10) ^ 1)[:, None]
    background, near = wta_levels(twins, knn, 3, 4000, g)
    assert near == 1.0 and background == pytest.approx(1 / 3 + 2 / 3 / 9, abs=0.03)


def test_cross_correlation_and_cosine_quantization_match_slow_reference() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    n, L = a.shape

    def standard(m: torch.Tensor, k: int) -> list[float]:
        col = [float(m[i, k]) for i in range(n)]
        mu = sum(col) / n
        sd = math.sqrt(sum((v - mu) ** 2 for v in col) / n)
        return [(v - mu) / sd for v in col]

    za, zb = [standard(a, k) for k in range(L)], [standard(b, k) for k in range(L)]
    C = [[sum(za[k][i] * zb[m][i] for i in range(n)) / n for m in range(L)] for k in range(L)]
    want = (
        sum((1 - C[k][k]) ** 2 for k in range(L))
        + 0.3 * sum(C[k][m] ** 2 for k in range(L) for m in range(L) if k != m)
    ) / L
    assert float(cross_correlation_loss(a, b, 0.3)) == pytest.approx(want, rel=1e-9)
    # Two identical views with decorrelated bits: the identity, no loss.
    q, _ = torch.linalg.qr(torch.randn(8, 4, generator=g, dtype=torch.float64))
    q = q - q.mean(0)
    q, _ = torch.linalg.qr(q)
    assert float(cross_correlation_loss(q, q, 1.0)) < 0.2  # columns orthogonal after centring
    h = torch.tensor([[0.5, -1.0, 0.2], [1.0, 1.0, -1.0]], dtype=torch.float64)
    cos = [
        sum(abs(v) for v in row) / (math.sqrt(sum(v * v for v in row)) * math.sqrt(3))
        for row in h.tolist()
    ]
    assert float(cosine_quantization_loss(h)) == pytest.approx(1 - sum(cos) / 2)
    assert float(cosine_quantization_loss(h[1:])) == pytest.approx(0.0, abs=1e-12)
    target = torch.tensor([[1.0, 0.2], [0.2, 1.0]], dtype=torch.float64)
    c01 = float(torch.nn.functional.cosine_similarity(h[0], h[1], dim=0))
    assert float(similarity_mse(h, target)) == pytest.approx((c01 - 0.2) ** 2)


# -- DistillHash ---------------------------------------------------------------------------------
def tiny_knn(n: int, k: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(
        np.stack([rng.choice([j for j in range(n) if j != i], k, replace=False) for i in range(n)])
    )


def test_shared_neighbour_confidence_and_distillation_match_sets() -> None:
    n, k = 9, 3
    knn = tiny_knn(n, k, 0)
    conf = shared_neighbour_confidence(knn, block=4)
    closed = [set(knn[i].tolist()) | {i} for i in range(n)]
    for i, t in itertools.product(range(n), range(k)):
        j = int(knn[i, t])
        assert float(conf[i, t]) == pytest.approx(len(closed[i] & closed[j]) / (k + 1))
    kept = distilled_neighbours(knn, conf, keep=0.4)
    cut = float(torch.quantile(conf.flatten(), 0.6))
    for i, t in itertools.product(range(n), range(k)):
        assert int(kept[i, t]) == (int(knn[i, t]) if float(conf[i, t]) >= cut else -1)
    assert 0 < int((kept >= 0).sum()) < n * k  # some pairs distilled, some dropped

    X = torch.nn.functional.normalize(torch.randn(n, 5, generator=torch.Generator().manual_seed(2)), dim=1)
    items = torch.tensor([0, 3, 5, 7, 8, 2])
    labels, valid = distilled_labels(items, X, knn, kept, negative_below=0.1)
    for a, b in itertools.product(range(len(items)), repeat=2):
        i, j = int(items[a]), int(items[b])
        pos = j in kept[i].tolist() or i in kept[j].tolist()
        near = j in knn[i].tolist() or i in knn[j].tolist()
        neg = not near and float(X[i] @ X[j]) < 0.1
        assert bool(valid[a, b]) == (a != b and (pos or neg))
        if valid[a, b]:
            assert float(labels[a, b]) == float(pos)


def test_pair_likelihood_matches_slow_reference() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0], [2.0, 0.0, 0.5], [-1.0, 0.5, 0.0]], dtype=torch.float64)
    labels = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float64)
    valid = ~torch.eye(3, dtype=torch.bool)
    weights = torch.tensor([[1, 2, 1], [2, 1, 3], [1, 3, 1]], dtype=torch.float64)

    def nll(x: float, s: float) -> float:
        return -math.log(sigmoid(x)) if s else -math.log(1 - sigmoid(x))

    pos = [(i, j) for i in range(3) for j in range(3) if i != j and labels[i, j]]
    neg = [(i, j) for i in range(3) for j in range(3) if i != j and not labels[i, j]]

    def side(pairs: list, w: bool) -> float:
        ws = [float(weights[i, j]) if w else 1.0 for i, j in pairs]
        vals = [nll(float(logits[i, j]), float(labels[i, j])) for i, j in pairs]
        return sum(a * b for a, b in zip(ws, vals, strict=True)) / sum(ws)

    assert float(pair_nll(logits, labels, valid)) == pytest.approx(
        (side(pos, False) + side(neg, False)) / 2
    )
    assert float(pair_nll(logits, labels, valid, weights)) == pytest.approx(
        (side(pos, True) + side(neg, True)) / 2
    )


# -- DSG -----------------------------------------------------------------------------------------
def test_smooth_weights_and_contradiction_removal_match_reference() -> None:
    cos = torch.tensor([[1.0, 0.8, 0.1], [0.8, 1.0, 0.45], [0.1, 0.45, 1.0]])
    labels, weights = smooth_guidance(cos, threshold=0.5, temperature=0.1)
    for i, j in itertools.product(range(3), repeat=2):
        c = float(cos[i, j])
        assert float(labels[i, j]) == float(c > 0.5)
        assert float(weights[i, j]) == pytest.approx(abs(math.tanh((c - 0.5) / 0.1)), rel=1e-6)
    assert float(weights[1, 2]) < 0.5 < float(weights[0, 1])  # near the threshold: little weight
    clusters = torch.tensor([0, 1, 1])
    kept = drop_contradictions(labels, weights, clusters)
    for i, j in itertools.product(range(3), repeat=2):
        same = int(clusters[i]) == int(clusters[j])
        contradict = (labels[i, j] > 0.5 and not same) or (labels[i, j] <= 0.5 and same)
        assert float(kept[i, j]) == (0.0 if contradict else float(weights[i, j]))
    assert float(kept[0, 1]) == 0.0  # similar by cosine, split by the clustering: removed


def test_kmeans_recovers_separated_clusters() -> None:
    X, labels = clustered(n=300, clusters=4, seed=3)
    assign, centres = kmeans(torch.from_numpy(X), 4, 30, torch.Generator().manual_seed(0))
    assert centres.shape == (4, X.shape[1])
    # Every true cluster lands (almost) entirely in one k-means cluster.
    purity = sum(np.bincount(assign.numpy()[labels == c]).max() for c in range(4)) / len(labels)
    assert purity > 0.95


def test_priority_loss_matches_reference_and_puts_wrong_pairs_first() -> None:
    logits = torch.tensor([[0.0, 3.0, -2.0], [3.0, 0.0, 1.0], [-2.0, 1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.float64)
    weights = torch.tensor([[0, 0.5, 1], [0.5, 0, 0.2], [1, 0.2, 0]], dtype=torch.float64)

    def per(i: int, j: int) -> float:
        p = sigmoid(float(logits[i, j]))
        p = p if labels[i, j] else 1 - p
        return -((1 - p) ** 2) * math.log(p)

    sides = []
    for want in (1.0, 0.0):
        pairs = [(i, j) for i in range(3) for j in range(3) if float(labels[i, j]) == want]
        ws = [float(weights[i, j]) for i, j in pairs]
        sides.append(sum(w * per(i, j) for w, (i, j) in zip(ws, pairs, strict=True)) / sum(ws))
    assert float(priority_pair_loss(logits, labels, weights, 2.0)) == pytest.approx(sum(sides) / 2)
    # With γ = 0 it is the plain weighted likelihood; γ > 0 shrinks the right pairs' share most.
    one = torch.tensor([[2.0]], dtype=torch.float64)
    right = float(priority_pair_loss(one, torch.ones(1, 1), torch.ones(1, 1), 2.0))
    wrong = float(priority_pair_loss(-one, torch.ones(1, 1), torch.ones(1, 1), 2.0))
    assert right / float(pair_nll(one, torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool))) < 0.02
    assert wrong / float(pair_nll(-one, torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool))) > 0.75


# -- DMUH ----------------------------------------------------------------------------------------
def test_momentum_update_matches_formula() -> None:
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    momentum_update(target, online, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * o.detach())
        assert not t.requires_grad or t.grad is None


def test_uncertainty_weights_match_reference() -> None:
    h = torch.tensor([[0.9, -0.2, 0.5], [0.1, 0.8, -0.9]], dtype=torch.float64)
    hm = torch.tensor([[0.9, 0.3, 0.4], [-0.5, 0.5, -0.9]], dtype=torch.float64)
    bit_w, img_w = uncertainty_weights(h, hm, 1.0)
    u = [[abs(float(h[i, k] - hm[i, k])) for k in range(3)] for i in range(2)]
    mean_u = sum(sum(r) for r in u) / 6
    raw_bits = [[1 + v / mean_u for v in r] for r in u]
    mean_bits = sum(sum(r) for r in raw_bits) / 6
    want_bits = [v / mean_bits for r in raw_bits for v in r]
    assert bit_w.flatten().tolist() == pytest.approx(want_bits)
    U = [sum(r) / 3 for r in u]  # image-level: the mean over bits
    raw_img = [1 + v / (sum(U) / 2) for v in U]
    assert img_w.tolist() == pytest.approx([v / (sum(raw_img) / 2) for v in raw_img])
    assert float(bit_w[1, 0]) > float(bit_w[1, 1])  # the uncertain bit weighs more
    assert float(img_w[1]) > float(img_w[0])  # and so does the more uncertain image
    # No discrepancy (the first step): every weight is 1.
    same_b, same_i = uncertainty_weights(h, h, 1.0)
    assert torch.allclose(same_b, torch.ones_like(same_b)) and torch.allclose(same_i, torch.ones(2, dtype=torch.float64))


def test_knn_relation_is_symmetric_membership() -> None:
    knn = tiny_knn(7, 2, 4)
    knn[3, 1] = -1  # a placeholder (a pair distillation dropped) relates nothing
    items = torch.tensor([6, 0, 2, 5, 0, 3, 1])  # a query may come back as another's neighbour
    rel = knn_relation(items, knn)
    for a, b in itertools.product(range(len(items)), repeat=2):
        i, j = int(items[a]), int(items[b])
        assert bool(rel[a, b]) == (j in knn[i].tolist() or i in knn[j].tolist())


# -- the methods ---------------------------------------------------------------------------------
def test_registered_under_their_names() -> None:
    for method in SEED_METHODS:
        assert method in METHODS
        assert make_hasher(method, 16, 8).method == method


@pytest.fixture(scope="module")
def fitted() -> tuple:
    X, labels = clustered(n=1000)
    Q, D = X[:200], X[200:]
    bench = Benchmark(Q, D, labels[:200], labels[200:], map_k=100)
    lsh = make_hasher("lsh", 32, X.shape[1]).fit(D, seed=0)
    base = bench.score_codes(lsh.encode(Q), lsh.encode(D), 32, (10, 50))
    hashers, events = {}, {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny products: a second thread only spins on a shared machine
    try:
        for method in SEED_METHODS:
            events[method] = []
            params = {**SMALL, **EXTRA.get(method, {})}
            hashers[method] = make_hasher(method, 32, X.shape[1], **params).fit(
                D, seed=0, progress=events[method].append
            )
    finally:
        torch.set_num_threads(threads)
    return Q, D, bench, base, hashers, events


@pytest.mark.parametrize("method", SEED_METHODS)
def test_learns_on_clustered_set_and_beats_lsh(fitted, method: str) -> None:
    Q, D, bench, base, hashers, events = fitted
    h = hashers[method]
    got = bench.score_codes(h.encode(Q), h.encode(D), 32, (10, 50))
    assert got["mAP"] > base["mAP"] + 0.03
    assert got["mAP@100"] > base["mAP@100"]
    # Progress: one report per epoch of the encoder, then of the decoder.
    reports: list[TrainProgress] = events[method]
    assert [e.epoch for e in reports] == list(range(1, 9)) and reports[-1].eta_s == 0.0
    assert all(np.isfinite(e.loss) for e in reports)
    # Its decoder serves the re-rank: closer to the features than the mean is.
    dec = h.decode(h.encode(D))
    mean = D.mean(axis=0) / np.linalg.norm(D.mean(axis=0))
    assert np.mean(np.sum((dec - D) ** 2, 1)) < 0.5 * np.mean(np.sum((mean - D) ** 2, 1))


@pytest.mark.parametrize("method", SEED_METHODS)
def test_saved_version_reloads_to_identical_codes(fitted, method: str, tmp_path) -> None:
    Q, D, _, _, hashers, _ = fitted
    h = hashers[method]
    h.meta["backbone"] = "tiny"
    h.save(tmp_path / method)
    again = load_hasher(tmp_path / method, expect_feature_dim=D.shape[1], expect_backbone="tiny")
    assert type(again) is type(h) and again.params == h.params
    assert np.array_equal(again.encode(D), h.encode(D))
    assert np.array_equal(again.encode(Q), h.encode(Q))
    assert np.allclose(again.decode(h.encode(Q)), h.decode(h.encode(Q)), atol=1e-6)
