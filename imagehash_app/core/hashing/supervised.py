"""The supervised hashers of seed 003 — DSH, DPSH and DSDH — as small heads on frozen features.

All three share one front end and one network, so that only their objectives differ (seed 003
asks for a comparison on one footing): a fixed PCA of the features (``input_dim`` coordinates,
scaled to unit RMS), then an MLP with a linear path, whose real output ``u`` (n, bits) is the
relaxed code; the code is ``sign(u)``. Labels are class ids: two items with the same label are a
positive pair, any other pair is a negative one. Every method keeps the least-squares decoder
from ±1 codes back to features (fitted on its own training codes), which the re-rank uses.

The objectives, term by term (``b`` the ±1 code, ``s_ij`` = 1 for a positive pair):

- **DSH** (Liu, Wang, Shan & Chen, CVPR 2016): pairs within the mini-batch,
  ``½(1-y)‖u_i-u_j‖² + ½ y max(m - ‖u_i-u_j‖², 0) + α(‖|u_i|-1‖₁ + ‖|u_j|-1‖₁)`` with
  y = 1 for a dissimilar pair, m = 2·bits and α = 0.01 (the paper's values).
- **DPSH** (Li, Wang & Kang, IJCAI 2016): ``Θ_ij = ½ u_iᵀu_j``, the negative pairwise
  log-likelihood ``Σ log(1 + e^Θ_ij) - s_ij Θ_ij`` plus the quantization loss ``η Σ ‖b_i - u_i‖²``
  with ``b_i = sign(u_i)``; η = 10 (the paper's CIFAR-10 value). Like the paper's implementation,
  a mini-batch is scored against the stored outputs U of the whole training set.
- **DSDH** (Li, Sun, He & Tan, NIPS 2017): the same pairwise likelihood, plus the classification
  term ``μ Σ ‖y_i - Wᵀb_i‖² + ν‖W‖²`` on the *discrete* codes and ``η Σ ‖b_i - u_i‖²``.
  Alternating: W in closed form, B by discrete cyclic coordinate descent (one bit row at a
  time, exact for that row: :func:`dcc_update`), then the network by gradient with B fixed.
  μ = 1, ν = 0.1, η = 55 (the values of the authors' CIFAR-10 setting as published with the
  reference PyTorch code).

**The pair form** (``fit(X, pairs=...)``): the papers define S over *observed* pairs, which is
what a library has — a sparse set of (i, j, ±1) from the person's marks and shared folders. Each
objective is then summed over the observed pairs only (mini-batches of pairs; every endpoint is
encoded in the step). The quantization weight is our choice there: kept at the papers'
ratio to |S| (``η·bits·n/|S|`` on the per-element mean) or at the dense form's (``η·bits/n``)
it outweighs a few hundred pairs and the codes barely separate them (measured: the ranking AUC
of held-out positive pairs against negatives drops from 0.87 to 0.76, LSH's 0.71); the pair form
uses ``η/bits`` on the per-element mean (the quantization error of one code, per bit). DSDH's classification term
needs classes: they are the connected components of the positive pairs (:func:`pair_classes`),
a sample in no positive pair being its own class.

**Added to the unsupervised objective** (pair form only, weight ``w_unsup``): a library's pairs
are mostly same-folder positives with a few marked negatives (measured: 570 positives per
negative), and a pairwise objective alone then pulls everything onto a few codes (DSH: one code,
class mAP@100 0.16; docs/results-finetune.md). Each step therefore also takes URPH's neighbour
ranking term on a batch of training items and two of their exact nearest neighbours each
(:func:`~.losses.listwise_kl` of the codes' similarities against the features', URPH's
temperature and code scale), so that the codes keep the features' neighbourhoods and the pairs
move them only where the person said so. ``w_unsup`` = 0 gives the papers' objective alone.

Where we had to choose: the sums of the papers are divided by the number of pairs (n²), so the
quantization weight of DPSH/DSDH becomes ``η·bits/n`` on the per-element mean (the same
minimiser as the paper's sums); the network (PCA → MLP), its width, Adam at 1e-3, 30 epochs and
batches of 256 are ours (the papers fine-tune a CNN; here the backbone is frozen).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imagehash_app.core.hashing.base import (
    Hasher,
    ProgressFn,
    StopFn,
    check_stop,
    fit_linear_decoder,
    report,
)
from imagehash_app.core.hashing.baselines import pca_basis
from imagehash_app.core.hashing.head import adamw_warmup_cosine, exact_knn, rank_targets
from imagehash_app.core.hashing.losses import listwise_kl
from imagehash_app.core.hashing.urph import Encoder, _seeded

COMMON: dict[str, Any] = {
    "input_dim": 256,
    "hidden": 256,
    "batch_size": 256,
    "epochs": 30,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    # the pair form's unsupervised term (URPH's neighbour ranking): weight, neighbours, URPH's scales
    "w_unsup": 1.0,
    "unsup_neighbours": 10,
    "tau_x": 0.02,
    "code_scale": 12.0,
}


# -- the objectives (vectorised; tests hold loop references) -----------------------------------
def dsh_loss(u: torch.Tensor, labels: torch.Tensor, margin: float, alpha: float) -> torch.Tensor:
    """DSH: mean over the batch's pairs i < j of the margin loss and the ±1 regulariser."""
    n = u.shape[0]
    if n < 2:
        return alpha * (u.abs() - 1).abs().sum(dim=1).mean() * 2
    d2 = torch.cdist(u, u).pow(2)
    dissimilar = (labels[:, None] != labels[None, :]).to(u.dtype)
    pair = 0.5 * (1 - dissimilar) * d2 + 0.5 * dissimilar * F.relu(margin - d2)
    reg = (u.abs() - 1).abs().sum(dim=1)
    iu = torch.triu_indices(n, n, offset=1, device=u.device)
    per_pair = pair[iu[0], iu[1]] + alpha * (reg[iu[0]] + reg[iu[1]])
    return per_pair.mean()


