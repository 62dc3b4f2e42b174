"""DistillHash (seed 004; Yang et al., "DistillHash: Unsupervised Deep Hashing by Distilling Data
Pairs", CVPR 2019) as a head on frozen features.

From the abstract and the published summaries (the full derivation was not at hand):

1. **Noisy similarity signals from local structure**: a pair is "similar" when one item is among
   the other's k nearest neighbours (``neighbours``), by feature cosine.
2. **Distillation to the confident pairs.** The paper shows that, when the noisy labels are right
   more often than not, the pairs whose noisy label agrees with the Bayes-optimal one can be
   picked out by a confidence score. Our score for a kNN pair is the share of neighbourhoods the
   two items have in common (:func:`~.similarity_signals.shared_neighbour_confidence`); the most
   confident ``distill_keep`` share of kNN pairs are kept as similar. Pairs outside the kNN
   relation whose cosine is below the ``negative_quantile`` quantile of random pairs' cosines are
   kept as dissimilar; every other pair is left out (:func:`~.similarity_signals.distilled_labels`).
   The score and both thresholds are our choice (the paper's two hyper-parameters are likewise
   the shares of pairs kept on either side).
3. **Bayesian learning of the codes**: the pairwise likelihood p(s_ij | h_i, h_j) = σ(Ω_ij),
   Ω_ij = ``omega_factor`` · h_iᵀh_j (½ as in DPSH), maximised over the distilled pairs
   (:func:`~.code_objectives.pair_nll`; similar and dissimilar pairs averaged apart, our choice
   against the imbalance), with the Gaussian prior on codes as the quantisation term
   ``w_quant`` · (|h| - 1)².
"""

from __future__ import annotations

from typing import Any

import torch

from imagehash_app.core.hashing.code_objectives import pair_logits, pair_nll
from imagehash_app.core.hashing.head import FeatureSpace
from imagehash_app.core.hashing.losses import quantization_loss
from imagehash_app.core.hashing.similarity_signals import (
    BACKGROUND_PAIRS,
    distilled_labels,
    distilled_neighbours,
    random_pair_cosine,
    shared_neighbour_confidence,
)
from imagehash_app.core.hashing.unsupervised_head import COMMON_DEFAULTS, UnsupervisedHeadHasher

DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "distill_keep": 0.5,
    "negative_quantile": 0.8,
    "omega_factor": 0.5,
    "w_quant": 0.1,
}

class DistillHashHasher(UnsupervisedHeadHasher):
    """Distilled kNN pairs + pairwise likelihood; see the module docstring."""

    method = "distillhash"
    defaults = DEFAULTS

    def _prepare(self, fs: FeatureSpace, knn: torch.Tensor, gen: torch.Generator) -> None:
        confidence = shared_neighbour_confidence(knn)
        self._positives = distilled_neighbours(knn, confidence, float(self.params["distill_keep"]))
        background = random_pair_cosine(fs.X, BACKGROUND_PAIRS, gen)
        self._negative_below = float(
            torch.quantile(background, float(self.params["negative_quantile"]))
        )

    def _release(self) -> None:
        self._positives = None

    def _batch_loss(
        self, fs: FeatureSpace, knn: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        labels, valid = distilled_labels(items, fs.X, knn, self._positives, self._negative_below)
        h = torch.tanh(self.encoder_(fs.U[items]))
        loss = pair_nll(pair_logits(h, float(self.params["omega_factor"])), labels, valid)
        return loss + float(self.params["w_quant"]) * quantization_loss(h)
