"""Retrieval metrics and the dataset protocol behind ``imagehash-app eval``.

Definitions (the ones of the hashing literature, stated so that figures can be compared):

- **Ranking.** Float cosine ranks by descending ``q . x``; Hamming ranking by ascending distance.
  Ties are broken by database index (lower first), so every figure is deterministic.
- **Re-rank R.** The top ``R`` of the Hamming ranking are re-ordered by cosine between the query's
  real feature and the decoded candidates; the rest of the ranking keeps the Hamming order.
- **AP (all).** Mean, over the relevant items (same label), of the precision at each relevant
  item's rank, over the whole database ranking. **mAP** is its mean over queries.
- **AP@k.** ``sum_{i<=k} P(i) rel(i) / sum_{i<=k} rel(i)``: average precision over the relevant
  items retrieved within the top ``k``, divided by their number (0 when none is retrieved), the
  definition of the DSH/HashNet evaluation code that the CIFAR-10 figures in the literature use.
- **P@k.** Share of relevant items in the top ``k``.
- **kNN recall 10@R.** Share of the exact float-cosine top-10 that is in the method's top ``R``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagehash_app.core.codes import unpack_signs

BLOCK = 128  # queries per block: 128 x 59 000 float32 distances is 30 MB


# -- rankings ---------------------------------------------------------------------------------
def float_rankings(
    queries: np.ndarray, db: np.ndarray, exclude: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Blocks of full float-cosine rankings of ``db`` rows per query (ties by index).

    ``exclude`` (q,) gives, per query, a database row to leave out (the query itself when every
    item is a query), or -1.
    """
    for start in range(0, queries.shape[0], BLOCK):
        key = -(queries[start : start + BLOCK] @ db.T)
        yield _order(key, None if exclude is None else exclude[start : start + BLOCK])


