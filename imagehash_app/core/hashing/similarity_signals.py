"""Where the unsupervised seed methods get their pairwise supervision from the frozen features.

- HARR (seed 001): Winner-Take-All hashes of the features and the share of WTA codes two items
  have in common (:func:`wta_codes`, :func:`wta_similarity`).
- DistillHash (seed 004): noisy similarity from local structure (k nearest neighbours) and the
  confident pairs distilled from it (:func:`shared_neighbour_confidence`, :func:`distilled_labels`).
- DSG (seed 004): smooth confidence weights around a similarity threshold, with the pairs that
  contradict a k-means clustering removed (:func:`smooth_guidance`, :func:`kmeans`,
  :func:`drop_contradictions`).
- DMUH: the plain local-structure labels (:func:`knn_relation`); its paper is supervised, so on an
  unlabelled library the kNN relation stands in for the labels.

Everything is vectorised PyTorch on the training device; the tests hold slow references.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BACKGROUND_PAIRS = 20_000  # random pairs whose cosines stand for the background of unrelated items


# -- HARR: Winner-Take-All -----------------------------------------------------------------------
def wta_permutations(d: int, hashes: int, window: int, gen: torch.Generator) -> torch.Tensor:
    """``hashes`` random windows (hashes, window) of distinct feature indices, one per WTA hash."""
    window = max(1, min(window, d))
    return torch.stack([torch.randperm(d, generator=gen)[:window] for _ in range(hashes)])


def wta_codes(X: torch.Tensor, windows: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """WTA code (n, hashes): for each hash, which position of its window holds the largest value
    (Yagnik et al. 2011). Depends only on the rank order of the coordinates."""
    windows = windows.to(X.device)
    out = torch.empty((X.shape[0], windows.shape[0]), dtype=torch.long, device=X.device)
    for start in range(0, X.shape[0], block):
        out[start : start + block] = X[start : start + block][:, windows].argmax(dim=2)
    return out


def wta_similarity(codes: torch.Tensor, window: int) -> torch.Tensor:
    """Share of WTA hashes (n, n) on which two items agree, through one-hot codes and a product."""
    hot = F.one_hot(codes, window).flatten(1).float()
    return hot @ hot.T / codes.shape[1]


def wta_target(similarity: torch.Tensor, background: float, near: float) -> torch.Tensor:
    """WTA agreement rescaled to a code-cosine target: the background agreement (unrelated items)
    -> 0, the mean agreement of nearest neighbours (``near``) -> 1, clipped to [-1, 1]."""
    return ((similarity - background) / max(near - background, 1e-6)).clamp(-1.0, 1.0)


def wta_levels(
    codes: torch.Tensor, knn: torch.Tensor, window: int, pairs: int, gen: torch.Generator
) -> tuple[float, float]:
    """Mean WTA agreement of random pairs (the background) and of kNN pairs (near)."""
    n = codes.shape[0]
    i = torch.randint(n, (pairs,), generator=gen).to(codes.device)
    j = (i + torch.randint(1, max(n, 2), (pairs,), generator=gen).to(codes.device)) % n
    background = float((codes[i] == codes[j]).float().mean()) if n > 1 else 1.0 / window
    if not knn.shape[1]:
        return background, 1.0
    t = torch.randint(knn.shape[1], (pairs,), generator=gen).to(codes.device)
    near = float((codes[i] == codes[knn[i, t]]).float().mean())
    return background, max(near, background + 1e-3)


# -- local structure ----------------------------------------------------------------------------
def knn_relation(items: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: item j is in item i's list (``lists`` (n, k), e.g. nearest neighbours; -1
    entries are placeholders) or i in j's. O(B k) through a lookup of batch positions; items may
    repeat."""
    uniq, inverse = torch.unique(items, return_inverse=True)
    where = torch.full((lists.shape[0],), -1, dtype=torch.long, device=items.device)
    where[uniq] = torch.arange(uniq.shape[0], device=items.device)
    listed = lists[uniq]  # (U, k)
    loc = torch.where(listed >= 0, where[listed.clamp_min(0)], torch.full_like(listed, -1))
    rows = torch.arange(uniq.shape[0], device=items.device)[:, None].expand_as(loc)
    hit = loc >= 0
    near = torch.zeros((uniq.shape[0], uniq.shape[0]), dtype=torch.bool, device=items.device)
    near[rows[hit], loc[hit]] = True
    near = near | near.T
    return near[inverse][:, inverse]


