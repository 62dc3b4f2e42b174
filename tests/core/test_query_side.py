"""The hashers' query side in numpy gives the codes and decoded features of the PyTorch modules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imagehash_app.core.hashing import make_hasher
from imagehash_app.core.hashing.query_side import (
    HEAD,
    LINEAR,
    SUPERVISED,
    QueryHasher,
    erf,
    load_query_hasher,
)

BITS, DIM, P = 48, 64, 24


def _random_hasher(method: str, seed: int):
    """A hasher of `method` with random (not zero-initialised) weights of the right shapes, so
    that every layer, GELU and LayerNorm included, shapes the output."""
    from imagehash_app.core.hashing.head import Encoder

    rng = np.random.default_rng(seed)
    h = make_hasher(method, BITS, DIM)
    if method in LINEAR:
        tensors = {
            "mean": rng.standard_normal(DIM).astype(np.float32) * 0.1,
            "W": rng.standard_normal((DIM, BITS)).astype(np.float32),
            "A": rng.standard_normal((BITS, DIM)).astype(np.float32) * 0.1,
        }
    else:
        h.mean_ = np.zeros(DIM, np.float32)
        h.P_ = np.zeros((DIM, P), np.float32)
        h.scale_ = 1.0
        if method in HEAD:
            h._build_networks(P)
        else:
            h.encoder_ = Encoder(P, int(h.params["hidden"]), BITS)
            h.A_ = np.zeros((BITS, DIM), np.float32)
        tensors = {
            k: (rng.standard_normal(v.shape) * 0.5).astype(np.float32)
            for k, v in h.state_dict().items()
        }
        tensors["P"] = np.linalg.qr(rng.standard_normal((DIM, P)))[0].astype(np.float32)
        tensors["scale"] = np.array([0.07], np.float32)
    h.load_state(tensors)
    return h


def test_erf_is_within_float32_rounding() -> None:
    x = np.linspace(-6, 6, 20001)
    exact = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(x) - exact)) < 5e-7


@pytest.mark.parametrize("method", sorted(LINEAR | HEAD | SUPERVISED))
def test_numpy_query_side_equals_pytorch(method: str, tmp_path) -> None:
    reference = _random_hasher(method, seed=len(method))
    reference.save(tmp_path)
    query = load_query_hasher(tmp_path, expect_feature_dim=DIM)
    assert isinstance(query, QueryHasher) and (query.bits, query.feature_dim) == (BITS, DIM)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    z_ref, z = reference.project(X), query.project(X)
    np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-4 * float(np.abs(z_ref).max()))
    # Codes: equal bit for bit, except where a logit sits on zero within rounding (none here).
    clear = np.abs(z_ref) > 1e-4 * float(np.abs(z_ref).max())
    assert clear.mean() > 0.99
    assert np.array_equal(np.sign(z)[clear], np.sign(z_ref)[clear])
    codes = reference.encode(X)
    if clear.all():
        assert np.array_equal(query.encode(X), codes)
    np.testing.assert_allclose(query.decode(codes), reference.decode(codes), atol=2e-5)
    assert query.encode(X[:0]).shape == (0, codes.shape[1])
    assert query.decode(codes[:0]).shape == (0, DIM)


def test_unknown_or_broken_hashers_go_to_the_full_loader(tmp_path) -> None:
    h = _random_hasher("urph", seed=1)
    h.meta["backbone"] = "tiny"
    h.save(tmp_path)
    assert load_query_hasher(tmp_path, expect_feature_dim=DIM + 1) is None
    assert load_query_hasher(tmp_path, expect_backbone="resnet50") is None
    assert load_query_hasher(tmp_path, expect_backbone="tiny") is not None
    (tmp_path / "weights.safetensors").write_bytes(b"garbage")
    assert load_query_hasher(tmp_path) is None
    meta = (tmp_path / "hasher.json").read_text().replace('"urph"', '"deepquan"')
    (tmp_path / "hasher.json").write_text(meta)
    assert load_query_hasher(tmp_path) is None


def test_library_searches_with_the_numpy_query_side(library_dir, photo_folder, tiny_settings) -> None:
    from imagehash_app.core.library import Library

    with Library.open(library_dir, settings=tiny_settings) as lib:
        list(lib.index([photo_folder.root]))
        first = lib.search([photo_folder.originals[0]], top_k=3)[0].results
        assert isinstance(lib._state().hasher, QueryHasher)
    assert first[0].path == photo_folder.originals[0] and first[0].hamming == 0
    assert set(photo_folder.copies[photo_folder.originals[0]]) & {r.path for r in first[1:]}
