"""HARR (seed 001; Ma et al., "HARR: Learning Discriminative and High-quality Hash Codes for
Image Retrieval", ACM TOMM 2024) as a head on frozen features.

Only the abstract was at hand (the seed and the published summaries); the terms follow it:

1. **Similarity structure from Winner-Take-All hashes.** ``wta_hashes`` WTA hashes of the raw
   features (each: the arg-max over a random window of ``wta_window`` coordinates); two items'
   similarity is the share of hashes they agree on, rescaled so that the mean agreement of random
   pairs is 0 and that of k-nearest-neighbour pairs 1 (:func:`~.similarity_signals.wta_target`).
   Rescaling from chance (1/window) to full agreement instead was measured worse on flowers5
   (mAP 0.289 against ITQ's 0.344 at 32 bits): the targets all lay near 0 and the codes lost the
   ITQ start's structure. Window, count and the rescaling are our choice (K = 4, the usual WTA
   window).
2. **Similarity-preserving code learning** under that structure: the cosine between two items'
   relaxed codes is regressed on it (:func:`~.code_objectives.similarity_mse`), weight ``w_sim``.
3. **Bit-correlation reduction**: the cross-correlation matrix between the codes of a batch under
   two augmentations is driven to the identity (:func:`~.code_objectives.cross_correlation_loss`),
   weight ``w_bcr``, off-diagonal weight ``bcr_off`` (a Barlow-Twins form; the weights are ours).
4. **Cosine quantisation**: 1 - cos(h, sign(h)) (:func:`~.code_objectives.cosine_quantization_loss`),
   weight ``w_quant``.

Views. The paper augments images; the app's backbone is frozen, so the two views are made in
feature space (our choice, and a weaker augmentation than crops and colour jitter): mixing with
one of the item's own k nearest neighbours (weight drawn from U(0, ``view_mix``)), feature dropout
(``view_dropout``) and Gaussian noise on the encoder input (``view_noise``, in units of the
input's RMS). ``fit(X, views=V)`` takes views from extra backbone passes instead: ``V`` (n, A, d)
holds the features of A augmented copies of each training photo (crops, flips, colour jitter;
benchmarks/harr_views.py makes them), and each view is one of them drawn at random, to which the
feature-space augmentations above still apply where their parameters are not 0.
docs/results-hashing.md measures the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from imagehash_app.core.hashing.code_objectives import (
    cosine_quantization_loss,
    cross_correlation_loss,
    similarity_mse,
)
from imagehash_app.core.hashing.head import FeatureSpace
from imagehash_app.core.hashing.similarity_signals import (
    BACKGROUND_PAIRS,
    wta_codes,
    wta_levels,
    wta_permutations,
    wta_similarity,
    wta_target,
)
from imagehash_app.core.hashing.unsupervised_head import COMMON_DEFAULTS, UnsupervisedHeadHasher

DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "wta_hashes": 256,
    "wta_window": 4,
    "view_mix": 0.3,
    "view_dropout": 0.2,
    "view_noise": 0.1,
    "w_sim": 1.0,
    "w_bcr": 0.1,
    "bcr_off": 0.05,
    "w_quant": 0.1,
}


class HARRHasher(UnsupervisedHeadHasher):
    """WTA similarity structure + bit-correlation reduction + cosine quantisation; see the module."""

    method = "harr"
    defaults = DEFAULTS
    _image_views: np.ndarray | None = None
    _views: torch.Tensor | None = None

    def fit(self, X: np.ndarray, *, views: np.ndarray | None = None, **kwargs: Any) -> HARRHasher:
        """The shared fit (:class:`UnsupervisedHeadHasher`); ``views`` (n, A, d): features of A
        augmented images of each row of ``X``, the views of the bit-correlation term."""
        if views is not None:
            views = np.asarray(views, dtype=np.float32)
            n = np.asarray(X).shape[0]
            if views.ndim != 3 or views.shape[0] != n or views.shape[2] != self.feature_dim:
                raise ValueError(
                    f"views must be (n={n}, A, {self.feature_dim}) features, got {views.shape}"
                )
        self._image_views = views
        try:
            return super().fit(X, **kwargs)  # type: ignore[return-value]
        finally:
            self._image_views = None

    def _prepare(self, fs: FeatureSpace, knn: torch.Tensor, gen: torch.Generator) -> None:
        window = int(self.params["wta_window"])
        windows = wta_permutations(fs.X.shape[1], int(self.params["wta_hashes"]), window, gen)
        self._window = int(windows.shape[1])
        self._wta = wta_codes(fs.X, windows)
        self._levels = wta_levels(self._wta, knn, self._window, BACKGROUND_PAIRS, gen)
        self._P = torch.from_numpy(self.P_).to(fs.X.device)
        if self._image_views is not None:
            self._views = torch.from_numpy(self._image_views).to(fs.X.device)

    def _release(self) -> None:
        self._wta = self._P = self._views = None

    def _batch_loss(
        self, fs: FeatureSpace, knn: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        prm = self.params
        target = wta_target(wta_similarity(self._wta[items], self._window), *self._levels)
        h1 = torch.tanh(self.encoder_(self._view(fs, knn, items)))
        h2 = torch.tanh(self.encoder_(self._view(fs, knn, items)))
        loss = float(prm["w_sim"]) * 0.5 * (similarity_mse(h1, target) + similarity_mse(h2, target))
        loss = loss + float(prm["w_quant"]) * 0.5 * (
            cosine_quantization_loss(h1) + cosine_quantization_loss(h2)
        )
        if float(prm["w_bcr"]) and items.shape[0] > 1:
            loss = loss + float(prm["w_bcr"]) * cross_correlation_loss(h1, h2, float(prm["bcr_off"]))
        return loss

    def _view(self, fs: FeatureSpace, knn: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Encoder input of one feature-space augmentation of ``items``."""
        prm = self.params
        dev = fs.X.device
        if self._views is not None:  # one of each item's augmented-image features, at random
            pick = torch.randint(self._views.shape[1], (items.shape[0],), device=dev)
            x = self._views[items, pick]
        else:
            x = fs.X[items]
        if float(prm["view_mix"]) and knn.shape[1]:
            cols = torch.randint(knn.shape[1], (items.shape[0], 1), device=dev)
            partner = fs.X[knn[items].gather(1, cols)[:, 0]]
            lam = torch.rand((items.shape[0], 1), device=dev) * float(prm["view_mix"])
            x = (1.0 - lam) * x + lam * partner
        drop = float(prm["view_dropout"])
        if drop:
            x = x * (torch.rand(x.shape, device=dev) >= drop) / (1.0 - drop)
        u = (x @ self._P - fs.muP) / self.scale_
        return u + float(prm["view_noise"]) * torch.randn(u.shape, device=dev)
