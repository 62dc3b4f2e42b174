"""DeepQuan (seed 002) and the supervised DSH, DPSH, DSDH (seed 003): each mechanism against a
slow reference, each method learning on a clustered set, persistence and the hasher contract."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from imagehash_app.core.evaluation import Benchmark, first_stage
from imagehash_app.core.hashing import load_hasher, make_hasher
from imagehash_app.core.hashing.deepquan import (
    assign,
    assign_all,
    pack_indices,
    subspace_bits,
    unpack_indices,
    weighted_triplet_loss,
)
from imagehash_app.core.hashing.supervised import (
    dcc_update,
    dpsh_loss,
    dsdh_b_objective,
    dsdh_w_update,
    dsh_loss,
    pairwise_nll,
)

SUPERVISED = ("dsh", "dpsh", "dsdh")
FAST = {
    "deepquan": {"epochs": 6, "hidden": 64, "z_dim": 32, "kmeans_iterations": 3},
    "dsh": {"epochs": 12, "hidden": 64},
    "dpsh": {"epochs": 12, "hidden": 64},
    "dsdh": {"epochs": 12, "hidden": 64},
}


def clustered(n_per: int = 40, classes: int = 6, d: int = 32, noise: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 1.2
    labels = np.repeat(np.arange(classes), n_per)
    X = (centres[labels] + rng.standard_normal((labels.size, d)) * noise).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), labels


def fitted(method: str, bits: int, X: np.ndarray, labels: np.ndarray, seed: int = 0):
    kw = {"labels": labels} if method in SUPERVISED else {}
    return make_hasher(method, bits, X.shape[1], **FAST[method]).fit(X, seed=seed, **kw)


# -- DeepQuan's mechanisms -----------------------------------------------------------------------
def test_codebook_assignment_is_the_nearest_centroid() -> None:
    g = torch.Generator().manual_seed(0)
    z, C = torch.randn(50, 5, generator=g), torch.randn(16, 5, generator=g)
    got = assign(z, C)
    for i in range(50):
        dists = [float(((z[i] - C[k]) ** 2).sum()) for k in range(16)]
        assert int(got[i]) == int(np.argmin(dists))
    # all sub-spaces at once (batched when alike, one by one otherwise) agree with one at a time
    for sizes, ks in (([3, 3, 3], [16, 16, 16]), ([4, 3, 2], [16, 16, 4])):
        zz = torch.randn(40, sum(sizes), generator=g)
        books = [torch.randn(k, s, generator=g) for s, k in zip(sizes, ks, strict=True)]
        parts = torch.split(zz, sizes, dim=1)
        ref = torch.stack([assign(p, C) for p, C in zip(parts, books, strict=True)], dim=1)
        assert torch.equal(assign_all(zz, sizes, books), ref)


def test_indices_pack_into_the_code_words_and_back() -> None:
    rng = np.random.default_rng(1)
    for bits in (16, 64, 70, 128):
        m = len(subspace_bits(bits))
        top = [2**b for b in subspace_bits(bits)]
        idx = np.stack([rng.integers(0, t, 9) for t in top], axis=1)
        codes = pack_indices(idx, bits)
        assert codes.dtype == np.uint64 and codes.shape == (9, -(-bits // 64))
        assert np.array_equal(unpack_indices(codes, m), idx)
    assert subspace_bits(64) == [8] * 8 and subspace_bits(70) == [8] * 8 + [6]


def test_adc_equals_brute_force_distance_to_the_reconstruction() -> None:
    X, labels = clustered()
    h = fitted("deepquan", 32, X, labels)
    codes = h.encode(X)
    Q = X[:7]
    got = h.adc_distances(Q, codes)
    z = h.project(Q)
    idx = unpack_indices(codes, 4)
    books = [C.numpy() for C in h.codebooks_]
    for i in range(7):
        for j in range(0, X.shape[0], 17):
            recon = np.concatenate([books[m][idx[j, m]] for m in range(4)])
            assert got[i, j] == pytest.approx(
                float(((z[i] - recon) ** 2).sum()), rel=1e-4, abs=1e-4
            )
    # encoding picks, per sub-space, the codeword nearest to the item's own z
    zx = h.project(X[:5])
    self_dist = h.adc_distances(X[:5], codes[:5]).diagonal()
    quant_err = ((zx - h.reconstruct(codes[:5])) ** 2).sum(axis=1)
    np.testing.assert_allclose(self_dist, quant_err, rtol=1e-4, atol=1e-4)


def test_first_stage_of_deepquan_is_its_adc_order() -> None:
    X, labels = clustered(n_per=20)
    h = fitted("deepquan", 16, X, labels)
    codes = h.encode(X)
    bench = Benchmark(X[:4], X, labels[:4], labels)
    order = next(first_stage(h, bench.queries, h.encode(X[:4]), codes, None))
    dist = h.adc_distances(X[:4], codes)
    for i in range(4):
        assert order[i].tolist() == sorted(range(len(X)), key=lambda j: (dist[i, j], j))


def test_weighted_triplet_loss_matches_reference_and_ignores_zero_weights() -> None:
    g = torch.Generator().manual_seed(2)
    za, zp, zn = (torch.randn(6, 4, generator=g) for _ in range(3))
    w = torch.tensor([0.0, 0.5, 1.0, 0.2, 0.0, 0.7])
    ref_num, ref_den = 0.0, 0.0
    for i in range(6):
        dap = float(((za[i] - zp[i]) ** 2).sum()) / 4
        dan = float(((za[i] - zn[i]) ** 2).sum()) / 4
        ref_num += float(w[i]) * max(0.0, 0.3 + dap - dan)
        ref_den += float(w[i])
    assert float(weighted_triplet_loss(za, zp, zn, w, 0.3)) == pytest.approx(ref_num / ref_den)
    zn2 = zn.clone()
    zn2[0] += 100.0  # a zero-weight triplet changes nothing
    assert float(weighted_triplet_loss(za, zp, zn2, w, 0.3)) == pytest.approx(ref_num / ref_den)
    assert float(weighted_triplet_loss(za, zp, zn, torch.zeros(6), 0.3)) == 0.0


# -- the supervised objectives --------------------------------------------------------------------
def test_dsh_loss_matches_the_papers_pair_sum() -> None:
    g = torch.Generator().manual_seed(3)
    u = torch.randn(5, 3, generator=g) * 1.5
    labels = torch.tensor([0, 1, 0, 2, 1])
    m, alpha = 6.0, 0.01
    terms = []
    for i, j in itertools.combinations(range(5), 2):
        d2 = float(((u[i] - u[j]) ** 2).sum())
        y = float(labels[i] != labels[j])
        reg = float((u[i].abs() - 1).abs().sum() + (u[j].abs() - 1).abs().sum())
        terms.append(0.5 * (1 - y) * d2 + 0.5 * y * max(m - d2, 0.0) + alpha * reg)
    assert float(dsh_loss(u, labels, m, alpha)) == pytest.approx(np.mean(terms), rel=1e-5)


def test_dpsh_likelihood_matches_reference() -> None:
    g = torch.Generator().manual_seed(4)
    u, U = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g)
    s = (torch.rand(3, 5, generator=g) > 0.5).float()
    ref = 0.0
    for i in range(3):
        for j in range(5):
            theta = 0.5 * float(u[i] @ U[j])
            ref += -(float(s[i, j]) * theta - np.log1p(np.exp(theta)))
    assert float(pairwise_nll(u, U, s)) == pytest.approx(ref / 15, rel=1e-5)
    quant = float(((torch.sign(u) - u) ** 2).mean())
    assert float(dpsh_loss(u, U, s, 0.7)) == pytest.approx(ref / 15 + 0.7 * quant, rel=1e-5)


def test_dsdh_discrete_update_lowers_its_objective_and_each_row_is_exact() -> None:
    rng = np.random.default_rng(5)
    k, n, c = 4, 8, 3
    Y = np.eye(c)[:, rng.integers(0, c, n)]
    U = rng.standard_normal((k, n))
    B = np.where(rng.standard_normal((k, n)) > 0, 1.0, -1.0)
    mu, nu, eta = 1.0, 0.1, 0.5
    W = dsdh_w_update(B, Y, mu, nu)
    before = dsdh_b_objective(B, W, Y, U, mu, eta)
    after_b = dcc_update(B, W, Y, U, mu, eta)
    after = dsdh_b_objective(after_b, W, Y, U, mu, eta)
    assert after < before
    # the last row of the sweep is the exact minimiser over all 2^n settings of that row
    best = min(
        dsdh_b_objective(np.vstack([after_b[:-1], np.array(z)]), W, Y, U, mu, eta)
        for z in itertools.product((-1.0, 1.0), repeat=n)
    )
    assert after == pytest.approx(best)
    # W's closed form is a minimiser: any perturbation costs more
    W = dsdh_w_update(after_b, Y, mu, nu)
    base = mu * np.sum((Y - W.T @ after_b) ** 2) + nu * np.sum(W**2)
    for _ in range(5):
        Wp = W + rng.standard_normal(W.shape) * 0.05
        assert mu * np.sum((Y - Wp.T @ after_b) ** 2) + nu * np.sum(Wp**2) > base
    # more sweeps never go back up
    again = dcc_update(after_b, W, Y, U, mu, eta)
    assert dsdh_b_objective(again, W, Y, U, mu, eta) <= after + 1e-9


# -- the methods end to end -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["deepquan", *SUPERVISED])
def test_learns_a_clustered_set_better_than_lsh_at_32_bits(method: str) -> None:
    X, labels = clustered(n_per=50, classes=6, d=48, noise=1.1, seed=6)
    q = np.arange(0, X.shape[0], 6)
    db = np.setdiff1d(np.arange(X.shape[0]), q)
    bench = Benchmark(X[q], X[db], labels[q], labels[db], map_k=100)
    lsh = make_hasher("lsh", 32, 48).fit(X[db], seed=0)
    base = bench.score_codes(lsh.encode(X[q]), lsh.encode(X[db]), 32, (10,))["mAP@100"]
    h = fitted(method, 32, X[db], labels[db])
    got = bench.score(first_stage(h, X[q], h.encode(X[q]), h.encode(X[db]), None), (10,))
    assert got["mAP@100"] > base + 0.05, (method, got["mAP@100"], base)


@pytest.mark.parametrize("method", ["deepquan", *SUPERVISED])
def test_saved_version_reloads_to_identical_codes(method: str, tmp_path) -> None:
    X, labels = clustered(n_per=20)
    h = fitted(method, 24, X, labels, seed=2)
    h.meta["backbone"] = "tiny"
    h.save(tmp_path / "m")
    g = load_hasher(tmp_path / "m", expect_feature_dim=X.shape[1], expect_backbone="tiny")
    assert type(g) is type(h) and g.meta["train_size"] == X.shape[0]
    assert np.array_equal(g.encode(X), h.encode(X))
    np.testing.assert_allclose(g.decode(h.encode(X)), h.decode(h.encode(X)), atol=1e-6)
    if method == "deepquan":
        np.testing.assert_allclose(
            g.adc_distances(X[:3], h.encode(X)), h.adc_distances(X[:3], h.encode(X)), atol=1e-5
        )


@pytest.mark.parametrize("method", SUPERVISED)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_supervised_contract_on_tiny_sets(method: str, n: int) -> None:
    """The shared contract of tests/core/test_hashing.py, with labels: shapes, padding, decoder."""
    X, _ = clustered(n_per=3, classes=2, d=12)
    labels = np.arange(n) % 2
    h = make_hasher(method, 70, 12, **FAST[method]).fit(X[:n], labels=labels, seed=1)
    codes = h.encode(X[:6])
    assert codes.dtype == np.uint64 and codes.shape == (6, 2)
    assert int(codes[:, 1].max()) < 2**6
    dec = h.decode(codes)
    assert dec.shape == (6, 12) and np.allclose(np.linalg.norm(dec, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("method", SUPERVISED)
def test_supervised_methods_are_seeded_and_need_labels(method: str) -> None:
    X, labels = clustered(n_per=15)
    a = fitted(method, 16, X, labels, seed=3).encode(X)
    b = fitted(method, 16, X, labels, seed=3).encode(X)
    c = fitted(method, 16, X, labels, seed=4).encode(X)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="supervised"):
        make_hasher(method, 16, X.shape[1]).fit(X)