def hamming_rankings(
    query_codes: np.ndarray, db_codes: np.ndarray, bits: int, exclude: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Blocks of full Hamming rankings, ties broken by database index."""
    db_signs = unpack_signs(db_codes, bits)
    for start in range(0, query_codes.shape[0], BLOCK):
        q = unpack_signs(query_codes[start : start + BLOCK], bits)
        # (bits - q.b) / 2 is the Hamming distance; exact in float32 for these sizes.
        key = np.rint((bits - q @ db_signs.T) * 0.5).astype(np.int32)
        yield _order(key, None if exclude is None else exclude[start : start + BLOCK])


def rerank(
    queries: np.ndarray, order: np.ndarray, decoded: Callable[[np.ndarray], np.ndarray], depth: int
) -> np.ndarray:
    """Re-order the first ``depth`` columns of ``order`` (q, n) by cosine with decoded features.

    ``decoded(indices)`` returns the decoded (L2-normalised) features of database rows; equal
    scores keep their Hamming order.
    """
    depth = min(depth, order.shape[1])
    head = order[:, :depth]
    sims = np.empty(head.shape, dtype=np.float32)
    for i in range(0, head.shape[0], 16):  # bounded memory: 16 x depth x d floats at a time
        part = head[i : i + 16]
        feats = decoded(part.reshape(-1)).reshape(part.shape[0], depth, -1)
        sims[i : i + 16] = np.einsum("qd,qkd->qk", queries[i : i + 16], feats)
    new = np.take_along_axis(head, np.argsort(-sims, axis=1, kind="stable"), axis=1)
    return np.concatenate([new, order[:, depth:]], axis=1)


def _order(key: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Columns by ascending key, ties by index; the excluded column of each row is dropped."""
    order = np.argsort(key, axis=1, kind="stable")
    if exclude is None:
        return order
    keep = order != exclude[:, None]
    if (exclude < 0).any():
        raise ValueError("exclude must name one database row for every query")
    return order[keep].reshape(order.shape[0], order.shape[1] - 1)


# -- metrics ----------------------------------------------------------------------------------
def average_precision(
    relevant: np.ndarray, k: int | None = None, total_relevant: np.ndarray | None = None
) -> np.ndarray:
    """AP per row of a relevance matrix (q, depth) in rank order.

    With ``k`` the sum runs over the top ``k`` and is divided by the relevant items found there
    (AP@k); without it, by ``total_relevant`` (all relevant items of the database), which makes it
    the AP over the full ranking when ``relevant`` covers the whole ranking.
    """
    rel = relevant[:, :k] if k is not None else relevant
    rel = rel.astype(np.float64)
    ranks = np.arange(1, rel.shape[1] + 1, dtype=np.float64)
    prec_sum = (np.cumsum(rel, axis=1) / ranks * rel).sum(axis=1)
    denom = (
        rel.sum(axis=1)
        if k is not None or total_relevant is None
        else total_relevant.astype(np.float64)
    )
    return np.divide(prec_sum, denom, out=np.zeros_like(prec_sum), where=denom > 0)


def precision_at(relevant: np.ndarray, k: int) -> np.ndarray:
    """Share of relevant items among the top ``k`` per query."""
    return relevant[:, :k].mean(axis=1)


def knn_recall(true_top: np.ndarray, ranking: np.ndarray, r: int) -> np.ndarray:
    """Per query: share of ``true_top`` (q, t) found in the first ``r`` columns of ``ranking``."""
    head = ranking[:, :r]
    return np.array([np.isin(t, h).mean() for t, h in zip(true_top, head, strict=True)])


@dataclass
class Benchmark:
    """One evaluation setting: query and database features, labels, and the exact float top-10.

    ``exclude`` (q,) names, per query, a database row to leave out of its ranking (the query
    itself when every item is a query), or is None.
    """

    queries: np.ndarray
    database: np.ndarray
    query_labels: np.ndarray | None = None
    db_labels: np.ndarray | None = None
    exclude: np.ndarray | None = None
    map_k: int = 1000
    p_k: int = 10
    true_k: int = 10

    def __post_init__(self) -> None:
        self.true_top = self._true_top()
        if self.query_labels is not None and self.db_labels is not None:
            total = (self.db_labels[None, :] == self.query_labels[:, None]).sum(axis=1)
            if self.exclude is not None:
                total = total - (self.db_labels[self.exclude] == self.query_labels)
            self.relevant_total = total

    def _true_top(self) -> np.ndarray:
        """Exact float-cosine top-``true_k`` of every query (the kNN ground truth)."""
        out = np.empty((self.queries.shape[0], self.true_k), dtype=np.int64)
        start = 0
        for block in float_rankings(self.queries, self.database, self.exclude):
            out[start : start + block.shape[0]] = block[:, : self.true_k]
            start += block.shape[0]
        return out

    def score(
        self, blocks: Iterator[np.ndarray], recall_depths: tuple[int, ...]
    ) -> dict[str, float]:
        """Every metric over full rankings given block by block, in query order."""
        ap_all, ap_k, p_k = [], [], []
        recalls: dict[int, list[np.ndarray]] = {r: [] for r in recall_depths}
        start = 0
        for order in blocks:
            rows = slice(start, start + order.shape[0])
            start += order.shape[0]
            if self.query_labels is not None and self.db_labels is not None:
                rel = self.db_labels[order] == self.query_labels[rows, None]
                ap_all.append(average_precision(rel, total_relevant=self.relevant_total[rows]))
                ap_k.append(average_precision(rel, k=self.map_k))
                p_k.append(precision_at(rel, self.p_k))
            for r in recall_depths:
                recalls[r].append(knn_recall(self.true_top[rows], order, r))
        out: dict[str, float] = {}
        if ap_all:
            out["mAP"] = float(np.concatenate(ap_all).mean())
            out[f"mAP@{self.map_k}"] = float(np.concatenate(ap_k).mean())
            out[f"P@{self.p_k}"] = float(np.concatenate(p_k).mean())
        for r, vals in recalls.items():
            out[f"recall10@{r}"] = float(np.concatenate(vals).mean())
        return out

    def score_float(self, recall_depths: tuple[int, ...]) -> dict[str, float]:
        """The float cosine reference row."""
        return self.score(float_rankings(self.queries, self.database, self.exclude), recall_depths)

    def score_codes(
        self,
        query_codes: np.ndarray,
        db_codes: np.ndarray,
        bits: int,
        recall_depths: tuple[int, ...],
        decode: Callable[[np.ndarray], np.ndarray] | None = None,
        rerank_depth: int = 0,
    ) -> dict[str, float]:
        """Hamming ranking scores, or re-ranked ones when ``decode`` and ``rerank_depth`` are given."""
        blocks = hamming_rankings(query_codes, db_codes, bits, self.exclude)
        if decode is None or rerank_depth <= 0:
            return self.score(blocks, recall_depths)
        decoded = decode(db_codes)
        start = 0

        def reranked() -> Iterator[np.ndarray]:
            nonlocal start
            for order in blocks:
                q = self.queries[start : start + order.shape[0]]
                start += order.shape[0]
                yield rerank(q, order, lambda idx: decoded[idx], rerank_depth)

        return self.score(reranked(), recall_depths)


# -- dataset protocol -------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Query and database row indices of a feature set."""

    queries: np.ndarray
    database: np.ndarray


def split_per_class(labels: np.ndarray, per_class: int, seed: int) -> Split:
    """``per_class`` seeded queries from every class (fewer if a class is small); the rest is the database."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(per_class, max(len(members) - 1, 0))
        picks.append(np.sort(rng.choice(members, size=take, replace=False)))
    queries = np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
    database = np.setdiff1d(np.arange(labels.shape[0]), queries)
    return Split(queries=queries.astype(np.int64), database=database.astype(np.int64))


def split_all_queries(n: int) -> Split:
    """Every item is a query against all the others (near-duplicate sets such as UKBench)."""
    idx = np.arange(n, dtype=np.int64)
    return Split(queries=idx, database=idx)


def training_sample(database: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Seeded sample of ``n`` database rows to fit the hashers on (all of them when ``n`` is None)."""
    if n is None or n >= database.shape[0]:
        return database
    rng = np.random.default_rng(seed + 1)
    return np.sort(rng.choice(database, size=n, replace=False))


# -- feature cache ----------------------------------------------------------------------------
@dataclass
class FeatureSet:
    """Features of a labelled image folder, as cached in an ``.npz``."""

    features: np.ndarray  # float32 (n, d), L2-normalised
    labels: np.ndarray  # int32 (n,)
    classes: list[str]
    paths: list[str]  # relative to the dataset folder
    meta: dict

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(
                fh,
                features=self.features.astype(np.float32),
                labels=self.labels.astype(np.int32),
                classes=np.array(self.classes),
                paths=np.array(self.paths),
                meta=json.dumps(self.meta),
            )

    @classmethod
    def load(cls, path: Path) -> FeatureSet:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                features=np.ascontiguousarray(z["features"], dtype=np.float32),
                labels=z["labels"].astype(np.int32),
                classes=[str(c) for c in z["classes"]],
                paths=[str(p) for p in z["paths"]],
                meta=json.loads(str(z["meta"])),
            )


