"""The supervised hashers' pair form: a sparse set of (i, j, ±1) pairs — what a library's marks and
folders give — learnt by each objective summed over the observed pairs only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagehash_app.core.hashing import make_hasher
from imagehash_app.core.hashing.supervised import (
    check_pairs,
    dsh_loss,
    dsh_pair_loss,
    pair_classes,
    pair_nll,
    pairwise_nll,
)

FAST = {"epochs": 25, "hidden": 64, "input_dim": 32, "batch_size": 64}


def test_pair_classes_are_the_components_of_the_positive_pairs() -> None:
    pairs = np.array([[0, 1, 1], [1, 2, 1], [3, 4, 1], [2, 3, -1], [5, 0, -1]])
    y = pair_classes(7, pairs)
    assert y[0] == y[1] == y[2] and y[3] == y[4]
    assert len({y[0], y[3], y[5], y[6]}) == 4  # negatives join nothing; 5 and 6 stand alone


def test_pair_losses_equal_the_dense_ones_restricted_to_the_observed_pairs() -> None:
    torch.manual_seed(0)
    u = torch.randn(4, 8)
    labels = torch.tensor([0, 0, 1, 1])
    pairs = torch.tensor([[0, 1, 1], [0, 2, -1], [0, 3, -1], [1, 2, -1], [1, 3, -1], [2, 3, 1]])
    a, b, s = pairs[:, 0], pairs[:, 1], pairs[:, 2]
    # DSH: all 6 pairs i < j observed is exactly the dense mini-batch loss
    assert torch.allclose(dsh_pair_loss(u[a], u[b], s, 16.0, 0.01), dsh_loss(u, labels, 16.0, 0.01))
    # the likelihood over one observed pair is that pair's term of the dense matrix
    one = pair_nll(u[:1], u[2:3], torch.tensor([-1]))
    dense = pairwise_nll(u[:1], u[2:3], torch.zeros(1, 1))
    assert torch.allclose(one, dense)


def test_unobserved_pairs_give_no_gradient() -> None:
    u = torch.randn(3, 8, requires_grad=True)
    pair_nll(u[[0]], u[[1]], torch.tensor([1])).backward()
    assert u.grad[2].abs().sum() == 0 and u.grad[0].abs().sum() > 0


def test_check_pairs_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one"):
        check_pairs(5, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="index"):
        check_pairs(5, [[0, 5, 1]])
    with pytest.raises(ValueError, match=r"\+1"):
        check_pairs(5, [[0, 1, 0]])


def ranking_auc(codes: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
    """How often a positive pair is closer in Hamming distance than a negative one (ties half)."""
    dp = np.sum(codes[positives[:, 0]] != codes[positives[:, 1]], axis=1)
    dn = np.sum(codes[negatives[:, 0]] != codes[negatives[:, 1]], axis=1)
    return float(np.mean(dp[:, None] < dn[None, :]) + 0.5 * np.mean(dp[:, None] == dn[None, :]))


@pytest.mark.parametrize("method", ["dsh", "dpsh", "dsdh"])
def test_each_method_learns_the_pairs_it_is_given(method: str) -> None:
    """Weakly grouped features and a sparse set of pairs (half the positives, 60 negatives): after
    the fit, positive pairs rank before negative ones far more often than under LSH, the trained
    pairs and held-back positive pairs of the same groups alike."""
    rng = np.random.default_rng(0)
    groups, per, d = 6, 8, 32
    centres = rng.standard_normal((groups, d)) * 0.6
    X = (np.repeat(centres, per, axis=0) + rng.standard_normal((groups * per, d))).astype(np.float32)
    g = np.repeat(np.arange(groups), per)
    pos = [(i, j, 1) for i in range(len(g)) for j in range(i + 1, len(g)) if g[i] == g[j]]
    neg = [(i, j, -1) for i in range(len(g)) for j in range(i + 1, len(g)) if g[i] != g[j]]
    rng.shuffle(pos)
    rng.shuffle(neg)
    train = np.array(pos[: len(pos) // 2] + neg[:60])
    held, negatives = np.array(pos[len(pos) // 2 :]), np.array(neg[60:])
    h = make_hasher(method, 32, d, **FAST).fit(X, pairs=train, seed=0)
    codes = np.where(h.project(X) > 0, 1, -1)
    lsh = np.where(make_hasher("lsh", 32, d).fit(X, seed=0).project(X) > 0, 1, -1)
    for positives in (train[train[:, 2] > 0], held):
        assert ranking_auc(codes, positives, negatives) > ranking_auc(lsh, positives, negatives) + 0.1
    assert h.meta["metrics"]["pairs"] == {"positive": len(pos) // 2, "negative": 60}


def test_labels_and_pairs_are_one_or_the_other() -> None:
    h = make_hasher("dpsh", 16, 8, **FAST)
    X = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match="one of them"):
        h.fit(X)
    with pytest.raises(ValueError, match="one of them"):
        h.fit(X, labels=np.zeros(4), pairs=[[0, 1, 1]])