def shared_neighbour_confidence(knn: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Confidence (n, k) that each kNN pair (i, knn[i, t]) is truly similar: the share of the
    closed neighbourhoods N+(i) = N(i) ∪ {i} that the two items have in common, |N+(i) ∩ N+(j)|
    / (k + 1). A pair the local structure agrees on from both sides scores high; a neighbour by
    accident (a hub, an item at a cluster's edge) shares few neighbours and scores low."""
    n, k = knn.shape
    own = torch.arange(n, device=knn.device)[:, None]
    closed = torch.cat([own, knn], dim=1)  # (n, k + 1)
    out = torch.empty((n, k), dtype=torch.float32, device=knn.device)
    for start in range(0, n, block):
        mine = closed[start : start + block]  # (b, k+1)
        theirs = closed[knn[start : start + block]]  # (b, k, k+1)
        shared = (theirs[:, :, :, None] == mine[:, None, None, :]).any(dim=3).sum(dim=2)
        out[start : start + block] = shared.float() / (k + 1)
    return out


def distilled_neighbours(knn: torch.Tensor, confidence: torch.Tensor, keep: float) -> torch.Tensor:
    """kNN lists (n, k) with the pairs outside the most confident ``keep`` share set to -1."""
    if knn.numel() == 0:
        return knn.clone()
    flat = confidence.flatten()
    cut = torch.quantile(flat.float(), 1.0 - keep) if flat.numel() > 1 else flat.min()
    return torch.where(confidence >= cut, knn, torch.full_like(knn, -1))


def distilled_labels(
    items: torch.Tensor,
    X: torch.Tensor,
    knn: torch.Tensor,
    positives: torch.Tensor,
    negative_below: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DistillHash's distilled pair set within a batch: labels (B, B) float (1 similar, 0
    dissimilar) and which pairs were distilled (bool). Similar: a confident kNN pair (either
    direction, ``positives`` from :func:`distilled_neighbours`). Dissimilar: outside the kNN
    relation and with a feature cosine below ``negative_below``. The rest carry no label."""
    pos = knn_relation(items, positives)  # the -1 placeholders match no item
    near = knn_relation(items, knn)
    cos = X[items] @ X[items].T
    neg = (~near) & (cos < negative_below)
    eye = torch.eye(items.shape[0], dtype=torch.bool, device=items.device)
    return pos.float(), (pos | neg) & ~eye


def random_pair_cosine(X: torch.Tensor, pairs: int, gen: torch.Generator) -> torch.Tensor:
    """Cosines (pairs,) of random distinct pairs of rows: the background the thresholds use."""
    n = X.shape[0]
    if n < 2:
        return X.new_zeros(1)
    i = torch.randint(n, (pairs,), generator=gen)
    j = (i + torch.randint(1, n, (pairs,), generator=gen)) % n
    i, j = i.to(X.device), j.to(X.device)
    return (X[i] * X[j]).sum(dim=1)


# -- DSG: smooth guidance and clustering --------------------------------------------------------
def similarity_threshold(
    X: torch.Tensor, knn: torch.Tensor, pairs: int, gen: torch.Generator
) -> tuple[float, float]:
    """Threshold θ between "similar" and "dissimilar" cosines and a temperature T: θ is the
    midpoint between the mean cosine of kNN pairs and that of random pairs, T a quarter of their
    gap (the local structure against the background)."""
    near = (X[:, None, :] * X[knn]).sum(-1).mean() if knn.shape[1] else X.new_tensor(1.0)
    far = random_pair_cosine(X, pairs, gen).mean()
    return float((near + far) / 2), float((near - far).clamp_min(1e-3) / 4)


def smooth_guidance(
    cos: torch.Tensor, threshold: float, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (cos > threshold) and smooth confidence weights |tanh((cos - threshold) / T)|:
    near the threshold a pair's label is a guess and weighs little, far from it close to 1."""
    labels = (cos > threshold).float()
    weights = torch.tanh((cos - threshold) / max(temperature, 1e-6)).abs()
    return labels, weights


def drop_contradictions(
    labels: torch.Tensor, weights: torch.Tensor, clusters: torch.Tensor
) -> torch.Tensor:
    """Weights with contradictory pairs zeroed: labelled similar but in different clusters, or
    labelled dissimilar but in the same cluster (global information against local signals)."""
    same = clusters[:, None] == clusters[None, :]
    contradict = ((labels > 0.5) & ~same) | ((labels <= 0.5) & same)
    return weights.masked_fill(contradict, 0.0)


def kmeans(
    X: torch.Tensor, k: int, iterations: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means (cosine) with k-means++ seeding: assignments (n,) and centres (k, d)."""
    n = X.shape[0]
    k = max(1, min(k, n))
    first = int(torch.randint(n, (1,), generator=gen))
    centres = [X[first]]
    best = 1.0 - X @ X[first]  # cosine distance to the nearest chosen centre
    for _ in range(1, k):
        probs = best.clamp_min(0).cpu().double()
        pick = (
            int(torch.multinomial(probs / probs.sum(), 1, generator=gen))
            if float(probs.sum()) > 0
            else int(torch.randint(n, (1,), generator=gen))
        )
        centres.append(X[pick])
        best = torch.minimum(best, 1.0 - X @ X[pick])
    C = torch.stack(centres)
    assign = (X @ C.T).argmax(dim=1)
    for _ in range(iterations):
        sums = torch.zeros_like(C).index_add_(0, assign, X)
        empty = sums.norm(dim=1) < 1e-12
        C = torch.where(empty[:, None], C, F.normalize(sums, dim=1))
        new = (X @ C.T).argmax(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign, C
