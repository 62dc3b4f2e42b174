"""Training objectives of the rank-preserving hasher (vectorised; tests hold slow references).

The listwise loss treats each row as one query and its columns as the candidate list: the softmax
of the original similarities (a sharp temperature, so the top of the list dominates) is the target
distribution, the softmax of the code similarities the prediction, and the loss is their KL
divergence. Masked columns (the query itself, padding) take no part in either softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def listwise_kl(
    target_logits: torch.Tensor, pred_logits: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over queries of KL(softmax(target) ‖ softmax(pred)) over each row's valid columns.

    ``mask`` (bool, same shape) marks the valid candidates; rows without any valid candidate are
    left out of the mean (a training set of one sample has no list to rank).
    """
    if mask is None:
        mask = torch.ones_like(target_logits, dtype=torch.bool)
    neg = torch.finfo(target_logits.dtype).min
    t = target_logits.masked_fill(~mask, neg)
    p = pred_logits.masked_fill(~mask, neg)
    log_t = F.log_softmax(t, dim=1)
    log_p = F.log_softmax(p, dim=1)
    per = (log_t.exp() * (log_t - log_p)).masked_fill(~mask, 0.0).sum(dim=1)
    valid = mask.any(dim=1)
    if not bool(valid.any()):
        return target_logits.new_zeros(())
    return per[valid].mean()


def quantization_loss(h: torch.Tensor) -> torch.Tensor:
    """Pushes relaxed codes towards ±1: mean of (|h| - 1)²."""
    return (h.abs() - 1.0).pow(2).mean()


def balance_loss(h: torch.Tensor) -> torch.Tensor:
    """Each bit should be +1 on about half the items: mean over bits of (batch mean of h)²."""
    return h.mean(dim=0).pow(2).mean()


def decorrelation_loss(h: torch.Tensor) -> torch.Tensor:
    """Bits should carry different information: mean squared off-diagonal of hᵀh / n."""
    n, bits = h.shape
    if bits < 2:
        return h.new_zeros(())
    c = h.T @ h / max(n, 1)
    off = c - torch.diag_embed(torch.diagonal(c))
    return off.pow(2).sum() / (bits * (bits - 1))
