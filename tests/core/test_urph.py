"""URPH: its losses against slow references, and its behaviour on a seeded clustered dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imagehash_app.core.errors import CancelledError
from imagehash_app.core.evaluation import Benchmark
from imagehash_app.core.hashing import TrainProgress, load_hasher, make_hasher
from imagehash_app.core.hashing.losses import (
    balance_loss,
    decorrelation_loss,
    listwise_kl,
    quantization_loss,
)
from imagehash_app.core.hashing.urph import exact_knn

SMALL = {
    "hidden": 64,
    "decoder_hidden": 64,
    "batch_size": 256,
    "input_dim": 32,
    "epochs": 8,
    "itq_iterations": 10,
}


def clustered(
    n: int = 1600, d: int = 48, clusters: int = 24, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Low intrinsic dimension + clusters, faiss-contrib style: where learned codes should shine."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, 8)) * 2.0
    labels = rng.integers(0, clusters, n)
    latent = centres[labels] + rng.standard_normal((n, 8))
    X = latent @ rng.standard_normal((8, d)) + 0.2 * rng.standard_normal((n, d))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    return X, labels


def slow_listwise_kl(t: np.ndarray, p: np.ndarray, mask: np.ndarray) -> float:
    losses = []
    for i in range(t.shape[0]):
        cols = [j for j in range(t.shape[1]) if mask[i, j]]
        if not cols:
            continue
        zt = sum(math.exp(t[i, j]) for j in cols)
        zp = sum(math.exp(p[i, j]) for j in cols)
        kl = 0.0
        for j in cols:
            pt, pp = math.exp(t[i, j]) / zt, math.exp(p[i, j]) / zp
            kl += pt * math.log(pt / pp)
        losses.append(kl)
    return sum(losses) / len(losses)


def test_listwise_kl_matches_slow_reference() -> None:
    g = torch.Generator().manual_seed(0)
    t, p = (
        torch.randn(5, 7, generator=g, dtype=torch.float64) * 3,
        torch.randn(5, 7, generator=g, dtype=torch.float64),
    )
    mask = torch.rand(5, 7, generator=g) > 0.3
    mask[2] = False  # a query without candidates is left out
    got = float(listwise_kl(t, p, mask))
    assert got == pytest.approx(slow_listwise_kl(t.numpy(), p.numpy(), mask.numpy()), rel=1e-9)
    assert float(listwise_kl(t, t, mask)) == pytest.approx(0.0, abs=1e-12)


def test_code_terms_match_slow_references() -> None:
    h = torch.tensor(
        [[0.5, -1.0, 0.2], [1.0, 0.1, -0.3], [-0.7, 0.9, 0.4], [0.2, 0.3, -1.0]],
        dtype=torch.float64,
    )
    n, L = h.shape
    q = sum((abs(float(h[i, j])) - 1) ** 2 for i in range(n) for j in range(L)) / (n * L)
    b = sum((sum(float(h[i, j]) for i in range(n)) / n) ** 2 for j in range(L)) / L
    off = [
        sum(float(h[i, a] * h[i, c]) for i in range(n)) / n
        for a in range(L)
        for c in range(L)
        if a != c
    ]
    assert float(quantization_loss(h)) == pytest.approx(q)
    assert float(balance_loss(h)) == pytest.approx(b)
    assert float(decorrelation_loss(h)) == pytest.approx(sum(v * v for v in off) / len(off))


def test_exact_knn_matches_brute_force() -> None:
    X, _ = clustered(300)
    knn = exact_knn(torch.from_numpy(X), 5, block=64).numpy()
    sims = X @ X.T
    np.fill_diagonal(sims, -np.inf)
    assert np.array_equal(np.sort(knn, axis=1), np.sort(np.argsort(-sims, axis=1)[:, :5], axis=1))


@pytest.fixture(scope="module")
def trained() -> tuple:
    X, labels = clustered()
    Q, D = X[:200], X[200:]
    urph = make_hasher("urph", 16, X.shape[1], **SMALL).fit(D, seed=0)
    lsh = make_hasher("lsh", 16, X.shape[1]).fit(D, seed=0)
    return Q, D, labels, urph, lsh


def test_urph_beats_lsh_on_recall(trained) -> None:
    Q, D, labels, urph, lsh = trained
    bench = Benchmark(Q, D, labels[:200], labels[200:], map_k=100)
    u = bench.score_codes(urph.encode(Q), urph.encode(D), 16, (10, 50))
    s = bench.score_codes(lsh.encode(Q), lsh.encode(D), 16, (10, 50))
    assert u["recall10@50"] > s["recall10@50"] + 0.1
    assert u["recall10@10"] > s["recall10@10"] + 0.05


def test_decoder_beats_predicting_the_mean(trained) -> None:
    _, D, _, urph, _ = trained
    dec = urph.decode(urph.encode(D))
    mean = D.mean(axis=0) / np.linalg.norm(D.mean(axis=0))
    err_dec = np.mean(np.sum((dec - D) ** 2, axis=1))
    err_mean = np.mean(np.sum((mean - D) ** 2, axis=1))
    assert err_dec < 0.5 * err_mean


def test_round_trip_and_warm_start(trained, tmp_path) -> None:
    Q, D, _, urph, _ = trained
    urph.save(tmp_path / "u")
    again = load_hasher(tmp_path / "u", expect_feature_dim=D.shape[1])
    assert np.array_equal(again.encode(D), urph.encode(D))
    # A warm start with no further epochs is exactly the model it starts from.
    warm = make_hasher("urph", 16, D.shape[1], **SMALL).fit(D[:300], init_from=again, epochs=0)
    assert np.array_equal(warm.encode(Q), urph.encode(Q))


def test_progress_determinism_and_cancel() -> None:
    X, _ = clustered(400)
    events: list[TrainProgress] = []
    a = make_hasher("urph", 16, X.shape[1], **{**SMALL, "epochs": 3}).fit(
        X, seed=5, progress=events.append
    )
    assert [e.epoch for e in events] == [1, 2, 3] and all(e.epochs == 3 for e in events)
    assert events[-1].eta_s == 0.0 and all(np.isfinite(e.loss) for e in events)
    b = make_hasher("urph", 16, X.shape[1], **{**SMALL, "epochs": 3}).fit(X, seed=5)
    assert np.array_equal(a.encode(X), b.encode(X))
    calls = iter(range(100))
    with pytest.raises(CancelledError):
        make_hasher("urph", 16, X.shape[1], **SMALL).fit(X, should_stop=lambda: next(calls) >= 2)
