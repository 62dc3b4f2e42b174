"""The common hasher contract: shapes, tiny training sets, persistence, compatibility checks, seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imagehash_app.core.errors import IncompatibleModelError
from imagehash_app.core.hashing import METHODS, hasher_class, load_hasher, make_hasher

FAST = {
    "urph": {
        "epochs": 2,
        "hidden": 16,
        "decoder_hidden": 16,
        "batch_size": 64,
        "itq_iterations": 5,
    },
    "itq": {"iterations": 5},
    "lsh": {},
    **{
        method: {"epochs": 2, "decoder_epochs": 1, "hidden": 16, "decoder_hidden": 16,
                 "batch_size": 64, "itq_iterations": 5}
        for method in ("harr", "distillhash", "dsg", "dmuh")
    },
    "deepquan": {"epochs": 2, "hidden": 16, "z_dim": 16, "kmeans_iterations": 2},
}
# Supervised hashers need labels: their contract tests are in test_seed_hashers_supervised.py.
UNSUPERVISED = sorted(m for m in METHODS if not getattr(hasher_class(m), "supervised", False))


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("method", UNSUPERVISED)
@pytest.mark.parametrize("n", [1, 2, 5, 120])
def test_fits_from_one_sample_and_honours_shapes(method: str, n: int) -> None:
    d, bits = 12, 70  # more bits than dimensions and a second code word
    h = make_hasher(method, bits, d, **FAST[method]).fit(unit_rows(n, d), seed=1)
    codes = h.encode(unit_rows(7, d, seed=2))
    assert codes.dtype == np.uint64 and codes.shape == (7, 2)
    assert int(codes[:, 1].max()) < 2 ** (bits - 64)  # padding bits stay zero
    dec = h.decode(codes)
    assert dec.shape == (7, d) and dec.dtype == np.float32
    assert np.allclose(np.linalg.norm(dec, axis=1), 1.0, atol=1e-4)
    assert h.meta["train_size"] == n


@pytest.mark.parametrize("method", UNSUPERVISED)
def test_same_seed_same_codes_other_seed_other_codes(method: str) -> None:
    X = unit_rows(200, 16)
    a = make_hasher(method, 32, 16, **FAST[method]).fit(X, seed=3).encode(X)
    b = make_hasher(method, 32, 16, **FAST[method]).fit(X, seed=3).encode(X)
    c = make_hasher(method, 32, 16, **FAST[method]).fit(X, seed=4).encode(X)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("method", UNSUPERVISED)
def test_save_load_round_trip(method: str, tmp_path) -> None:
    X = unit_rows(150, 16)
    h = make_hasher(method, 24, 16, **FAST[method]).fit(X, seed=0)
    h.meta["backbone"] = "tiny"
    h.meta["metrics"]["note"] = 1.5
    h.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "hasher.json").read_text())
    for key in (
        "method",
        "bits",
        "feature_dim",
        "backbone",
        "train_size",
        "params",
        "metrics",
        "created",
    ):
        assert key in doc
    assert doc["method"] == method and doc["bits"] == 24 and doc["train_size"] == 150
    g = load_hasher(tmp_path / "m", expect_feature_dim=16, expect_backbone="tiny")
    assert type(g) is type(h) and g.meta["metrics"]["note"] == 1.5
    assert np.array_equal(g.encode(X), h.encode(X))
    assert np.allclose(g.decode(h.encode(X)), h.decode(h.encode(X)), atol=1e-6)


def test_load_refuses_mismatched_or_missing_models(tmp_path) -> None:
    h = make_hasher("itq", 16, 8).fit(unit_rows(30, 8))
    h.meta["backbone"] = "mobilenet_v2"
    h.save(tmp_path / "m")
    with pytest.raises(IncompatibleModelError, match="8-d"):
        load_hasher(tmp_path / "m", expect_feature_dim=1280)
    with pytest.raises(IncompatibleModelError, match="mobilenet_v2"):
        load_hasher(tmp_path / "m", expect_backbone="resnet50")
    with pytest.raises(IncompatibleModelError):
        load_hasher(tmp_path / "nothing-here")


def test_unknown_method_and_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown hashing method"):
        make_hasher("pq", 16, 8)
    h = make_hasher("lsh", 16, 8).fit(unit_rows(10, 8))
    with pytest.raises(ValueError):
        h.encode(unit_rows(3, 9))


def test_itq_codes_beat_quantising_pca_directly() -> None:
    """ITQ's rotation must lower the quantisation error of the PCA projection it starts from."""
    X = unit_rows(400, 32)
    h = make_hasher("itq", 16, 32).fit(X)
    V = (X - h.mean_) @ h.W_
    itq_err = np.mean((np.sign(V) - V / np.abs(V).mean()) ** 2)
    raw = make_hasher("itq", 16, 32, iterations=0).fit(X)
    V0 = (X - raw.mean_) @ raw.W_
    raw_err = np.mean((np.sign(V0) - V0 / np.abs(V0).mean()) ** 2)
    assert itq_err < raw_err


def test_linear_decoders_beat_the_mean() -> None:
    X = unit_rows(500, 24)
    for method in ("itq", "lsh"):
        h = make_hasher(method, 32, 24).fit(X)
        dec = h.decode(h.encode(X))
        mean = h.mean_ / np.linalg.norm(h.mean_)
        assert np.mean(np.sum(dec * X, axis=1)) > np.mean(X @ mean) + 0.1


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("n, d, rank", [(40, 60, 40), (40, 60, 7), (90, 30, 30)])
def test_pca_basis_is_the_top_singular_subspace(n: int, d: int, rank: int, device: str) -> None:
    """Both solvers (Gram matrix when n <= d, covariance otherwise), on the CPU and on a GPU,
    give the principal directions of the exact SVD, orthonormal, with directions of no variance
    replaced by random ones."""
    from imagehash_app.core.hashing.baselines import pca_basis

    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) * np.linspace(3, 0.5, d)
    Xc = (X - X.mean(axis=0)).astype(np.float32)
    k = min(d, 20)
    P = pca_basis(Xc, k, rng, device=device)
    _, s, Vt = np.linalg.svd(Xc.astype(np.float64), full_matrices=False)
    live = min(k, int(np.sum(s**2 > s[0] ** 2 * 1e-10)))
    np.testing.assert_allclose(np.abs(np.sum(P[:, :live] * Vt[:live].T, axis=0)), 1.0, atol=1e-6)
    np.testing.assert_allclose(P.T @ P, np.eye(k), atol=1e-6)
