"""The network head that every learned sign-code hasher shares: a fixed PCA front end, an encoder
whose sign is the code and a decoder from codes back to features, with their persistence.

URPH (seed 000) and the seed papers' unsupervised methods (HARR, DistillHash, DSG, DMUH) differ in
what they train these networks for, not in the networks: on frozen backbone features each is a
small head, so they share this one and the comparison measures their objectives.

Speed: features first go through a fixed PCA (``input_dim`` coordinates, computed once), so the
networks work in a small space; the decoder predicts those PCA coordinates and the back-projection
to d dimensions is linear. The encoder has a linear path (initialised from PCA-ITQ when ``init`` is
"itq") plus an MLP residual whose last layer starts at zero.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from imagehash_app.core.hashing.base import Hasher, StopFn, check_stop, fit_linear_decoder
from imagehash_app.core.hashing.baselines import itq_rotation, pca_basis
from imagehash_app.core.hashing.losses import listwise_kl

# The head's parameters, shared by every method that trains it (each adds its own).
HEAD_DEFAULTS: dict[str, Any] = {
    "input_dim": 256,  # PCA coordinates the networks see
    "hidden": 256,  # encoder hidden width
    "decoder_hidden": 512,
    "neighbours_per_query": 2,  # true neighbours added to each query's candidate list per step
    "batch_size": 512,
    "epochs": 30,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "tau_x": 0.02,  # temperature of the target (feature) softmax
    "tau_dec": 0.02,  # temperature of the decoder's asymmetric ranking softmax
    "w_dec_rank": 1.0,
    "init": "itq",  # "itq": linear path starts as PCA-ITQ; "random": plain random init
    "itq_iterations": 50,
}


class Encoder(nn.Module):
    """z = linear(u) + MLP(u); u are scaled PCA coordinates, sign(z) is the code."""

    def __init__(self, p: int, hidden: int, bits: int) -> None:
        super().__init__()
        self.linear = nn.Linear(p, bits)
        self.mlp = nn.Sequential(
            nn.Linear(p, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, bits)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.linear(u) + self.mlp(u)


class Decoder(nn.Module):
    """±1 code (bits) → PCA coordinates of the centred feature (p): linear path + MLP residual."""

    def __init__(self, bits: int, hidden: int, p: int, tau: float = 0.02) -> None:
        super().__init__()
        # Learned sharpness of the asymmetric ranking softmax: without it the decoder would
        # distort its output to match the target's temperature instead of its order.
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / tau)))
        self.linear = nn.Linear(bits, p)
        self.mlp = nn.Sequential(
            nn.Linear(bits, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, p)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return self.linear(b) + self.mlp(b)


class HeadHasher(Hasher):
    """PCA front end + encoder + decoder; subclasses say how to train them (``fit``).

    ``defaults`` lists a method's parameters with their values; it must hold ``input_dim``,
    ``hidden``, ``decoder_hidden``, ``tau_dec``, ``init`` and ``itq_iterations``.
    """

    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, bits: int, feature_dim: int, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown {self.method} parameters: {sorted(unknown)}")
        super().__init__(bits, feature_dim, **{**self.defaults, **params})
        self.mean_: np.ndarray | None = None
        self.P_: np.ndarray | None = None  # (d, p) orthonormal PCA basis
        self.scale_: float = 1.0  # u = (x - mean) @ P / scale
        self.encoder_: Encoder | None = None
        self.decoder_: Decoder | None = None

    def _init_front_end(self, X: np.ndarray, rng: np.random.Generator, device: str = "cpu") -> None:
        """Fixed PCA front end and networks; the encoder's linear path starts as PCA-ITQ. The PCA
        runs on the training `device` (on one CPU thread beside 2 busy processes it took 1.1 s)."""
        n, d = X.shape
        p = int(min(self.params["input_dim"] or d, d))
        p = max(p, min(self.bits, d))
        self.mean_ = X.mean(axis=0).astype(np.float32)
        Xc = X - self.mean_
        self.P_ = pca_basis(Xc, p, rng, device=device).astype(np.float32)
        V = Xc @ self.P_
        rms = float(np.sqrt(np.mean(V**2))) if n > 1 else 0.0
        self.scale_ = rms if rms > 1e-8 else 1.0
        self._build_networks(p)
        if self.params["init"] == "itq" and self.bits <= p:
            W = itq_rotation(
                V[:, : self.bits] / self.scale_, rng, int(self.params["itq_iterations"])
            )
            proj = (V[:, : self.bits] / self.scale_) @ W
            std = np.maximum(proj.std(axis=0), 1e-3) if n > 1 else np.ones(self.bits)
            weight = np.zeros((self.bits, p), dtype=np.float32)
            weight[:, : self.bits] = (W / std).T
            with torch.no_grad():
                self.encoder_.linear.weight.copy_(torch.from_numpy(weight))
                self.encoder_.linear.bias.zero_()
        elif self.params["init"] not in ("itq", "random"):
            raise ValueError(f"init must be 'itq' or 'random', got {self.params['init']!r}")
        # The decoder's linear path starts as the least-squares back-projection of the first codes.
        with torch.no_grad():
            signs = np.where(
                self.encoder_(torch.from_numpy(V / self.scale_)).numpy() > 0, 1.0, -1.0
            )
        self._init_decoder_linear(signs, V)

    def _init_decoder_linear(self, signs: np.ndarray, V: np.ndarray) -> None:
        """Decoder's linear path := the least-squares map from ±1 codes to PCA coordinates V."""
        A = fit_linear_decoder(signs, V, np.zeros(V.shape[1]))
        with torch.no_grad():
            weight = self.decoder_.linear.weight
            weight.copy_(torch.from_numpy(A.T.copy()).to(weight.device))
            self.decoder_.linear.bias.zero_()

    def _build_networks(self, p: int) -> None:
        with GLOBAL_GENERATOR:  # their random init draws from torch's global generator
            self.encoder_ = Encoder(p, int(self.params["hidden"]), self.bits)
            self.decoder_ = Decoder(
                self.bits, int(self.params["decoder_hidden"]), p, float(self.params["tau_dec"])
            )

    def _record_fit_time(self, total: float, seconds: dict[str, float]) -> None:
        """Keep the fit's time and where it went (``seconds`` by part) in the metadata."""
        self.meta["metrics"] = {
            **self.meta.get("metrics", {}),
            "fit_seconds": round(total, 2),
            "fit_parts_s": {k: round(v, 3) for k, v in seconds.items()},
        }

    # -- encode / decode -------------------------------------------------------------------
    def project(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        X = self._check_features(X)
        out = np.empty((X.shape[0], self.bits), dtype=np.float32)
        # All in PyTorch: numpy's BLAS pool and PyTorch's OpenMP pool, used in turn, wait for each
        # other's spinning threads (32 photos: 8.0 ms against 0.44 with one pool, 2 cores).
        mean, P = torch.from_numpy(self.mean_), torch.from_numpy(self.P_)
        with torch.inference_mode():
            for start in range(0, X.shape[0], 8192):
                u = (torch.tensor(X[start : start + 8192]) - mean) @ P / self.scale_
                out[start : start + u.shape[0]] = self.encoder_(u).numpy()
        return out

    def decode_signs(self, signs: np.ndarray) -> np.ndarray:
        self._require_fitted()
        out = np.empty((signs.shape[0], self.feature_dim), dtype=np.float32)
        mean, P = torch.from_numpy(self.mean_), torch.from_numpy(self.P_)  # one pool (project)
        with torch.inference_mode():
            for start in range(0, signs.shape[0], 8192):
                y = self.decoder_(
                    torch.from_numpy(
                        np.ascontiguousarray(signs[start : start + 8192], dtype=np.float32)
                    )
                )
                out[start : start + y.shape[0]] = (y @ P.T + mean).numpy()
        return out

    # -- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        self._require_fitted()
        tensors = {
            "mean": self.mean_,
            "P": self.P_,
            "scale": np.array([self.scale_], dtype=np.float32),
        }
        for prefix, module in (("encoder.", self.encoder_), ("decoder.", self.decoder_)):
            for key, value in module.state_dict().items():
                tensors[prefix + key] = value.detach().cpu().numpy().copy()
        return tensors

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_ = np.array(tensors["mean"], dtype=np.float32)  # writable: shared with torch
        self.P_ = np.array(tensors["P"], dtype=np.float32)
        self.scale_ = float(np.asarray(tensors["scale"]).reshape(-1)[0])
        self._build_networks(self.P_.shape[1])
        for prefix, module in (("encoder.", self.encoder_), ("decoder.", self.decoder_)):
            sub = {
                k[len(prefix) :]: torch.from_numpy(np.array(v))
                for k, v in tensors.items()
                if k.startswith(prefix)
            }
            module.load_state_dict(sub, strict=True)
            module.eval()

    def _require_fitted(self) -> None:
        if self.encoder_ is None:
            raise RuntimeError(f"{self.method} hasher is not fitted yet; call fit() first")


@dataclass(frozen=True)
class FeatureSpace:
    """The training features on the device with what the losses need of them, computed once:
    X (n, d), the encoder input U = (x - mean) P / scale, and the p-space quantities that give the
    cosine between any x and a decoded x_hat = mean + P y exactly (xP = x P, muP = mean P,
    xmu = x . mean, mu2 = |mean|²)."""

    X: torch.Tensor
    U: torch.Tensor
    xP: torch.Tensor
    muP: torch.Tensor
    xmu: torch.Tensor
    mu2: torch.Tensor

    @classmethod
    def of(cls, X: torch.Tensor, mean: np.ndarray, P: np.ndarray, scale: float) -> FeatureSpace:
        mean_t = torch.from_numpy(mean).to(X.device)
        P_t = torch.from_numpy(P).to(X.device)
        xP = X @ P_t  # (n, p) PCA coordinates of x (not centred)
        muP = mean_t @ P_t
        return cls(X, (xP - muP) / scale, xP, muP, X @ mean_t, mean_t @ mean_t)


def rank_targets(
    X: torch.Tensor, batch: torch.Tensor, nb: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's candidate list (its ``m`` sampled neighbours, then the batch) as target logits
    (b, m + b) = cosine / tau, and the mask that leaves the query itself out."""
    b = batch.shape[0]
    cand = torch.cat([nb, batch[None, :].expand(b, b)], dim=1)  # (b, m + b)
    mask = cand != batch[:, None]
    xq = X[batch]
    target = torch.cat([torch.einsum("bd,bmd->bm", xq, X[nb]), xq @ X[batch].T], dim=1) / tau
    return target, mask


def decoder_loss(
    decoder: Decoder,
    code: torch.Tensor,
    fs: FeatureSpace,
    batch: torch.Tensor,
    nb: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    w_recon: float,
    w_dec_rank: float,
) -> torch.Tensor:
    """Reconstruction (1 - cos(x_hat, x)) of every item plus the asymmetric ranking term: each
    query's real feature against its decoded candidates, as a listwise KL to ``target``.

    ``code`` (b + b m, bits) are the ±1 codes of ``batch`` then of ``nb`` flattened.
    """
    b, m = nb.shape
    items = torch.cat([batch, nb.reshape(-1)])
    y = decoder(code)  # PCA coordinates of (x_hat - mean)
    # x_hat = mean + P y; cosines with any x are computed in the p-space, exactly.
    norm = torch.sqrt((fs.mu2 + 2.0 * (y @ fs.muP) + (y * y).sum(1)).clamp_min(1e-12))
    recon = (fs.xmu[items] + (fs.xP[items] * y).sum(1)) / norm
    loss = w_recon * (1.0 - recon).mean()
    if w_dec_rank:
        yq, yn = y[:b], y[b:].reshape(b, m, y.shape[1])
        nq, nn_ = norm[:b], norm[b:].reshape(b, m)
        pq = fs.xP[batch]
        dec_nb = (fs.xmu[batch][:, None] + torch.einsum("bp,bmp->bm", pq, yn)) / nn_
        dec_batch = (fs.xmu[batch][:, None] + pq @ yq.T) / nq[None, :]
        dec_sim = torch.cat([dec_nb, dec_batch], dim=1) * decoder.log_scale.exp()
        loss = loss + w_dec_rank * listwise_kl(target, dec_sim, mask)
    return loss


def neighbour_batches(
    n: int,
    batch_size: int,
    knn: torch.Tensor,
    m: int,
    gen: torch.Generator,
    should_stop: StopFn | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled query batches (b,) with ``m`` of each query's true neighbours drawn
    from ``knn`` (b, m) (none when ``m`` is 0), on ``knn``'s device; stops when asked."""
    dev = knn.device
    for cpu_batch in torch.randperm(n, generator=gen).split(max(1, min(batch_size, n))):
        check_stop(should_stop)
        batch = cpu_batch.to(dev)
        if m and knn.shape[1]:
            cols = torch.randint(knn.shape[1], (batch.shape[0], m), generator=gen)
            yield batch, knn[batch].gather(1, cols.to(dev))
        else:
            yield batch, batch[:, None][:, :0]


def adamw_warmup_cosine(
    params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, steps: int,
    *, decoupled: bool = True,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with the warm-up + cosine schedule over ``steps`` that every head trains with
    (``decoupled=False``: Adam with L2 weight decay, as DeepQuan and the supervised papers use)."""
    optimizer = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = optimizer(params, lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps))


def exact_knn(X: torch.Tensor, k: int, block: int = 2048) -> torch.Tensor:
    """Indices (n, k') of each row's top-k' cosine neighbours among the other rows, k' = min(k, n-1).

    Exact, blockwise (a PCA shortlist re-scored in full was measured slower on CPU: the gather
    of the candidates' features costs more than the product it saves).
    """
    n = X.shape[0]
    k = min(k, n - 1)
    out = torch.empty((n, max(k, 0)), dtype=torch.long, device=X.device)
    if k <= 0:
        return out
    for start in range(0, n, block):
        sims = X[start : start + block] @ X.T
        rows = torch.arange(sims.shape[0], device=X.device)
        sims[rows, rows + start] = -float("inf")
        out[start : start + sims.shape[0]] = sims.topk(k, dim=1).indices
    return out


def warmup_cosine(steps: int, warmup: float = 0.1) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over the first 10% of steps, then cosine decay to 0."""
    ramp = max(1, int(steps * warmup))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - ramp) / max(1, steps - ramp))))

    return factor


# Held while torch's process-wide generator is seeded or drawn from for a network's initial
# weights: a version loaded on one thread (a search, the indexer's active version) while a fit
# initialises its networks on another would otherwise take draws from the fit's seeded sequence
# and change the fit (a resumed run then differed from an uninterrupted one).
GLOBAL_GENERATOR = threading.RLock()


@contextmanager
def seeded(seed: int, *, exclusive: bool = False) -> Iterator[None]:
    """Seed torch's generator without leaking the state to the caller. `exclusive`: no other
    thread draws from it meanwhile (for short blocks: URPH seeds only its initial weights; the
    seed methods whose training draws from the global generator hold no lock for a whole fit)."""
    lock = GLOBAL_GENERATOR if exclusive else contextlib.nullcontext()
    with lock, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
