"""UGACH: Unsupervised Generative Adversarial Cross-modal Hashing (Zhang, Peng, Yuan, AAAI 2018).

Two modalities here: a photo's backbone feature (the image modality) and the bag of words the
photo carries (the text modality); only some photos carry words. The paper's terms, as built:

- **Two-pathway hashing network** (both models have one): per modality a *common representation
  layer* φ_c(x) = tanh(W_c x + b_c) and a *hashing layer* h(x) = sigmoid(W_h φ_c(x) + b_h); the
  binary code is b(x) = sgn(h(x) − 0.5). Training works on the continuous h(x).
- **Correlation graph**: per modality an undirected kNN graph, w(p, q) = 1 when x_p ∈ NN_k(x_q).
  The image graph spans every photo (with and without words); the text graph spans the word
  bags; the photo ↔ bag pairs join them. The data of the other modality "within the same
  manifold" as a query (its pair, its pair's neighbours, its neighbours' pairs) are the *true
  (relevant) pairs* x^M the discriminator is shown (`correlation_graph`, `relevant_*`).
- **Generative model** G_θ: given a query q of one modality it selects data x^U of the other
  modality from a candidate pool with p_θ(x^U | q) = exp(−‖h(q) − h(x^U)‖²) / Σ exp(−‖h(q) − h(x)‖²)
  (`generator_probabilities`, `sample_generated`): the informative pairs x^G that challenge the
  discriminator.
- **Discriminative model** D_φ: scores a generated pair against a true pair of the same query with
  the triplet relevance f_φ(x^G, q) = max(0, m + ‖h(q) − h(x^M)‖² − ‖h(q) − h(x^G)‖²) and
  D(x^G | q) = sigmoid(f_φ); it is trained to push the true pair closer than the generated one
  (`discriminator_loss`, margin m = bits / 8 as in the authors' code) with weight decay.
- **Adversarial training**: D is pre-trained on random negatives, then D and G alternate; G is
  trained by policy gradient (REINFORCE, the selection is discrete) with reward
  log(1 + exp(f_φ(x^G, q))) — large when its pick fooled D (`generator_loss`).
- **Codes** for photos and word bags come from D's pathways, in one Hamming space.

The ablation without the adversarial part (`adversarial=False`) keeps the graph and the
discriminator's triplet loss but draws x^G uniformly from the pool instead of from G.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from imagehash_app.core.codes import pack_signs

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "ugach.json"


@dataclass
class UGACHParams:
    bits: int = 64
    hidden: int = 512
    k: int = 10  # neighbours per node of the correlation graph
    pretrain_epochs: int = 10  # D on random negatives, before the adversarial rounds
    epochs: int = 10  # adversarial rounds (one D epoch then one G epoch each)
    candidates: int = 256  # the pool G selects from, drawn afresh for each batch
    select: int = 2  # x^G picked per query (SELECTNUM of the authors' code)
    batch: int = 64
    queries_per_epoch: int = 1024  # per direction: a random subset each epoch bounds its time
    lr_d: float = 1e-3
    lr_g: float = 1e-3
    weight_decay: float = 1e-5
    adversarial: bool = True
    seed: int = 0


class TwoPathway(nn.Module):
    """φ_c then h for each modality: image path and text path into the same `bits` outputs."""

    def __init__(self, image_dim: int, text_dim: int, hidden: int, bits: int) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.Linear(image_dim, hidden), nn.Tanh(), nn.Linear(hidden, bits))
        self.text = nn.Sequential(nn.Linear(text_dim, hidden), nn.Tanh(), nn.Linear(hidden, bits))

    def h(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """The hashing layer's continuous output in (0, 1)."""
        return torch.sigmoid((self.image if modality == "image" else self.text)(x))


