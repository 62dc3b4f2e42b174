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
- **First stage.** Hamming ranking of the sign codes; for product-quantisation hashers
  (``first_stage = "adc"``, DeepQuan) the asymmetric distance of the query's real representation
  to the database codewords, ascending, ties by index.
- **Refinements** (seed 003's second stage; each re-orders the first stage's top ``R`` and leaves
  the rest): ``none``; ``decoder`` (cosine with the decoded codes, as above); ``asym`` (the
  query's real-valued output against the database codes: ``project(q) . sign`` for sign codes,
  minus the ADC distance for PQ codes, where it equals the first stage); ``qe`` (alpha-query
  expansion on the reconstructed features, a one-hop graph refinement: the query plus its top
  ``QE_K`` decoded candidates after the decoder re-rank, weighted by ``max(0, cos)^QE_ALPHA``, then
  cosine with the decoded candidates); ``float`` (cosine with the exact float features: the
  ceiling, table only, since the app does not store them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagehash_app.core.codes import unpack_signs

BLOCK = 128  # queries per block: 128 x 59 000 float32 distances is 30 MB
REFINEMENTS = ("none", "decoder", "asym", "qe", "float")
QE_K, QE_ALPHA = 10, 3.0  # alpha-QE of Radenovic et al. (2018): top-10, alpha = 3


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


def adc_rankings(
    distances: Callable[[np.ndarray], np.ndarray], n_queries: int, exclude: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Blocks of full rankings by ascending asymmetric distance, ties by index.

    ``distances(rows)`` gives the (len(rows), n) distances of those query rows to the database.
    """
    for start in range(0, n_queries, BLOCK):
        rows = np.arange(start, min(start + BLOCK, n_queries))
        key = distances(rows)
        yield _order(key, None if exclude is None else exclude[rows])


def cosine_scores(queries: np.ndarray, feats: Callable[[np.ndarray], np.ndarray]):
    """Score function of :func:`rerank_by`: cosine of each query with ``feats(indices)``."""

    def score(rows: np.ndarray, head: np.ndarray) -> np.ndarray:
        sims = np.empty(head.shape, dtype=np.float32)
        for i in range(0, head.shape[0], 16):  # bounded memory: 16 x depth x d floats at a time
            part = head[i : i + 16]
            f = feats(part.reshape(-1)).reshape(part.shape[0], head.shape[1], -1)
            sims[i : i + 16] = np.einsum("qd,qkd->qk", queries[rows[i : i + 16]], f)
        return sims

    return score


def rerank_by(
    rows: np.ndarray,
    order: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    depth: int,
) -> np.ndarray:
    """Re-order the first ``depth`` columns of ``order`` by descending ``score(rows, head)``.

    ``rows`` are the query indices of ``order``'s rows; equal scores keep the first-stage order.
    """
    depth = min(depth, order.shape[1])
    head = order[:, :depth]
    sims = score(rows, head)
    new = np.take_along_axis(head, np.argsort(-sims, axis=1, kind="stable"), axis=1)
    return np.concatenate([new, order[:, depth:]], axis=1)


def rerank(
    queries: np.ndarray, order: np.ndarray, decoded: Callable[[np.ndarray], np.ndarray], depth: int
) -> np.ndarray:
    """Re-order the first ``depth`` columns of ``order`` (q, n) by cosine with decoded features.

    ``decoded(indices)`` returns the decoded (L2-normalised) features of database rows; equal
    scores keep their Hamming order.
    """
    rows = np.arange(order.shape[0])
    return rerank_by(rows, order, cosine_scores(queries, decoded), depth)


def expand_queries(
    queries: np.ndarray, neighbours: np.ndarray, k: int = QE_K, alpha: float = QE_ALPHA
) -> np.ndarray:
    """alpha-QE: ``q + sum_i max(0, q . n_i)^alpha n_i`` over the first ``k`` of ``neighbours``
    (b, >=k, d), L2-normalised."""
    nb = neighbours[:, :k]
    w = np.clip(np.einsum("qd,qkd->qk", queries, nb), 0.0, None) ** alpha
    out = queries + np.einsum("qk,qkd->qd", w, nb)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


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
        acc = _Scores(self, recall_depths)
        start = 0
        for order in blocks:
            acc.add(slice(start, start + order.shape[0]), order)
            start += order.shape[0]
        return acc.result()

    def score_refinements(
        self,
        first_stage: Iterator[np.ndarray],
        refiners: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray] | None],
        recall_depths: tuple[int, ...],
    ) -> dict[str, dict[str, float]]:
        """Scores of several second stages over one pass of the first-stage ranking.

        ``refiners[name](rows, order)`` returns the refined full ranking of query ``rows``
        (None: the first stage itself).
        """
        accs = {name: _Scores(self, recall_depths) for name in refiners}
        start = 0
        for order in first_stage:
            rows = np.arange(start, start + order.shape[0])
            start += order.shape[0]
            for name, refine in refiners.items():
                accs[name].add(rows, order if refine is None else refine(rows, order))
        return {name: acc.result() for name, acc in accs.items()}

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


class _Scores:
    """Per-query metrics accumulated block by block (see :meth:`Benchmark.score`)."""

    def __init__(self, bench: Benchmark, recall_depths: tuple[int, ...]) -> None:
        self.bench = bench
        self.ap_all: list[np.ndarray] = []
        self.ap_k: list[np.ndarray] = []
        self.p_k: list[np.ndarray] = []
        self.recalls: dict[int, list[np.ndarray]] = {r: [] for r in recall_depths}

    def add(self, rows: slice | np.ndarray, order: np.ndarray) -> None:
        b = self.bench
        if b.query_labels is not None and b.db_labels is not None:
            rel = b.db_labels[order] == b.query_labels[rows, None]
            self.ap_all.append(average_precision(rel, total_relevant=b.relevant_total[rows]))
            self.ap_k.append(average_precision(rel, k=b.map_k))
            self.p_k.append(precision_at(rel, b.p_k))
        for r in self.recalls:
            self.recalls[r].append(knn_recall(b.true_top[rows], order, r))

    def result(self) -> dict[str, float]:
        b = self.bench
        out: dict[str, float] = {}
        if self.ap_all:
            out["mAP"] = float(np.concatenate(self.ap_all).mean())
            out[f"mAP@{b.map_k}"] = float(np.concatenate(self.ap_k).mean())
            out[f"P@{b.p_k}"] = float(np.concatenate(self.p_k).mean())
        for r, vals in self.recalls.items():
            out[f"recall10@{r}"] = float(np.concatenate(vals).mean())
        return out


# -- the two-stage comparison ----------------------------------------------------------------
def first_stage(hasher, queries: np.ndarray, q_codes, db_codes, exclude) -> Iterator[np.ndarray]:  # type: ignore[no-untyped-def]
    """The hasher's own first-stage ranking: ADC for PQ codes, Hamming otherwise."""
    if getattr(hasher, "first_stage", "hamming") == "adc":
        return adc_rankings(
            lambda rows: hasher.adc_distances(queries[rows], db_codes), queries.shape[0], exclude
        )
    return hamming_rankings(q_codes, db_codes, hasher.bits, exclude)


def refiners(
    hasher,  # type: ignore[no-untyped-def]
    bench: Benchmark,
    db_codes: np.ndarray,
    depth: int,
    names: tuple[str, ...] = REFINEMENTS,
) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray] | None]:
    """The second stages ``names`` (of :data:`REFINEMENTS`) of one fitted hasher, for
    :meth:`Benchmark.score_refinements`; each re-orders the top ``depth`` candidates."""
    Q = bench.queries
    out: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray] | None] = {}
    decoded = hasher.decode(db_codes) if {"decoder", "qe"} & set(names) else None
    dec_score = cosine_scores(Q, lambda idx: decoded[idx]) if decoded is not None else None
    for name in names:
        if name == "none":
            out[name] = None
        elif name == "decoder":
            out[name] = _reranker(dec_score, depth)
        elif name == "asym":
            out[name] = _reranker(_asym_score(hasher, Q, db_codes), depth)
        elif name == "qe":
            out[name] = lambda rows, order: _qe(Q, rows, order, decoded, dec_score, depth)
        elif name == "float":
            out[name] = _reranker(cosine_scores(Q, lambda idx: bench.database[idx]), depth)
        else:
            raise ValueError(f"unknown refinement {name!r}; choose from {', '.join(REFINEMENTS)}")
    return out


