"""URPH: the unsupervised rank-preserving hasher with a decoder (our reconstruction of seed 000).

Each training sample is a query. Its candidate list is a few of its true top-K neighbours (exact
cosine among the training samples) plus the other items of the batch; the encoder is trained so
that the softmax over code similarities reproduces the sharp softmax over feature similarities
(:func:`listwise_kl`), with quantisation, bit-balance and decorrelation terms. A decoder fed with
the binary code (straight-through) learns to reconstruct the feature and to preserve the query's
ranking asymmetrically (real query against decoded candidates), which is what the re-rank uses.

Speed: features first go through a fixed PCA (``input_dim`` coordinates, computed once), so the
networks work in a small space; the decoder predicts those PCA coordinates and the back-projection
to d dimensions is linear. The encoder has a linear path initialised from PCA-ITQ plus an MLP
residual whose last layer starts at zero, so training starts from the ITQ codes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from imagehash_app.core.hashing.base import (
    Hasher,
    ProgressFn,
    StopFn,
    check_stop,
    fit_linear_decoder,
    report,
)
from imagehash_app.core.hashing.baselines import itq_rotation, pca_basis
from imagehash_app.core.hashing.losses import (
    balance_loss,
    decorrelation_loss,
    listwise_kl,
    quantization_loss,
)

DEFAULTS: dict[str, Any] = {
    "input_dim": 256,  # PCA coordinates the networks see
    "hidden": 256,  # encoder hidden width
    "decoder_hidden": 512,
    "neighbours": 50,  # K of the ground-truth top-K lists
    "neighbours_per_query": 2,  # true neighbours added to each query's candidate list per step
    "batch_size": 512,
    "epochs": 30,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "tau_x": 0.02,  # temperature of the target (feature) softmax
    "code_scale": 12.0,  # code logits = code_scale * h_q . h_c / bits
    "tau_dec": 0.02,  # temperature of the decoder's asymmetric ranking softmax
    "w_quant": 0.05,
    "w_balance": 0.1,
    "w_decor": 0.1,
    "w_recon": 1.0,
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


class URPHHasher(Hasher):
    """Rank-preserving MLP hasher with a decoder; see the module docstring."""

    method = "urph"
    trains_on_device = True

    def __init__(self, bits: int, feature_dim: int, **params: Any) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown urph parameters: {sorted(unknown)}")
        merged = {**DEFAULTS, **params}
        super().__init__(bits, feature_dim, **merged)
        self.mean_: np.ndarray | None = None
        self.P_: np.ndarray | None = None  # (d, p) orthonormal PCA basis
        self.scale_: float = 1.0  # u = (x - mean) @ P / scale
        self.encoder_: Encoder | None = None
        self.decoder_: Decoder | None = None

    # -- fit -------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        seed: int = 0,
        init_from: URPHHasher | None = None,
        epochs: int | None = None,
        device: str = "cpu",
    ) -> URPHHasher:
        """Train on ``X``; ``init_from`` warm-starts from another fitted urph hasher (fine-tuning).

        ``epochs`` overrides the configured count (short fine-tunes); ``device`` is where the
        training runs (the fitted networks always come back to the CPU).
        """
        started = time.perf_counter()
        X = self._start_fit(X)
        p = self.params
        epochs = int(p["epochs"] if epochs is None else epochs)
        rng = np.random.default_rng(seed)
        seconds: dict[str, float] = {}  # where the fit's time went, kept in the metadata
        # Only the networks' initial weights come from torch's global generator (training draws
        # from its own): seeded, and kept from other threads meanwhile (`_seeded`).
        with _seeded(seed):
            if init_from is not None:
                self._copy_from(init_from)
            else:
                self._init_from_data(X, rng, device)
        seconds["init"] = time.perf_counter() - started
        dev = torch.device(device)
        Xt = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
        knn = exact_knn(Xt, int(p["neighbours"]))
        seconds["neighbours"] = time.perf_counter() - started - seconds["init"]
        check_stop(should_stop)
        try:
            self._train(Xt, knn, epochs, seed, progress, should_stop, started)
        finally:
            self.encoder_.cpu().eval()
            self.decoder_.cpu().eval()
        total = time.perf_counter() - started
        seconds["train"] = total - seconds["init"] - seconds["neighbours"]
        self.meta["metrics"] = {
            **self.meta.get("metrics", {}),
            "fit_seconds": round(total, 2),
            "fit_parts_s": {k: round(v, 3) for k, v in seconds.items()},
        }
        if init_from is not None:
            self.meta["warm_start"] = init_from.meta.get("created")
        return self

    def _init_from_data(self, X: np.ndarray, rng: np.random.Generator, device: str = "cpu") -> None:
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
        self.encoder_ = Encoder(p, int(self.params["hidden"]), self.bits)
        self.decoder_ = Decoder(
            self.bits, int(self.params["decoder_hidden"]), p, float(self.params["tau_dec"])
        )
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
            A = fit_linear_decoder(signs, V, np.zeros(p))
            self.decoder_.linear.weight.copy_(torch.from_numpy(A.T.copy()))
            self.decoder_.linear.bias.zero_()

    def _copy_from(self, other: URPHHasher) -> None:
        """Take over another hasher's PCA front end and network weights (warm start)."""
        if (
            other.encoder_ is None
            or other.bits != self.bits
            or other.feature_dim != self.feature_dim
        ):
            raise ValueError(
                "init_from must be a fitted urph hasher with the same bits and feature size"
            )
        self.mean_, self.P_, self.scale_ = other.mean_.copy(), other.P_.copy(), other.scale_
        self.load_state(other.state_dict())

    def _train(
        self,
        X: torch.Tensor,
        knn: torch.Tensor,
        epochs: int,
        seed: int,
        progress: ProgressFn | None,
        should_stop: StopFn | None,
        started: float,
    ) -> None:
        prm = self.params
        n = X.shape[0]
        dev = X.device
        mean = torch.from_numpy(self.mean_).to(dev)
        P = torch.from_numpy(self.P_).to(dev)
        self.encoder_.to(dev)
        self.decoder_.to(dev)
        xP = X @ P  # (n, p) PCA coordinates of x (not centred)
        muP = mean @ P
        U = (xP - muP) / self.scale_  # encoder input
        xmu = X @ mean  # (n,) x . mean
        mu2 = mean @ mean
        bs = max(1, min(int(prm["batch_size"]), n))
        steps = max(1, math.ceil(n / bs)) * max(epochs, 0)
        params = list(self.encoder_.parameters()) + list(self.decoder_.parameters())
        opt = torch.optim.AdamW(
            params, lr=float(prm["lr"]), weight_decay=float(prm["weight_decay"])
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps))
        gen = torch.Generator().manual_seed(seed)
        m = int(prm["neighbours_per_query"]) if knn.shape[1] else 0
        self.encoder_.train()
        self.decoder_.train()
        for epoch in range(epochs):
            total, count = 0.0, 0
            for cpu_batch in torch.randperm(n, generator=gen).split(bs):
                check_stop(should_stop)
                batch = cpu_batch.to(dev)
                if m:
                    cols = torch.randint(knn.shape[1], (batch.shape[0], m), generator=gen)
                    nb = knn[batch].gather(1, cols.to(dev))
                else:
                    nb = batch[:, None][:, :0]
                loss = self._step_loss(X, U, xP, xmu, mu2, muP, batch, nb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * batch.shape[0]
                count += batch.shape[0]
            report(progress, epoch + 1, epochs, total / max(count, 1), started)
        self.encoder_.eval()
        self.decoder_.eval()

    def _step_loss(
        self,
        X: torch.Tensor,
        U: torch.Tensor,
        xP: torch.Tensor,
        xmu: torch.Tensor,
        mu2: torch.Tensor,
        muP: torch.Tensor,
        batch: torch.Tensor,
        nb: torch.Tensor,
    ) -> torch.Tensor:
        """Loss of one batch: queries ``batch`` (b,), their sampled true neighbours ``nb`` (b, m)."""
        prm = self.params
        b, m = nb.shape
        items = torch.cat([batch, nb.reshape(-1)])
        z = self.encoder_(U[items])
        h = torch.tanh(z)
        # Candidate list of query i: its own m neighbours, then the other batch items.
        cand = torch.cat([nb, batch[None, :].expand(b, b)], dim=1)  # (b, m + b)
        mask = cand != batch[:, None]
        xq = X[batch]
        target = torch.cat([torch.einsum("bd,bmd->bm", xq, X[nb]), xq @ X[batch].T], dim=1) / float(
            prm["tau_x"]
        )
        hq, hn = h[:b], h[b:].reshape(b, m, self.bits)
        code_sim = torch.cat([torch.einsum("bl,bml->bm", hq, hn), hq @ hq.T], dim=1)
        loss = listwise_kl(target, code_sim * (float(prm["code_scale"]) / self.bits), mask)
        loss = loss + float(prm["w_quant"]) * quantization_loss(h)
        loss = loss + float(prm["w_balance"]) * balance_loss(h[:b])
        loss = loss + float(prm["w_decor"]) * decorrelation_loss(h[:b])
        if float(prm["w_recon"]) or float(prm["w_dec_rank"]):
            code = h + (torch.sign(z) - h).detach()  # binary forward, straight-through backward
            y = self.decoder_(code)  # PCA coordinates of (x_hat - mean)
            # x_hat = mean + P y; cosines with any x are computed in the p-space, exactly.
            norm = torch.sqrt((mu2 + 2.0 * (y @ muP) + (y * y).sum(1)).clamp_min(1e-12))
            recon = (xmu[items] + (xP[items] * y).sum(1)) / norm
            loss = loss + float(prm["w_recon"]) * (1.0 - recon).mean()
            if float(prm["w_dec_rank"]):
                yq, yn = y[:b], y[b:].reshape(b, m, y.shape[1])
                nq, nn_ = norm[:b], norm[b:].reshape(b, m)
                pq = xP[batch]
                dec_nb = (xmu[batch][:, None] + torch.einsum("bp,bmp->bm", pq, yn)) / nn_
                dec_batch = (xmu[batch][:, None] + pq @ yq.T) / nq[None, :]
                dec_sim = torch.cat([dec_nb, dec_batch], dim=1) * self.decoder_.log_scale.exp()
                loss = loss + float(prm["w_dec_rank"]) * listwise_kl(target, dec_sim, mask)
        return loss

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
        p = self.P_.shape[1]
        with _GLOBAL_GENERATOR:  # their random init is overwritten, but draws from it
            self.encoder_ = Encoder(p, int(self.params["hidden"]), self.bits)
            self.decoder_ = Decoder(
                self.bits, int(self.params["decoder_hidden"]), p, float(self.params["tau_dec"])
            )
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
            raise RuntimeError("urph hasher is not fitted yet; call fit() first")


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


# Held while torch's process-wide generator is seeded or drawn from here: a version loaded on
# one thread (a search, the indexer's active version) while a fit initialises its networks on
# another would otherwise take draws from the fit's seeded sequence and change the fit.
_GLOBAL_GENERATOR = threading.RLock()


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's generator for module init without leaking the state to the caller, and with
    no other thread drawing from it meanwhile."""
    with _GLOBAL_GENERATOR, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