# --- the correlation graph -----------------------------------------------------------------------------
def knn(X: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Indices (n, k) of each row's k nearest other rows by cosine (NN_k of the graph)."""
    X = _unit(X)
    n = len(X)
    k = max(0, min(k, n - 1))
    out = np.zeros((n, k), dtype=np.int64)
    if k == 0:
        return out
    for start in range(0, n, chunk):
        sims = X[start : start + chunk] @ X.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(top, order, 1)
    return out


@dataclass
class CorrelationGraph:
    """Relevant data of the other modality for each query, as lists of indices."""

    image_to_text: list[np.ndarray]  # per photo: relevant bags (empty: the photo is no i2t query)
    text_to_image: list[np.ndarray]  # per bag: relevant photos


def correlation_graph(
    images: np.ndarray, texts: np.ndarray, pairs: np.ndarray, k: int
) -> CorrelationGraph:
    """The kNN graph of each modality joined through the photo ↔ bag pairs.

    `pairs[j]` is the photo that carries bag j. A bag's relevant photos: its own photo, that
    photo's image neighbours and the photos of its text neighbours. A photo's relevant bags: its
    own, the bags of its image neighbours, and the text neighbours of its own bag.
    """
    img_nn = knn(images, k)
    txt_nn = knn(texts, k)
    bag_of = {int(p): j for j, p in enumerate(pairs)}
    text_to_image = [
        np.unique(np.concatenate(([pairs[j]], img_nn[pairs[j]], pairs[txt_nn[j]]))).astype(np.int64)
        for j in range(len(pairs))
    ]
    image_to_text: list[np.ndarray] = []
    for i in range(len(images)):
        rel = [bag_of[int(n)] for n in img_nn[i] if int(n) in bag_of]
        own = bag_of.get(i)
        if own is not None:
            rel += [own, *txt_nn[own].tolist()]
        image_to_text.append(np.unique(np.asarray(rel, dtype=np.int64)))
    return CorrelationGraph(image_to_text, text_to_image)


# --- the two models' terms -------------------------------------------------------------------------------
def generator_probabilities(h_query: torch.Tensor, h_pool: torch.Tensor) -> torch.Tensor:
    """p_θ(x^U | q) over the pool: softmax of −‖h(q) − h(x^U)‖², (B, C)."""
    return torch.softmax(-torch.cdist(h_query, h_pool).pow(2), dim=1)


def sample_generated(probs: torch.Tensor, select: int, generator: torch.Generator) -> torch.Tensor:
    """Pool positions (B, select) drawn from p_θ (with replacement, as the authors' sampler)."""
    return torch.multinomial(probs, select, replacement=True, generator=generator)


def triplet_relevance(
    h_q: torch.Tensor, h_true: torch.Tensor, h_gen: torch.Tensor, margin: float
) -> torch.Tensor:
    """f_φ(x^G, q) = max(0, m + ‖h(q) − h(x^M)‖² − ‖h(q) − h(x^G)‖²)."""
    d_true = (h_q - h_true).pow(2).sum(-1)
    d_gen = (h_q - h_gen).pow(2).sum(-1)
    return torch.clamp(margin + d_true - d_gen, min=0.0)


def discriminator_loss(
    h_q: torch.Tensor, h_true: torch.Tensor, h_gen: torch.Tensor, margin: float
) -> torch.Tensor:
    """D's objective: the mean triplet relevance (zero once every true pair beats its generated
    pair by the margin)."""
    return triplet_relevance(h_q, h_true, h_gen, margin).mean()


def generator_loss(log_probs: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """REINFORCE: −E[log p_θ(x^G | q) · reward], the reward log(1 + exp(f_φ)) held constant."""
    return -(log_probs * reward.detach()).mean()


class UGACH:
    """The cross-modal hasher: `fit(images, texts, pairs)`, then `encode_images`/`encode_texts`."""

    method = "ugach"

    def __init__(self, image_dim: int, text_dim: int, params: UGACHParams | None = None) -> None:
        self.image_dim, self.text_dim = int(image_dim), int(text_dim)
        self.params = params or UGACHParams()
        p = self.params
        torch.manual_seed(p.seed)
        self.discriminator = TwoPathway(self.image_dim, self.text_dim, p.hidden, p.bits)
        self.generator = TwoPathway(self.image_dim, self.text_dim, p.hidden, p.bits)
        self.history: list[dict[str, float]] = []
        self.image_mean = np.zeros(self.image_dim, dtype=np.float32)

    @property
    def bits(self) -> int:
        return self.params.bits

    @property
    def margin(self) -> float:
        return self.params.bits / 8.0

    # --- training ---------------------------------------------------------------------------------------
    def fit(
        self, images: np.ndarray, texts: np.ndarray, pairs: np.ndarray,
        should_stop: Any = None, progress: Any = None,
    ) -> UGACH:
        """Learn from every photo's feature `images` (n, d), the word bags `texts` (m, v) and
        `pairs` (m,): the photo of each bag."""
        p = self.params
        rng = np.random.default_rng(p.seed)
        gen = torch.Generator().manual_seed(p.seed)
        self.image_mean = _unit(images).mean(0).astype(np.float32)
        X = torch.from_numpy(self._image_input(images))
        T = torch.from_numpy(_unit(texts).astype(np.float32))
        pairs = np.asarray(pairs, dtype=np.int64)
        graph = correlation_graph(X.numpy(), T.numpy(), pairs, p.k)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=p.lr_d, weight_decay=p.weight_decay)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=p.lr_g, weight_decay=p.weight_decay)
        i2t = np.array([i for i, r in enumerate(graph.image_to_text) if len(r)], dtype=np.int64)
        t2i = np.arange(len(pairs), dtype=np.int64)
        total = p.pretrain_epochs + p.epochs
        for epoch in range(total):
            if should_stop is not None and should_stop():
                break
            adversarial = p.adversarial and epoch >= p.pretrain_epochs
            d_loss = self._epoch_d(X, T, graph, i2t, t2i, opt_d, rng, gen, adversarial)
            g_loss = self._epoch_g(X, T, graph, i2t, t2i, opt_g, rng, gen) if adversarial else 0.0
            self.history.append({"epoch": epoch + 1, "d_loss": d_loss, "g_loss": g_loss})
            if progress is not None:
                progress(epoch + 1, total, d_loss)
        return self

    def _directions(self, X, T, graph, i2t, t2i):
        return (
            ("image", "text", X, T, i2t, graph.image_to_text),
            ("text", "image", T, X, t2i, graph.text_to_image),
        )

    def _epoch_d(self, X, T, graph, i2t, t2i, opt, rng, gen, adversarial) -> float:
        losses = []
        for qm, dm, Q, D, queries, relevant in self._directions(X, T, graph, i2t, t2i):
            for batch in _batches(_epoch_queries(rng, queries, self.params), self.params.batch):
                pool = _pool(rng, len(D), self.params.candidates)
                known = _known_positives(relevant, batch, pool)
                gen_idx = self._pick(Q[batch], D[pool], qm, dm, rng, gen, adversarial, known)
                true_idx = _sample_relevant(relevant, batch, self.params.select, rng)
                h_q = self.discriminator.h(Q[batch], qm)[:, None, :]
                h_true = self.discriminator.h(D[true_idx.reshape(-1)], dm).view(*true_idx.shape, -1)
                h_gen = self.discriminator.h(D[pool[gen_idx.reshape(-1)]], dm).view(*gen_idx.shape, -1)
                loss = discriminator_loss(h_q, h_true, h_gen, self.margin)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else 0.0

    def _pick(self, q, pool_data, qm, dm, rng, gen, adversarial, known) -> np.ndarray:
        """Pool positions (B, select) of x^G: sampled from G, or uniformly for the ablation;
        never a known true pair of the query (the authors' sampler rejects those too)."""
        if adversarial:
            with torch.no_grad():
                probs = generator_probabilities(self.generator.h(q, qm), self.generator.h(pool_data, dm))
        else:
            probs = torch.ones(len(q), len(pool_data))
        probs = probs.masked_fill(torch.from_numpy(known), 0.0)
        empty = probs.sum(1) <= 0
        probs[empty] = 1.0  # every pool item relevant: nothing better to show
        return sample_generated(probs, self.params.select, gen).numpy()

    def _epoch_g(self, X, T, graph, i2t, t2i, opt, rng, gen) -> float:
        losses = []
        for qm, dm, Q, D, queries, relevant in self._directions(X, T, graph, i2t, t2i):
            for batch in _batches(_epoch_queries(rng, queries, self.params), self.params.batch):
                pool = _pool(rng, len(D), self.params.candidates)
                probs = generator_probabilities(self.generator.h(Q[batch], qm), self.generator.h(D[pool], dm))
                picked = sample_generated(probs.detach(), self.params.select, gen)
                log_p = torch.log(torch.gather(probs, 1, picked) + 1e-12)
                true_idx = _sample_relevant(relevant, batch, self.params.select, rng)
                with torch.no_grad():
                    h_q = self.discriminator.h(Q[batch], qm)[:, None, :]
                    h_true = self.discriminator.h(D[true_idx.reshape(-1)], dm).view(*true_idx.shape, -1)
                    h_gen = self.discriminator.h(D[pool[picked.numpy().reshape(-1)]], dm).view(*picked.shape, -1)
                    reward = torch.log1p(torch.exp(triplet_relevance(h_q, h_true, h_gen, self.margin)))
                loss = generator_loss(log_p, reward)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else 0.0

    # --- codes --------------------------------------------------------------------------------------------
    def _h(self, X: np.ndarray, modality: str) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(X), 4096):
                chunk = torch.from_numpy(_unit(X[start : start + 4096]).astype(np.float32))
                out.append(self.discriminator.h(chunk, modality).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.bits), np.float32)

    def _image_input(self, X: np.ndarray) -> np.ndarray:
        """Photo features as the image pathway takes them: unit length, less the library's mean
        feature (pooled ReLU features share a large common part), unit length again."""
        return _unit(_unit(X) - self.image_mean)

    def encode_images(self, X: np.ndarray) -> np.ndarray:
        """Packed codes b = sgn(h − 0.5) of photo features (n, d)."""
        return pack_signs(self._h(self._image_input(np.atleast_2d(X)), "image") - 0.5)

    def encode_texts(self, T: np.ndarray) -> np.ndarray:
        """Packed codes of word bags (m, v), in the photos' Hamming space."""
        return pack_signs(self._h(np.atleast_2d(T), "text") - 0.5)

    # --- saving ---------------------------------------------------------------------------------------------
    def save(self, directory: Path, extra: dict[str, Any] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().numpy().copy() for k, v in self.discriminator.state_dict().items()}
        tensors["image_mean"] = self.image_mean
        save_file(tensors, str(directory / WEIGHTS_FILE))
        doc = {
            "method": self.method, "image_dim": self.image_dim, "text_dim": self.text_dim,
            "params": asdict(self.params), "history": self.history, **(extra or {}),
        }
        (directory / META_FILE).write_text(json.dumps(doc, indent=1))

    @classmethod
    def load(cls, directory: Path) -> tuple[UGACH, dict[str, Any]]:
        doc = json.loads((directory / META_FILE).read_text())
        model = cls(doc["image_dim"], doc["text_dim"], UGACHParams(**doc["params"]))
        tensors = load_file(str(directory / WEIGHTS_FILE))
        model.image_mean = tensors.pop("image_mean").astype(np.float32)
        model.discriminator.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        model.history = list(doc.get("history", []))
        return model, doc


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _batches(order: np.ndarray, size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


def _known_positives(relevant: list[np.ndarray], batch: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(B, C) booleans: pool item c is a known true pair of query b."""
    return np.stack([np.isin(pool, relevant[int(q)]) for q in batch])


def _epoch_queries(rng: np.random.Generator, queries: np.ndarray, p: UGACHParams) -> np.ndarray:
    return rng.permutation(queries)[: p.queries_per_epoch]


def _pool(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.choice(n, size=min(size, n), replace=False)


def _sample_relevant(
    relevant: list[np.ndarray], batch: np.ndarray, select: int, rng: np.random.Generator
) -> np.ndarray:
    """(B, select) true pairs x^M drawn uniformly from each query's relevant set."""
    return np.stack([rng.choice(relevant[int(q)], size=select) for q in batch])