def _reranker(score, depth: int):  # type: ignore[no-untyped-def]
    return lambda rows, order: rerank_by(rows, order, score, depth)


def _asym_score(hasher, Q: np.ndarray, db_codes: np.ndarray):  # type: ignore[no-untyped-def]
    """Query's real-valued output against the candidates' codes (higher is closer)."""
    if getattr(hasher, "first_stage", "hamming") == "adc":
        zq = hasher.project(Q)
        recon = hasher.reconstruct(db_codes)

        def adc(rows: np.ndarray, head: np.ndarray) -> np.ndarray:
            diff = recon[head] - zq[rows][:, None, :]
            return -np.einsum("qkd,qkd->qk", diff, diff)

        return adc
    proj = hasher.project(Q)
    signs = unpack_signs(db_codes, hasher.bits)

    def asym(rows: np.ndarray, head: np.ndarray) -> np.ndarray:
        return np.einsum("qb,qkb->qk", proj[rows], signs[head])

    return asym


def _qe(Q, rows, order, decoded, dec_score, depth):  # type: ignore[no-untyped-def]
    """alpha-QE over the decoder re-rank's top candidates, then cosine on decoded features."""
    first = rerank_by(rows, order, dec_score, depth)
    k = min(QE_K, first.shape[1], depth)
    expanded = expand_queries(Q[rows], decoded[first[:, :k]], k)
    score = cosine_scores(expanded, lambda idx: decoded[idx])
    local = np.arange(len(rows))
    return rerank_by(local, first, score, depth)


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