def labelled_images(
    root: Path, suffixes: frozenset[str]
) -> tuple[list[Path], np.ndarray, list[str]]:
    """Images under ``root`` sorted by path; class = name of the folder that directly holds each."""
    paths = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in suffixes and not _hidden(p, root)
    )
    names = [p.parent.name for p in paths]
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return paths, np.array([index[c] for c in names], dtype=np.int32), classes


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def extract_features(
    root: Path, backbone_name: str, weights: str,
    progress: Callable[..., None] | None = None,
) -> FeatureSet:
    """Embed every image under ``root`` once with the app's own decoding and backbone (what
    ``imagehash-app eval`` and the benchmarks cache); images that fail to decode are left out
    (and counted). ``progress(text, end=...)`` is told how far it got."""
    import time

    from imagehash_app.core.backbone import load_backbone
    from imagehash_app.core.embedding import iter_embeddings
    from imagehash_app.core.images import IMAGE_SUFFIXES

    say = progress or (lambda *_a, **_k: None)

    paths, labels, classes = labelled_images(root, IMAGE_SUFFIXES)
    backbone = load_backbone(backbone_name, weights=weights)
    index = {p: i for i, p in enumerate(paths)}
    feats, kept, failed = [], [], 0
    started = time.perf_counter()
    for batch in iter_embeddings(paths, backbone):
        feats.append(batch.features)
        kept.extend(index[Path(p)] for p in batch.paths)
        failed += len(batch.failures)
        say(
            f"embedded {len(kept)}/{len(paths)} ({len(kept) / (time.perf_counter() - started):.0f}/s)",
            end="\r",
        )
    say(f"embedded {len(kept)} images, {failed} could not be decoded")
    rows = np.array(kept, dtype=np.int64)
    return FeatureSet(
        features=np.concatenate(feats).astype(np.float32)
        if feats
        else np.zeros((0, backbone.feature_dim), np.float32),
        labels=labels[rows],
        classes=classes,
        paths=[str(paths[i].relative_to(root)) for i in rows],
        meta={
            "backbone": backbone.name,
            "weights_id": backbone.weights_id,
            "preprocess": "backbone",
        },
    )
