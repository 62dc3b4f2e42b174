"""HARR's views from augmented images (`fit(X, views=...)`): checked, used, and released."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagehash_app.core.hashing import make_hasher

SMALL = {"hidden": 32, "decoder_hidden": 32, "batch_size": 64, "input_dim": 16, "epochs": 3,
         "decoder_epochs": 1, "wta_hashes": 32}


def data(n: int = 120, d: int = 24, views: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    V = X[:, None, :] + 0.3 * rng.standard_normal((n, views, d)).astype(np.float32)
    return X, V


def test_views_of_the_wrong_shape_are_refused() -> None:
    X, V = data()
    h = make_hasher("harr", 16, X.shape[1], **SMALL)
    with pytest.raises(ValueError, match="views must be"):
        h.fit(X, views=V[:-1])
    with pytest.raises(ValueError, match="views must be"):
        h.fit(X, views=V[:, :, :-1])


def test_image_views_feed_the_encoder_and_are_released(monkeypatch) -> None:
    torch.set_num_threads(1)
    X, V = data()
    seen: list[torch.Tensor] = []
    h = make_hasher("harr", 16, X.shape[1], view_mix=0.0, view_dropout=0.0, view_noise=0.0, **SMALL)
    real = type(h)._view

    def spy(self, fs, knn, items):  # type: ignore[no-untyped-def]
        seen.append(real(self, fs, knn, items))
        return seen[-1]

    monkeypatch.setattr(type(h), "_view", spy)
    h.fit(X, views=V, seed=0)
    # With every feature-space augmentation off, a view is exactly one of the item's image views.
    U_views = torch.from_numpy(((V - h.mean_) @ h.P_) / h.scale_)
    U_plain = torch.from_numpy(((X - h.mean_) @ h.P_) / h.scale_)
    first = seen[0]
    assert not any(torch.allclose(first[0], U_plain[i], atol=1e-4) for i in range(len(X)))
    assert any(torch.allclose(first[0], U_views[i, a], atol=1e-4)
               for i in range(len(X)) for a in range(V.shape[1]))
    assert h._views is None and h._image_views is None  # nothing of the views is kept
    plain = make_hasher("harr", 16, X.shape[1], view_mix=0.0, view_dropout=0.0, view_noise=0.0, **SMALL)
    monkeypatch.setattr(type(h), "_view", real)
    plain.fit(X, seed=0)
    assert not np.array_equal(plain.encode(X), h.encode(X))
