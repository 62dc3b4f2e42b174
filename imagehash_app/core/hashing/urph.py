"""URPH: the unsupervised rank-preserving hasher with a decoder (our reconstruction of seed 000).

Each training sample is a query. Its candidate list is a few of its true top-K neighbours (exact
cosine among the training samples) plus the other items of the batch; the encoder is trained so
that the softmax over code similarities reproduces the sharp softmax over feature similarities
(:func:`listwise_kl`), with quantisation, bit-balance and decorrelation terms. A decoder fed with
the binary code (straight-through) learns to reconstruct the feature and to preserve the query's
ranking asymmetrically (real query against decoded candidates), which is what the re-rank uses.

The networks and their PCA front end are the shared head (:mod:`.head`); the encoder's linear path
starts from PCA-ITQ and its MLP residual at zero, so training starts from the ITQ codes.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from imagehash_app.core.hashing.base import ProgressFn, StopFn, check_stop, report

# Decoder, Encoder, exact_knn, warmup_cosine and _seeded are imported from here by other modules
# and tests (from before the head had a module of its own).
from imagehash_app.core.hashing.head import (  # noqa: F401
    HEAD_DEFAULTS,
    Decoder,
    Encoder,
    FeatureSpace,
    HeadHasher,
    adamw_warmup_cosine,
    decoder_loss,
    exact_knn,
    neighbour_batches,
    rank_targets,
    seeded,
    warmup_cosine,
)
from imagehash_app.core.hashing.head import seeded as _seeded  # noqa: F401
from imagehash_app.core.hashing.losses import (
    balance_loss,
    decorrelation_loss,
    listwise_kl,
    quantization_loss,
)

DEFAULTS: dict[str, Any] = {
    **HEAD_DEFAULTS,
    "neighbours": 50,  # K of the ground-truth top-K lists
    "code_scale": 12.0,  # code logits = code_scale * h_q . h_c / bits
    "w_quant": 0.05,
    "w_balance": 0.1,
    "w_decor": 0.1,
    "w_recon": 1.0,
}


class URPHHasher(HeadHasher):
    """Rank-preserving MLP hasher with a decoder; see the module docstring."""

    method = "urph"
    trains_on_device = True
    defaults = DEFAULTS

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
        # from its own): seeded, and kept from other threads meanwhile.
        with seeded(seed, exclusive=True):
            if init_from is not None:
                self._copy_from(init_from)
            else:
                self._init_front_end(X, rng, device)
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
        self._record_fit_time(total, seconds)
        if init_from is not None:
            self.meta["warm_start"] = init_from.meta.get("created")
        return self

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
        self.encoder_.to(X.device)
        self.decoder_.to(X.device)
        fs = FeatureSpace.of(X, self.mean_, self.P_, self.scale_)
        bs = max(1, min(int(prm["batch_size"]), n))
        steps = max(1, math.ceil(n / bs)) * max(epochs, 0)
        params = list(self.encoder_.parameters()) + list(self.decoder_.parameters())
        opt, sched = adamw_warmup_cosine(
            params, float(prm["lr"]), float(prm["weight_decay"]), steps
        )
        gen = torch.Generator().manual_seed(seed)
        m = int(prm["neighbours_per_query"])
        self.encoder_.train()
        self.decoder_.train()
        for epoch in range(epochs):
            total, count = 0.0, 0
            for batch, nb in neighbour_batches(n, bs, knn, m, gen, should_stop):
                loss = self._step_loss(fs, batch, nb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * batch.shape[0]
                count += batch.shape[0]
            report(progress, epoch + 1, epochs, total / max(count, 1), started)
        self.encoder_.eval()
        self.decoder_.eval()

    def _step_loss(self, fs: FeatureSpace, batch: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
        """Loss of one batch: queries ``batch`` (b,), their sampled true neighbours ``nb`` (b, m)."""
        prm = self.params
        b, m = nb.shape
        items = torch.cat([batch, nb.reshape(-1)])
        z = self.encoder_(fs.U[items])
        h = torch.tanh(z)
        # Candidate list of query i: its own m neighbours, then the other batch items.
        target, mask = rank_targets(fs.X, batch, nb, float(prm["tau_x"]))
        hq, hn = h[:b], h[b:].reshape(b, m, self.bits)
        code_sim = torch.cat([torch.einsum("bl,bml->bm", hq, hn), hq @ hq.T], dim=1)
        loss = listwise_kl(target, code_sim * (float(prm["code_scale"]) / self.bits), mask)
        loss = loss + float(prm["w_quant"]) * quantization_loss(h)
        loss = loss + float(prm["w_balance"]) * balance_loss(h[:b])
        loss = loss + float(prm["w_decor"]) * decorrelation_loss(h[:b])
        if float(prm["w_recon"]) or float(prm["w_dec_rank"]):
            code = h + (torch.sign(z) - h).detach()  # binary forward, straight-through backward
            loss = loss + decoder_loss(
                self.decoder_, code, fs, batch, nb, target, mask,
                float(prm["w_recon"]), float(prm["w_dec_rank"]),
            )
        return loss
