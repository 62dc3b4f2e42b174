"""DMUH (seed 004; Fu et al., "Deep Momentum Uncertainty Hashing", Pattern Recognition 2022,
arXiv 2009.08012) as a head on frozen features.

From the abstract and the published descriptions (the full text was not at hand):

1. **A momentum-updated copy of the hashing network**: θ_m ← m θ_m + (1 - m) θ after every step
   (:func:`~.code_objectives.momentum_update`, m = ``momentum``; 0.99 is our choice).
2. **Bit-level uncertainty** u_ik = |h_ik - h^m_ik|, the discrepancy between the network's relaxed
   code and its momentum copy's, and **image-level uncertainty** U_i = mean_k u_ik
   (:func:`~.code_objectives.uncertainty_weights`).
3. **Both weight the optimisation**: uncertain images weigh more in the pairwise term (a pair
   weighs the mean of its two images' weights), uncertain bits more in the quantisation term
   w_ik (|h_ik| - 1)², each weight 1 + ``uncertainty_strength`` · x / mean(x), rescaled to mean 1
   (the form of the weights is our choice).

DMUH is a supervised method in its paper (class labels give the pairs). Here it is unsupervised:
a pair is labelled similar when its feature cosine is above DSG's threshold θ (midway between
kNN pairs' and random pairs' mean cosine, :func:`~.similarity_signals.similarity_threshold`) —
DSG's signal before its smoothing and distillation, so that the comparison isolates the
uncertainty weighting — learnt with the pairwise likelihood σ(Ω_ij), Ω_ij = ``omega_factor`` ·
h_iᵀh_j. (The kNN relation itself was tried first and measured worse: it labels most pairs of
one cluster dissimilar.)
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from imagehash_app.core.hashing.code_objectives import (
    momentum_update,
    pair_logits,
    pair_nll,
    uncertainty_weights,
)
from imagehash_app.core.hashing.head import FeatureSpace
from imagehash_app.core.hashing.similarity_signals import BACKGROUND_PAIRS, similarity_threshold
from imagehash_app.core.hashing.unsupervised_head import COMMON_DEFAULTS, UnsupervisedHeadHasher

DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "momentum": 0.99,
    "uncertainty_strength": 1.0,
    "omega_factor": 0.5,
    "w_quant": 0.1,
}


class DMUHHasher(UnsupervisedHeadHasher):
    """Momentum copy + bit- and image-level uncertainty weights; see the module docstring."""

    method = "dmuh"
    defaults = DEFAULTS

    def _prepare(self, fs: FeatureSpace, knn: torch.Tensor, gen: torch.Generator) -> None:
        self._momentum = copy.deepcopy(self.encoder_).requires_grad_(False)
        self._threshold, _ = similarity_threshold(fs.X, knn, BACKGROUND_PAIRS, gen)

    def _release(self) -> None:
        self._momentum = None

    def _after_step(self) -> None:
        momentum_update(self._momentum, self.encoder_, float(self.params["momentum"]))

    def _batch_loss(
        self, fs: FeatureSpace, knn: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        u = fs.U[items]
        h = torch.tanh(self.encoder_(u))
        with torch.no_grad():
            h_m = torch.tanh(self._momentum(u))
        bit_w, image_w = uncertainty_weights(h, h_m, float(self.params["uncertainty_strength"]))
        x = fs.X[items]
        labels = (x @ x.T > self._threshold).float()
        valid = ~torch.eye(items.shape[0], dtype=torch.bool, device=items.device)
        pair_w = (image_w[:, None] + image_w[None, :]) / 2
        logits = pair_logits(h, float(self.params["omega_factor"]))
        loss = pair_nll(logits, labels, valid, pair_w)
        return loss + float(self.params["w_quant"]) * (bit_w * (h.abs() - 1.0).pow(2)).mean()
