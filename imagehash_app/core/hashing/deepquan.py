"""DeepQuan (seed 002; Chen, Cheung & Wang, IJCAI 2018): an autoencoder whose compact
representation is product-quantised instead of signed, trained with a weighted triplet loss.

Only the abstract and published summaries were available to us; we follow them term by term:

- **Encoder → compact representation** ``z`` (``z_dim``); fully connected, as in the paper. We
  end it with a LayerNorm without affine terms, so every ``z`` has the same norm and the triplet
  margin cannot be met by inflating the scale (our choice, the "trivial solution" the paper's
  triplet loss is said to avoid).
- **Decoder for manifold preservation**: a symmetric MLP reconstructs the (PCA coordinates of
  the) feature from ``z``: ``w_recon · ‖dec(z) - u‖²``. It is also trained on the quantised
  ``ẑ`` (gradient to the decoder only), so that it decodes stored codes for the re-rank (ours).
- **Product quantisation in place of a sign**: ``z`` is split into ``M = ceil(bits / 8)``
  sub-vectors, each replaced by the nearest of ``2^8`` learned centroids (the last one gets
  ``2^(bits - 8(M-1))`` when bits is not a multiple of 8), so 64 bits = 8 sub-quantizers × 256
  centroids = 8 bytes per photo. The quantisation error ``w_quant · ‖z - ẑ‖²`` pulls ``z``
  towards its codewords; the codebooks are learned by alternating optimisation (the paper's
  scheme): before every epoch of network steps (and after the last), Lloyd (k-means) steps per
  sub-space on all ``z``, warm-started from the previous codebooks.
- **Weighted triplet loss**: anchor, a positive drawn from its ``neighbours`` nearest training
  features (cosine), a random negative; ``w · max(0, margin + d(a,p) - d(a,n))`` with
  ``d = ‖z_a - z_b‖² / z_dim`` and the weight ``w = clip(s_ap - s_an, 0, 1)`` from the feature
  similarities, so that a "negative" that is as close as the positive (a contradictory triplet)
  counts for nothing. The paper builds its triplets from augmented images; on frozen features the
  neighbours stand in for them (our choice; the weight's form is ours too).

Search is by asymmetric distance (ADC, Jégou et al. 2011): the query's real ``z`` against the
database's codewords, through one (M, 256) table per query (:meth:`DeepQuanHasher.adc_distances`).
The codes are packed one byte per sub-quantizer into the same uint64 words as the sign codes,
so they are stored alike, but their Hamming distance means nothing: this hasher is eval-only.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imagehash_app.core.codes import words_for
from imagehash_app.core.hashing.base import (
    Hasher,
    ProgressFn,
    StopFn,
    check_stop,
    l2_normalize,
    report,
)
from imagehash_app.core.hashing.baselines import pca_basis
from imagehash_app.core.hashing.head import adamw_warmup_cosine
from imagehash_app.core.hashing.urph import _seeded, exact_knn

DEFAULTS: dict[str, Any] = {
    "input_dim": 256,
    "hidden": 512,
    "z_dim": 64,
    "neighbours": 10,
    "margin": 0.5,
    "w_recon": 1.0,
    "w_triplet": 1.0,
    "w_quant": 0.1,
    "batch_size": 256,
    "epochs": 30,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "kmeans_iterations": 2,  # Lloyd steps per epoch (5x that for the first codebooks)
}
ADC_BLOCK = 256  # queries per ADC block


def subspace_bits(bits: int) -> list[int]:
    """Bits of each sub-quantizer: 8 each, the last one what remains."""
    m = -(-bits // 8)
    return [8] * (m - 1) + [bits - 8 * (m - 1)]


def split_sizes(dim: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous sub-vectors of a ``dim`` vector, as equal as possible."""
    return [dim // parts + (1 if i < dim % parts else 0) for i in range(parts)]


def assign(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (K, s) of every row of ``z`` (n, s); ties to the lower index.

    ``‖z‖²`` is the same for every centroid, so ``‖c‖² - 2 z·c`` (one fused product) decides.
    """
    return torch.addmm((codebook * codebook).sum(1), z, codebook.T, alpha=-2.0).argmin(dim=1)


def assign_all(z: torch.Tensor, sizes: list[int], codebooks: list[torch.Tensor]) -> torch.Tensor:
    """Codeword index per sub-space (n, M); one batched product when the sub-spaces are alike."""
    if len(set(sizes)) == 1 and len({C.shape[0] for C in codebooks}) == 1:
        zs = z.reshape(z.shape[0], len(sizes), sizes[0]).transpose(0, 1)  # (M, n, s)
        C = torch.stack(codebooks)  # (M, K, s)
        d2 = (C * C).sum(2)[:, None, :] - 2.0 * torch.bmm(zs, C.transpose(1, 2))
        return d2.argmin(dim=2).T
    parts = torch.split(z, sizes, dim=1)
    return torch.stack([assign(p, C) for p, C in zip(parts, codebooks, strict=True)], dim=1)


def pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """Codeword indices (n, M) < 256 → uint64 words (n, W): byte m of the code is index m."""
    n, m = indices.shape
    raw = np.zeros((n, words_for(bits) * 8), dtype=np.uint8)
    raw[:, :m] = indices
    return raw.view("<u8").astype(np.uint64, copy=False).reshape(n, -1)


def unpack_indices(codes: np.ndarray, m: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: (n, W) uint64 → (n, M) int64 indices."""
    codes = np.ascontiguousarray(np.asarray(codes, dtype=np.uint64).astype("<u8"))
    return codes.view(np.uint8).reshape(codes.shape[0], -1)[:, :m].astype(np.int64)


def weighted_triplet_loss(
    za: torch.Tensor,
    zp: torch.Tensor,
    zn: torch.Tensor,
    weight: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """``Σ w · max(0, margin + d(a,p) - d(a,n)) / Σ w`` with ``d = ‖·‖² / dim`` (0 when Σ w = 0)."""
    dim = za.shape[1]
    dap = (za - zp).pow(2).sum(1) / dim
    dan = (za - zn).pow(2).sum(1) / dim
    total = weight.sum()
    if float(total) <= 0:
        return za.new_zeros(())
    return (weight * F.relu(margin + dap - dan)).sum() / total


class _Coder(nn.Module):
    """Encoder u → z (unit-RMS rows) and the symmetric decoder z → u."""

    def __init__(self, p: int, hidden: int, z_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(p, hidden),
            nn.ReLU(),
            nn.Linear(hidden, z_dim),
            nn.LayerNorm(z_dim, elementwise_affine=False),
        )
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, p))


class DeepQuanHasher(Hasher):
    """Autoencoder + learned product quantisation + weighted triplet loss; see the module docstring."""

    method = "deepquan"
    first_stage = "adc"  # the evaluation ranks its codes by asymmetric distance, not Hamming
    trains_on_device = True

    def __init__(self, bits: int, feature_dim: int, **params: Any) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown deepquan parameters: {sorted(unknown)}")
        super().__init__(bits, feature_dim, **{**DEFAULTS, **params})
        self.sub_bits = subspace_bits(self.bits)
        self.z_dim = max(int(self.params["z_dim"]), len(self.sub_bits))
        self.sizes = split_sizes(self.z_dim, len(self.sub_bits))
        self.mean_: np.ndarray | None = None
        self.P_: np.ndarray | None = None
        self.scale_: float = 1.0
        self.net_: _Coder | None = None
        self.codebooks_: list[torch.Tensor] | None = None

    # -- fit -------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> DeepQuanHasher:
        """Train on ``X``; ``device`` is where the networks and the codebooks train (random draws
        stay on the CPU's seeded generators); the fitted hasher always comes back to the CPU."""
        started = time.perf_counter()
        X = self._start_fit(X)
        prm = self.params
        rng = np.random.default_rng(seed)
        n, d = X.shape
        p = int(min(prm["input_dim"] or d, d))
        self.mean_ = X.mean(axis=0).astype(np.float32)
        self.P_ = pca_basis(X - self.mean_, p, rng).astype(np.float32)
        V = (X - self.mean_) @ self.P_
        rms = float(np.sqrt(np.mean(V**2))) if n > 1 else 0.0
        self.scale_ = rms if rms > 1e-8 else 1.0
        dev = torch.device(device)
        U = torch.from_numpy(np.ascontiguousarray(V / self.scale_, dtype=np.float32)).to(dev)
        Xt = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
        with _seeded(seed):
            self.net_ = _Coder(p, int(prm["hidden"]), self.z_dim).to(dev)
            knn = exact_knn(Xt, int(prm["neighbours"]))
            try:
                self._train(U, Xt, knn, rng, seed, progress, should_stop, started)
            finally:
                self.net_.cpu().eval()
                if self.codebooks_ is not None:
                    self.codebooks_ = [C.cpu() for C in self.codebooks_]
        self.meta["metrics"] = {
            **self.meta.get("metrics", {}),
            "fit_seconds": round(time.perf_counter() - started, 2),
        }
        return self

    def _train(
        self,
        U: torch.Tensor,
        X: torch.Tensor,
        knn: torch.Tensor,
        rng: np.random.Generator,
        seed: int,
        progress: ProgressFn | None,
        should_stop: StopFn | None,
        started: float,
    ) -> None:
        prm = self.params
        n = U.shape[0]
        epochs, bs = int(prm["epochs"]), int(prm["batch_size"])
        steps = max(1, -(-n // bs))
        opt, sched = adamw_warmup_cosine(
            self.net_.parameters(), float(prm["lr"]), float(prm["weight_decay"]),
            epochs * steps, decoupled=False,
        )
        gen = torch.Generator().manual_seed(seed)
        self.codebooks_ = None
        for epoch in range(epochs):
            self._codebook_step(U, rng)  # alternating: codebooks with the network fixed
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(steps):
                check_stop(should_stop)
                idx = perm[s * bs : (s + 1) * bs].to(U.device)
                loss = self._step_loss(U, X, knn, idx, gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
            report(progress, epoch + 1, epochs, total / steps, started)
        self._codebook_step(U, rng)  # final codebooks for the final encoder

    def _step_loss(
        self,
        U: torch.Tensor,
        X: torch.Tensor,
        knn: torch.Tensor,
        idx: torch.Tensor,
        gen: torch.Generator,
    ) -> torch.Tensor:
        prm = self.params
        n = U.shape[0]
        z = self.net_.encoder(U[idx])
        u = U[idx]
        loss = float(prm["w_recon"]) * F.mse_loss(self.net_.decoder(z), u)
        zq = self._quantize(z.detach())
        loss = loss + float(prm["w_recon"]) * F.mse_loss(self.net_.decoder(zq), u)
        loss = loss + float(prm["w_quant"]) * (z - zq).pow(2).sum(1).mean() / self.z_dim
        if knn.shape[1] > 0:
            pick = torch.randint(knn.shape[1], (idx.shape[0],), generator=gen).to(U.device)
            pos = knn[idx, pick]
            neg = torch.randint(n, (idx.shape[0],), generator=gen).to(U.device)
            w = ((X[idx] * X[pos]).sum(1) - (X[idx] * X[neg]).sum(1)).clamp(0.0, 1.0)
            zp, zn = self.net_.encoder(U[pos]), self.net_.encoder(U[neg])
            loss = loss + float(prm["w_triplet"]) * weighted_triplet_loss(
                z, zp, zn, w, float(prm["margin"])
            )
        return loss

    @torch.no_grad()
    def _codebook_step(self, U: torch.Tensor, rng: np.random.Generator) -> None:
        """Lloyd steps per sub-space on every training ``z`` (seeded init on the first call)."""
        Z = self.net_.encoder(U)
        parts = torch.split(Z, self.sizes, dim=1)
        books = []
        for m, (zs, b) in enumerate(zip(parts, self.sub_bits, strict=True)):
            k = 2**b
            iterations = int(self.params["kmeans_iterations"])
            if self.codebooks_ is None:
                pick = rng.choice(zs.shape[0], size=k, replace=zs.shape[0] < k)
                C = zs[torch.from_numpy(pick).to(zs.device)].clone()
                iterations *= 5  # from scratch; later calls start from the last codebooks
            else:
                C = self.codebooks_[m].clone()
            for _ in range(iterations):
                a = assign(zs, C)
                counts = torch.bincount(a, minlength=k).to(zs.dtype)
                sums = torch.zeros_like(C).index_add_(0, a, zs)
                empty = counts == 0
                C = torch.where(empty[:, None], C, sums / counts.clamp(min=1)[:, None])
                if bool(empty.any()):  # reseed dead centroids on random points
                    reseed = torch.from_numpy(rng.choice(zs.shape[0], int(empty.sum()))).to(zs.device)
                    C[empty] = zs[reseed]
            books.append(C)
        self.codebooks_ = books

    # -- codes -----------------------------------------------------------------------------
    def _quantize(self, z: torch.Tensor) -> torch.Tensor:
        """ẑ: every sub-vector replaced by its nearest codeword."""
        idx = assign_all(z, self.sizes, self.codebooks_)
        return torch.cat([C[idx[:, m]] for m, C in enumerate(self.codebooks_)], dim=1)

    def _z(self, X: np.ndarray) -> torch.Tensor:
        V = ((self._check_features(X) - self.mean_) @ self.P_) / self.scale_
        with torch.no_grad():
            return self.net_.encoder(torch.from_numpy(np.ascontiguousarray(V, np.float32)))

    def project(self, X: np.ndarray) -> np.ndarray:
        """The compact representation ``z`` (n, z_dim): the query side of ADC (not sign codes)."""
        self._require_fitted()
        return self._z(X).numpy()

    def indices(self, X: np.ndarray) -> np.ndarray:
        """Codeword index per sub-quantizer (n, M)."""
        self._require_fitted()
        return assign_all(self._z(X), self.sizes, self.codebooks_).numpy()

    def encode(self, X: np.ndarray) -> np.ndarray:
        X = self._check_features(X)
        if X.shape[0] == 0:
            return np.zeros((0, words_for(self.bits)), dtype=np.uint64)
        return pack_indices(self.indices(X), self.bits)

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """ẑ (n, z_dim) of packed codes: the concatenated codewords."""
        self._require_fitted()
        idx = torch.from_numpy(unpack_indices(codes, len(self.sub_bits)))
        return torch.cat([C[idx[:, m]] for m, C in enumerate(self.codebooks_)], dim=1).numpy()

    def adc_distances(self, X: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Squared distances (q, n) between the queries' real ``z`` and the codes' ``ẑ``, by table
        look-up: one (M, K) table of sub-space distances per query, summed over the M codewords."""
        self._require_fitted()
        z = self._z(X)
        idx = torch.from_numpy(unpack_indices(codes, len(self.sub_bits)))
        out = np.empty((z.shape[0], idx.shape[0]), dtype=np.float32)
        for start in range(0, z.shape[0], ADC_BLOCK):
            parts = torch.split(z[start : start + ADC_BLOCK], self.sizes, dim=1)
            dist = torch.zeros((parts[0].shape[0], idx.shape[0]))
            for m, (zs, C) in enumerate(zip(parts, self.codebooks_, strict=True)):
                table = torch.cdist(zs, C).pow(2)  # (b, K)
                dist += table[:, idx[:, m]]
            out[start : start + dist.shape[0]] = dist.numpy()
        return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Approximate L2-normalised features (n, d): codewords → decoder → PCA back-projection."""
        if codes.shape[0] == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        zq = torch.from_numpy(self.reconstruct(codes))
        with torch.no_grad():
            u = self.net_.decoder(zq).numpy()
        return l2_normalize(u * self.scale_ @ self.P_.T + self.mean_)

    def decode_signs(self, signs: np.ndarray) -> np.ndarray:
        raise TypeError("deepquan codes are product-quantiser indices, not signs; use decode()")

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        self._require_fitted()
        out = {"mean": self.mean_, "P": self.P_, "scale": np.array([self.scale_], np.float32)}
        for k, v in self.net_.state_dict().items():
            out[f"net.{k}"] = v.detach().cpu().numpy()
        for m, C in enumerate(self.codebooks_):
            out[f"codebook.{m}"] = C.numpy()
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_ = np.asarray(tensors["mean"], np.float32)
        self.P_ = np.asarray(tensors["P"], np.float32)
        self.scale_ = float(tensors["scale"][0])
        self.net_ = _Coder(self.P_.shape[1], int(self.params["hidden"]), self.z_dim)
        self.net_.load_state_dict(
            {
                k.removeprefix("net."): torch.from_numpy(np.array(v))
                for k, v in tensors.items()
                if k.startswith("net.")
            }
        )
        self.net_.eval()
        self.codebooks_ = [
            torch.from_numpy(np.array(tensors[f"codebook.{m}"], np.float32))
            for m in range(len(self.sub_bits))
        ]

    def _require_fitted(self) -> None:
        if self.net_ is None or self.codebooks_ is None:
            raise RuntimeError("deepquan hasher is not fitted yet; call fit() first")
