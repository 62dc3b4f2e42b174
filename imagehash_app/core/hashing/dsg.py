"""DSG (seed 004; "Deep Unsupervised Hashing by Distilled Smooth Guidance", ICME 2021, arXiv
2105.06125) as a head on frozen features.

From the abstract and the published descriptions (the full text was not at hand):

1. **Initial similarity signals from local structure, with smooth confidence weights.** A pair is
   labelled similar when its feature cosine is above a threshold θ, dissimilar otherwise; its
   weight is |tanh((cos - θ) / T)|, near 0 at the threshold and near 1 far from it
   (:func:`~.similarity_signals.smooth_guidance`). θ is the midpoint between the mean cosine of
   kNN pairs (``neighbours``) and that of random pairs, T a quarter of their gap (our choice).
2. **Global information from clustering removes contradictory pairs**: spherical k-means
   (``clusters``; 10 = the class count of the papers' data sets, our default) and every pair
   whose label contradicts it — similar across clusters, dissimilar within one — is dropped
   (:func:`~.similarity_signals.drop_contradictions`).
3. **Priority loss** for smooth similarity-preserving learning: the pairwise likelihood
   σ(Ω_ij), Ω_ij = ``omega_factor`` · h_iᵀh_j, weighted by the confidence and by (1 - p)^γ so that
   pairs the codes still get wrong come first (:func:`~.code_objectives.priority_pair_loss`;
   the focal form and γ = 2 are our reading of "priority"), plus the quantisation term
   ``w_quant`` · (|h| - 1)².
"""

from __future__ import annotations

from typing import Any

import torch

from imagehash_app.core.hashing.code_objectives import pair_logits, priority_pair_loss
from imagehash_app.core.hashing.head import FeatureSpace
from imagehash_app.core.hashing.losses import quantization_loss
from imagehash_app.core.hashing.similarity_signals import (
    BACKGROUND_PAIRS,
    drop_contradictions,
    kmeans,
    similarity_threshold,
    smooth_guidance,
)
from imagehash_app.core.hashing.unsupervised_head import COMMON_DEFAULTS, UnsupervisedHeadHasher

DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "clusters": 10,
    "kmeans_iterations": 30,
    "gamma": 2.0,
    "omega_factor": 0.5,
    "w_quant": 0.1,
}


class DSGHasher(UnsupervisedHeadHasher):
    """Smooth confidence weights + clustering-distilled pairs + priority loss; see the module."""

    method = "dsg"
    defaults = DEFAULTS

    def _prepare(self, fs: FeatureSpace, knn: torch.Tensor, gen: torch.Generator) -> None:
        self._threshold, self._temperature = similarity_threshold(fs.X, knn, BACKGROUND_PAIRS, gen)
        self._clusters, _ = kmeans(
            fs.X, int(self.params["clusters"]), int(self.params["kmeans_iterations"]), gen
        )

    def _release(self) -> None:
        self._clusters = None

    def _batch_loss(
        self, fs: FeatureSpace, knn: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        x = fs.X[items]
        labels, weights = smooth_guidance(x @ x.T, self._threshold, self._temperature)
        weights = drop_contradictions(labels, weights, self._clusters[items])
        weights = weights.fill_diagonal_(0.0)
        h = torch.tanh(self.encoder_(fs.U[items]))
        logits = pair_logits(h, float(self.params["omega_factor"]))
        loss = priority_pair_loss(logits, labels, weights, float(self.params["gamma"]))
        return loss + float(self.params["w_quant"]) * quantization_loss(h)
