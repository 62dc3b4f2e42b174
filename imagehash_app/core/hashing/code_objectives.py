"""Loss terms and training mechanisms of the unsupervised seed methods (HARR, DistillHash, DSG,
DMUH), vectorised; the tests hold slow references. ``h`` are relaxed codes (tanh of the logits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def similarity_mse(h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HARR's similarity preservation: mean over distinct pairs of (cos(h_i, h_j) - target_ij)²."""
    n = h.shape[0]
    if n < 2:
        return h.new_zeros(())
    hn = F.normalize(h, dim=1)
    err = (hn @ hn.T - target) ** 2
    return (err.sum() - torch.diagonal(err).sum()) / (n * (n - 1))


def cross_correlation_loss(a: torch.Tensor, b: torch.Tensor, off_weight: float) -> torch.Tensor:
    """HARR's bit-correlation reduction: the cross-correlation matrix C (bits, bits) of two views'
    codes, each bit standardised over the batch, is driven to the identity:
    [sum_k (1 - C_kk)² + off_weight * sum_{k != l} C_kl²] / bits. The diagonal makes each bit
    invariant to the augmentation, the off-diagonal makes the bits non-redundant."""
    n, bits = a.shape
    za = (a - a.mean(0)) / a.std(0, unbiased=False).clamp_min(1e-6)
    zb = (b - b.mean(0)) / b.std(0, unbiased=False).clamp_min(1e-6)
    c = za.T @ zb / max(n, 1)
    diag = torch.diagonal(c)
    off = c - torch.diag_embed(diag)
    return ((1.0 - diag).pow(2).sum() + off_weight * off.pow(2).sum()) / bits


def cosine_quantization_loss(h: torch.Tensor) -> torch.Tensor:
    """HARR's quantisation term: mean of 1 - cos(h, sign(h)) = 1 - |h|_1 / (sqrt(bits) |h|_2)."""
    bits = h.shape[1]
    return (1.0 - h.abs().sum(1) / (h.norm(dim=1).clamp_min(1e-12) * bits**0.5)).mean()


def pair_logits(h: torch.Tensor, factor: float) -> torch.Tensor:
    """Ω_ij = factor · h_iᵀh_j, the pairwise likelihood's logit (DPSH and DistillHash: factor ½)."""
    return h @ h.T * factor


def pair_nll(
    logits: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative log-likelihood of pair labels under p(s=1 | h_i, h_j) = σ(Ω_ij) (the Bayesian
    pairwise likelihood of DPSH that DistillHash learns with), softplus(Ω) - s Ω, over the valid
    pairs. Similar and dissimilar pairs are averaged apart and then together, since a batch holds
    far more dissimilar pairs. ``weights`` (same shape) weigh the pairs within each mean."""
    nll = F.softplus(logits) - labels * logits
    w = valid.float() if weights is None else weights * valid.float()
    return _sides_mean(nll, labels, w)


def priority_pair_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, gamma: float
) -> torch.Tensor:
    """DSG's priority loss: the pair likelihood weighted by the pair's confidence and by
    (1 - p)^γ, p the probability the codes give the pair's label, so that pairs the codes still
    get wrong have priority over the ones already right (a focal form). Averaged over the pairs'
    confidence, similar and dissimilar pairs apart as in :func:`pair_nll`."""
    log_p = torch.where(labels > 0.5, F.logsigmoid(logits), F.logsigmoid(-logits))
    focus = (1.0 - log_p.exp()).clamp_min(0.0).pow(gamma)
    return _sides_mean(-focus * log_p, labels, weights)


def _sides_mean(per: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``per`` over the similar pairs and over the dissimilar ones, then the mean
    of the two (a side without weight is left out; no pair at all gives 0)."""
    parts = []
    for side in (labels > 0.5, labels <= 0.5):
        ws = weights * side.float()
        if float(ws.sum()) > 0:
            parts.append((per * ws).sum() / ws.sum())
    return torch.stack(parts).mean() if parts else per.new_zeros(())


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """DMUH's momentum copy: θ_m ← m θ_m + (1 - m) θ for every parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def uncertainty_weights(
    h: torch.Tensor, h_momentum: torch.Tensor, strength: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DMUH's uncertainty: bit-level u_ik = |h_ik - h^m_ik| (discrepancy between the network and
    its momentum copy), image-level U_i = mean_k u_ik. Returns the weights that give uncertain
    bits and images more attention, each 1 + strength · x / mean(x), rescaled to mean 1 so that
    the loss's scale does not depend on the discrepancy's: bit weights (n, bits), image (n,)."""
    u = (h - h_momentum).abs().detach()
    image = u.mean(dim=1)
    bit_w = 1.0 + strength * u / u.mean().clamp_min(1e-12)
    img_w = 1.0 + strength * image / image.mean().clamp_min(1e-12)
    return bit_w / bit_w.mean(), img_w / img_w.mean()