def pairwise_nll(u: torch.Tensor, U: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """DPSH/DSDH likelihood: mean of ``log(1 + e^Θ) - s Θ`` with ``Θ = ½ u_i·U_j``."""
    theta = 0.5 * (u @ U.T)
    return (F.softplus(theta) - similar * theta).mean()


def dpsh_loss(
    u: torch.Tensor, U: torch.Tensor, similar: torch.Tensor, eta_mean: float
) -> torch.Tensor:
    """DPSH: pairwise likelihood plus ``η‖sign(u) - u‖²`` (per-element mean, weight ``eta_mean``)."""
    return pairwise_nll(u, U, similar) + eta_mean * (torch.sign(u) - u).pow(2).mean()


def dsdh_b_objective(
    B: np.ndarray, W: np.ndarray, Y: np.ndarray, U: np.ndarray, mu: float, eta: float
) -> float:
    """The part of DSDH's objective that depends on B (k, n): ``μ‖Y - WᵀB‖² + η‖B - U‖²``."""
    return float(mu * np.sum((Y - W.T @ B) ** 2) + eta * np.sum((B - U) ** 2))


def dsdh_w_update(B: np.ndarray, Y: np.ndarray, mu: float, nu: float) -> np.ndarray:
    """Closed-form W (k, c) minimising ``μ‖Y - WᵀB‖² + ν‖W‖²``."""
    k = B.shape[0]
    return np.linalg.solve(B @ B.T + (nu / mu) * np.eye(k), B @ Y.T)


def dcc_update(
    B: np.ndarray, W: np.ndarray, Y: np.ndarray, U: np.ndarray, mu: float, eta: float
) -> np.ndarray:
    """One sweep of discrete cyclic coordinate descent over the bit rows of B (k, n).

    With ``Q = W Y + (η/μ) U`` the objective, as a function of bit row ``z`` with the other rows
    B' fixed, is ``2 zᵀ(B'ᵀW'w - q) + const``; its exact minimiser is ``sign(q - B'ᵀW'w)``, so
    every row update can only lower the objective (ties keep the current bit).
    """
    B = B.astype(np.float64).copy()
    Q = W @ Y + (eta / mu) * U
    G = W @ W.T  # B'ᵀW'w_r = Bᵀ G[r] - G[r, r] b_r: no copy of the other rows per bit
    for r in range(B.shape[0]):
        rhs = Q[r] - (G[r] @ B - G[r, r] * B[r])
        B[r] = np.where(rhs > 0, 1.0, np.where(rhs < 0, -1.0, B[r]))
    return B


def pair_classes(n: int, pairs: np.ndarray) -> np.ndarray:
    """Class ids (n,) from a pair list (P, 3) of (i, j, ±1): the connected components of the
    positive pairs (union-find); negatives do not join anything."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, s in np.asarray(pairs, dtype=np.int64):
        if s > 0:
            a, b = root(int(i)), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = np.array([root(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]


def check_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """The pairs (P, 3) as int64 with labels in {-1, +1} and ends inside [0, n); raises otherwise."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    if len(pairs) == 0:
        raise ValueError("the pair form needs at least one labelled pair")
    if pairs[:, :2].min() < 0 or pairs[:, :2].max() >= n:
        raise ValueError(f"pair ends must index the {n} training samples")
    if not np.isin(pairs[:, 2], (-1, 1)).all():
        raise ValueError("pair labels must be +1 (similar) or -1 (not similar)")
    return pairs


def dsh_pair_loss(
    ua: torch.Tensor, ub: torch.Tensor, s: torch.Tensor, margin: float, alpha: float
) -> torch.Tensor:
    """DSH over observed pairs: the margin loss of each (a, b) with its ±1 regulariser."""
    d2 = (ua - ub).pow(2).sum(dim=1)
    dissimilar = (s < 0).to(ua.dtype)
    pair = 0.5 * (1 - dissimilar) * d2 + 0.5 * dissimilar * F.relu(margin - d2)
    reg = (ua.abs() - 1).abs().sum(dim=1) + (ub.abs() - 1).abs().sum(dim=1)
    return (pair + alpha * reg).mean()


def pair_nll(ua: torch.Tensor, ub: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """DPSH/DSDH likelihood over observed pairs: mean of ``log(1 + e^Θ) - s Θ``, ``Θ = ½ u_a·u_b``."""
    theta = 0.5 * (ua * ub).sum(dim=1)
    return (F.softplus(theta) - (s > 0).to(ua.dtype) * theta).mean()


# -- the hashers ---------------------------------------------------------------------------------
class SupervisedHasher(Hasher):
    """Shared front end, network, training loop and linear decoder; subclasses give the loss."""

    supervised = True
    trains_on_device = True
    defaults: dict[str, Any] = {}

    def __init__(self, bits: int, feature_dim: int, **params: Any) -> None:
        allowed = {**COMMON, **self.defaults}
        unknown = set(params) - set(allowed)
        if unknown:
            raise TypeError(f"unknown {self.method} parameters: {sorted(unknown)}")
        super().__init__(bits, feature_dim, **{**allowed, **params})
        self.mean_: np.ndarray | None = None
        self.P_: np.ndarray | None = None
        self.scale_: float = 1.0
        self.encoder_: Encoder | None = None
        self.A_: np.ndarray | None = None

    def fit(
        self,
        X: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        pairs: np.ndarray | None = None,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> SupervisedHasher:
        """Train on features ``X`` (n, d) and either their class ``labels`` (n,) or a sparse set
        of labelled ``pairs`` (P, 3) of (i, j, +1 similar / -1 not similar); returns self.
        ``device`` is where the network trains (its batches are drawn on the CPU with the same
        seeded generator, so a GPU fit sees the same batches); the fitted network comes back to
        the CPU."""
        if (labels is None) == (pairs is None):
            raise ValueError(
                f"{self.method} is supervised: give labels=(one class id per training sample) "
                "or pairs=((i, j, ±1) rows), one of them"
            )
        started = time.perf_counter()
        X = self._start_fit(X)
        if pairs is not None:
            pairs = check_pairs(X.shape[0], pairs)
            y = pair_classes(X.shape[0], pairs)
        else:
            labels = np.asarray(labels)
            if labels.shape != (X.shape[0],):
                raise ValueError(f"expected {X.shape[0]} labels, got shape {labels.shape}")
            _, y = np.unique(labels, return_inverse=True)
        rng = np.random.default_rng(seed)
        with _seeded(seed):
            dev = torch.device(device)
            U = self._init_front(X, rng).to(dev)
            yt = torch.from_numpy(y.astype(np.int64)).to(dev)
            self.encoder_.to(dev)
            try:
                if pairs is None:
                    self._train(U, yt, seed, progress, should_stop, started)
                else:
                    Xt = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
                    self._train_pairs(U, yt, pairs, seed, progress, should_stop, started, Xt)
            finally:
                self.encoder_.cpu().eval()
        signs = np.where(self.project(X) > 0, 1.0, -1.0)
        self.A_ = fit_linear_decoder(signs, X, self.mean_)
        self.meta["metrics"] = {
            **self.meta.get("metrics", {}),
            "fit_seconds": round(time.perf_counter() - started, 2),
            "classes": int(y.max(initial=-1) + 1),
        }
        if pairs is not None:
            self.meta["metrics"]["pairs"] = {
                "positive": int((pairs[:, 2] > 0).sum()), "negative": int((pairs[:, 2] < 0).sum()),
            }
        return self

    def _init_front(self, X: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        n, d = X.shape
        p = int(min(self.params["input_dim"] or d, d))
        self.mean_ = X.mean(axis=0).astype(np.float32)
        self.P_ = pca_basis(X - self.mean_, p, rng).astype(np.float32)
        V = (X - self.mean_) @ self.P_
        rms = float(np.sqrt(np.mean(V**2))) if n > 1 else 0.0
        self.scale_ = rms if rms > 1e-8 else 1.0
        self.encoder_ = Encoder(p, int(self.params["hidden"]), self.bits)
        return torch.from_numpy(np.ascontiguousarray(V / self.scale_, dtype=np.float32))

    def _train(
        self,
        U: torch.Tensor,
        y: torch.Tensor,
        seed: int,
        progress: ProgressFn | None,
        should_stop: StopFn | None,
        started: float,
    ) -> None:
        prm = self.params
        n = U.shape[0]
        epochs, bs = int(prm["epochs"]), int(prm["batch_size"])
        steps_per_epoch = max(1, -(-n // bs))
        opt, sched = adamw_warmup_cosine(
            self.encoder_.parameters(), float(prm["lr"]), float(prm["weight_decay"]),
            epochs * steps_per_epoch, decoupled=False,
        )
        gen = torch.Generator().manual_seed(seed)
        state = self._start_state(U, y)
        for epoch in range(epochs):
            self._epoch_start(U, y, state)
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(steps_per_epoch):
                check_stop(should_stop)
                idx = perm[s * bs : (s + 1) * bs].to(U.device)
                u = self.encoder_(U[idx])
                loss = self._loss(u, idx, y, state)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
                self._after_step(u.detach(), idx, state)
            report(progress, epoch + 1, epochs, total / steps_per_epoch, started)

    def _train_pairs(
        self,
        U: torch.Tensor,
        y: torch.Tensor,
        pairs: np.ndarray,
        seed: int,
        progress: ProgressFn | None,
        should_stop: StopFn | None,
        started: float,
        X: torch.Tensor | None = None,
    ) -> None:
        """The pair form: mini-batches of observed pairs, both ends encoded in the step, plus
        ``w_unsup`` times the neighbour-ranking term on the features ``X`` (module docstring)."""
        prm = self.params
        w_unsup = float(prm["w_unsup"]) * self._unsup_scale() if X is not None and X.shape[0] > 2 else 0.0
        knn = exact_knn(X, int(prm["unsup_neighbours"])) if w_unsup else None
        P = torch.from_numpy(pairs)
        n_pairs = P.shape[0]
        epochs, bs = int(prm["epochs"]), int(prm["batch_size"])
        steps_per_epoch = max(1, -(-n_pairs // bs))
        opt, sched = adamw_warmup_cosine(
            self.encoder_.parameters(), float(prm["lr"]), float(prm["weight_decay"]),
            epochs * steps_per_epoch, decoupled=False,
        )
        gen = torch.Generator().manual_seed(seed)
        state = self._start_state(U, y)
        state["quant_scale"] = 1.0 / self.bits**2  # weight η/bits: see the module docstring
        for epoch in range(epochs):
            self._epoch_start(U, y, state)
            perm = torch.randperm(n_pairs, generator=gen)
            total = 0.0
            for step in range(steps_per_epoch):
                check_stop(should_stop)
                batch = P[perm[step * bs : (step + 1) * bs]].to(U.device)
                idx, ends = torch.unique(batch[:, :2], return_inverse=True)
                u = self.encoder_(U[idx])
                loss = self._pair_loss(u, idx, ends[:, 0], ends[:, 1], batch[:, 2], state)
                if w_unsup:
                    loss = loss + w_unsup * self._neighbour_term(X, U, knn, gen, bs)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
                self._after_step(u.detach(), idx, state)
            report(progress, epoch + 1, epochs, total / steps_per_epoch, started)

    def _neighbour_term(
        self, X: torch.Tensor, U: torch.Tensor, knn: torch.Tensor, gen: torch.Generator, size: int
    ) -> torch.Tensor:
        """URPH's listwise neighbour ranking on ``size`` random training items, each with two of
        its nearest neighbours and the other items as candidates."""
        n, dev = U.shape[0], U.device
        b = min(size, n)
        batch = torch.randperm(n, generator=gen)[:b].to(dev)
        pick = torch.randint(knn.shape[1], (b, 2), generator=gen).to(dev)
        nb = knn[batch].gather(1, pick)
        target, mask = rank_targets(X, batch, nb, float(self.params["tau_x"]))
        h = torch.tanh(self.encoder_(U[torch.cat([batch, nb.reshape(-1)])]))
        hq, hn = h[:b], h[b:].reshape(b, 2, self.bits)
        code_sim = torch.cat([torch.einsum("bl,bml->bm", hq, hn), hq @ hq.T], dim=1)
        return listwise_kl(target, code_sim * (float(self.params["code_scale"]) / self.bits), mask)

    def _unsup_scale(self) -> float:
        """The unsupervised term's weight in the units of the method's pair loss (1: a likelihood)."""
        return 1.0

    # hooks for the objectives (each method gives both losses; the rest are optional)
    @abstractmethod
    def _pair_loss(
        self, u: torch.Tensor, idx: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
        s: torch.Tensor, state: dict[str, Any],
    ) -> torch.Tensor:
        """The objective over the observed pairs (a, b) (positions in ``u``) labelled ``s``."""

    def _start_state(self, U: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        return {}

    def _epoch_start(self, U: torch.Tensor, y: torch.Tensor, state: dict[str, Any]) -> None:
        """Once per epoch before its batches (DSDH's discrete code update); nothing by default."""

    @abstractmethod
    def _loss(
        self, u: torch.Tensor, idx: torch.Tensor, y: torch.Tensor, state: dict[str, Any]
    ) -> torch.Tensor:
        """The objective on the batch ``idx`` with class labels ``y``."""

    def _after_step(self, u: torch.Tensor, idx: torch.Tensor, state: dict[str, Any]) -> None:
        """After each optimiser step (DPSH keeps the outputs it has seen); nothing by default."""

    # the interface
    def project(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        V = ((self._check_features(X) - self.mean_) @ self.P_) / self.scale_
        with torch.no_grad():
            return self.encoder_(torch.from_numpy(np.ascontiguousarray(V, np.float32))).numpy()

    def decode_signs(self, signs: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return signs.astype(np.float32) @ self.A_ + self.mean_

    def state_dict(self) -> dict[str, np.ndarray]:
        self._require_fitted()
        out = {"mean": self.mean_, "P": self.P_, "scale": np.array([self.scale_], np.float32)}
        out["A"] = self.A_
        for k, v in self.encoder_.state_dict().items():
            out[f"encoder.{k}"] = v.detach().cpu().numpy()
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_ = np.asarray(tensors["mean"], np.float32)
        self.P_ = np.asarray(tensors["P"], np.float32)
        self.scale_ = float(tensors["scale"][0])
        self.A_ = np.asarray(tensors["A"], np.float32)
        self.encoder_ = Encoder(self.P_.shape[1], int(self.params["hidden"]), self.bits)
        self.encoder_.load_state_dict(
            {
                k.removeprefix("encoder."): torch.from_numpy(np.array(v))
                for k, v in tensors.items()
                if k.startswith("encoder.")
            }
        )
        self.encoder_.eval()

    def _require_fitted(self) -> None:
        if self.encoder_ is None:
            raise RuntimeError(f"{self.method} hasher is not fitted yet; call fit() first")


class DSHHasher(SupervisedHasher):
    """DSH: margin-based pairwise loss within the mini-batch with the regulariser to ±1."""

    method = "dsh"
    defaults = {"alpha": 0.01, "margin": None}  # margin None: 2 * bits (the paper)

    def _loss(self, u, idx, y, state):  # type: ignore[no-untyped-def]
        margin = self.params["margin"] or 2.0 * self.bits
        return dsh_loss(u, y[idx], float(margin), float(self.params["alpha"]))

    def _pair_loss(self, u, idx, a, b, s, state):  # type: ignore[no-untyped-def]
        margin = self.params["margin"] or 2.0 * self.bits
        return dsh_pair_loss(u[a], u[b], s, float(margin), float(self.params["alpha"]))

    def _unsup_scale(self) -> float:
        """DSH's pair loss is in squared distances up to the margin: the ranking term (O(1))
        weighs as much when scaled by it (measured: at weight 1 the codes still collapse)."""
        return float(self.params["margin"] or 2.0 * self.bits)


class DPSHHasher(SupervisedHasher):
    """DPSH: pairwise likelihood against every stored output, plus the quantization loss."""

    method = "dpsh"
    defaults = {"eta": 10.0}

    def _start_state(self, U, y):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return {"U": self.encoder_(U).detach().clone()}

    def _loss(self, u, idx, y, state):  # type: ignore[no-untyped-def]
        similar = (y[idx][:, None] == y[None, :]).to(u.dtype)
        eta_mean = float(self.params["eta"]) * self.bits / y.shape[0]
        return dpsh_loss(u, state["U"], similar, eta_mean)

    def _pair_loss(self, u, idx, a, b, s, state):  # type: ignore[no-untyped-def]
        eta_mean = float(self.params["eta"]) * self.bits * state["quant_scale"]
        return pair_nll(u[a], u[b], s) + eta_mean * (torch.sign(u) - u).pow(2).mean()

    def _after_step(self, u, idx, state):  # type: ignore[no-untyped-def]
        state["U"][idx] = u


class DSDHHasher(SupervisedHasher):
    """DSDH: pairwise likelihood + classification on discrete codes (DCC) + quantization."""

    method = "dsdh"
    defaults = {"mu": 1.0, "nu": 0.1, "eta": 55.0, "dcc_iterations": 3}

    def _start_state(self, U, y):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            out = self.encoder_(U).detach().clone()
        classes = int(y.max()) + 1
        Y = np.zeros((classes, y.shape[0]))
        Y[y.cpu().numpy(), np.arange(y.shape[0])] = 1.0
        return {"U": out, "Y": Y, "B": np.where(out.cpu().numpy() > 0, 1.0, -1.0).T}

    def _epoch_start(self, U, y, state):  # type: ignore[no-untyped-def]
        """Alternate: W in closed form, then B by DCC, with the network's outputs fixed."""
        mu, nu, eta = (float(self.params[k]) for k in ("mu", "nu", "eta"))
        Ut = state["U"].cpu().numpy().astype(np.float64).T
        B = state["B"]
        for _ in range(int(self.params["dcc_iterations"])):
            W = dsdh_w_update(B, state["Y"], mu, nu)
            B = dcc_update(B, W, state["Y"], Ut, mu, eta)
        state["B"], state["W"] = B, W
        state["Bt"] = torch.from_numpy(B.T.astype(np.float32)).to(state["U"].device)

    def _loss(self, u, idx, y, state):  # type: ignore[no-untyped-def]
        similar = (y[idx][:, None] == y[None, :]).to(u.dtype)
        eta_mean = float(self.params["eta"]) * self.bits / y.shape[0]
        return (
            pairwise_nll(u, state["U"], similar) + eta_mean * (state["Bt"][idx] - u).pow(2).mean()
        )

    def _pair_loss(self, u, idx, a, b, s, state):  # type: ignore[no-untyped-def]
        eta_mean = float(self.params["eta"]) * self.bits * state["quant_scale"]
        return pair_nll(u[a], u[b], s) + eta_mean * (state["Bt"][idx] - u).pow(2).mean()

    def _after_step(self, u, idx, state):  # type: ignore[no-untyped-def]
        state["U"][idx] = u
