"""How the seed papers' unsupervised sign-code methods (HARR, DistillHash, DSG, DMUH) train the
shared head (:mod:`.head`) on frozen features: one loop, each method its own objective.

A fit: the PCA front end and the networks (the encoder's linear path from PCA-ITQ by default, as
URPH starts, so that the comparison measures what each objective adds to the same start; ``init``
"random" gives the papers' plain random head), the exact k nearest neighbours of every training
item, then the method's similarity signals (:meth:`_prepare`), then ``epochs`` of the method's
objective on batches of queries plus ``neighbours_per_query`` of each query's neighbours (so that
every batch holds similar pairs), then ``decoder_epochs`` of a decoder trained on the frozen
codes: URPH's decoder and its terms (reconstruction and the asymmetric ranking of decoded
candidates against the real query), so that the engine's re-rank works for every method.
Progress is reported per epoch of both stages.

Choices common to the four (the papers train a CNN end to end on images; here the backbone is
frozen): the head is URPH's (a linear path plus a one-hidden-layer MLP, AdamW with warm-up and
cosine decay), the batch and learning rate are URPH's, and the similarity signals come from the
same features the codes are learned from.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from imagehash_app.core.hashing.base import ProgressFn, StopFn, check_stop, report
from imagehash_app.core.hashing.head import (
    HEAD_DEFAULTS,
    FeatureSpace,
    HeadHasher,
    adamw_warmup_cosine,
    decoder_loss,
    exact_knn,
    neighbour_batches,
    rank_targets,
    seeded,
)

COMMON_DEFAULTS: dict[str, Any] = {
    **HEAD_DEFAULTS,
    "neighbours": 20,  # k of the local structure (kNN lists)
    "decoder_epochs": 10,
}


class UnsupervisedHeadHasher(HeadHasher):
    """The shared fit; subclasses give ``method``, ``defaults``, :meth:`_prepare` and
    :meth:`_batch_loss` (and :meth:`_after_step` where the method updates state per step)."""

    trains_on_device = True

    def fit(
        self,
        X: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        seed: int = 0,
        epochs: int | None = None,
        device: str = "cpu",
    ) -> UnsupervisedHeadHasher:
        """Train on ``X``; ``epochs`` overrides the configured count of the encoder's epochs;
        ``device`` is where the training runs (the fitted networks always come back to the CPU)."""
        started = time.perf_counter()
        X = self._start_fit(X)
        prm = self.params
        epochs = int(prm["epochs"] if epochs is None else epochs)
        dec_epochs = int(prm["decoder_epochs"])
        rng = np.random.default_rng(seed)
        seconds: dict[str, float] = {}
        with seeded(seed):
            self._init_front_end(X, rng, device)
            Xt = torch.from_numpy(np.ascontiguousarray(X)).to(torch.device(device))
            fs = FeatureSpace.of(Xt, self.mean_, self.P_, self.scale_)
            knn = exact_knn(Xt, int(prm["neighbours"]))
            gen = torch.Generator().manual_seed(seed)
            seconds["init"] = time.perf_counter() - started
            self.encoder_.to(Xt.device)
            self.decoder_.to(Xt.device)
            self._prepare(fs, knn, gen)
            seconds["signals"] = time.perf_counter() - started - seconds["init"]
            check_stop(should_stop)
            try:
                self._train_encoder(fs, knn, epochs, dec_epochs, gen, progress, should_stop, started)
                seconds["encoder"] = time.perf_counter() - started - sum(seconds.values())
                self._train_decoder(fs, knn, epochs, dec_epochs, gen, progress, should_stop, started)
            finally:
                self.encoder_.cpu().eval()
                self.decoder_.cpu().eval()
                self._release()
        total = time.perf_counter() - started
        seconds["decoder"] = total - sum(seconds.values())
        self._record_fit_time(total, seconds)
        return self

    # -- what each method gives ------------------------------------------------------------
    def _prepare(self, fs: FeatureSpace, knn: torch.Tensor, gen: torch.Generator) -> None:
        """Compute the method's similarity signals once, before training."""

    @abstractmethod
    def _batch_loss(
        self, fs: FeatureSpace, knn: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """The method's objective on the batch ``items`` (queries, then their neighbours)."""

    def _after_step(self) -> None:
        """Called after every optimiser step of the encoder."""

    def _release(self) -> None:
        """Drop what :meth:`_prepare` kept (the fitted hasher keeps only its networks)."""

    # -- the two stages --------------------------------------------------------------------
    def _train_stage(
        self,
        module: torch.nn.Module,
        batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        after_step: Callable[[], None],
        knn: torch.Tensor,
        epochs: range,
        total_epochs: int,
        gen: torch.Generator,
        progress: ProgressFn | None,
        should_stop: StopFn | None,
        started: float,
    ) -> None:
        """Train ``module`` for ``epochs`` (numbered within ``total_epochs`` for the reports) on
        ``batch_loss(queries, their neighbours)``, AdamW with warm-up and cosine decay."""
        prm = self.params
        n = knn.shape[0]
        bs = max(1, min(int(prm["batch_size"]), n))
        steps = max(1, math.ceil(n / bs)) * max(len(epochs), 0)
        opt, sched = adamw_warmup_cosine(
            list(module.parameters()), float(prm["lr"]), float(prm["weight_decay"]), steps
        )
        m = int(prm["neighbours_per_query"])
        module.train()
        for epoch in epochs:
            total, count = 0.0, 0
            for batch, nb in neighbour_batches(n, bs, knn, m, gen, should_stop):
                loss = batch_loss(batch, nb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                after_step()
                total += float(loss.detach()) * batch.shape[0]
                count += batch.shape[0]
            report(progress, epoch + 1, total_epochs, total / max(count, 1), started)
        module.eval()

    def _train_encoder(
        self, fs: FeatureSpace, knn: torch.Tensor, epochs: int, dec_epochs: int, *args: Any
    ) -> None:
        """The method's objective on batches of queries and their neighbours."""

        def loss(batch: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
            return self._batch_loss(fs, knn, torch.cat([batch, nb.reshape(-1)]))

        self._train_stage(
            self.encoder_, loss, self._after_step, knn, range(epochs), epochs + dec_epochs, *args
        )

    def _train_decoder(
        self, fs: FeatureSpace, knn: torch.Tensor, epochs: int, dec_epochs: int, *args: Any
    ) -> None:
        """URPH's decoder terms, trained on the frozen codes of the training items."""
        with torch.no_grad():
            codes = torch.where(self.encoder_(fs.U) > 0, 1.0, -1.0)
        self._init_decoder_linear(codes.cpu().numpy(), (fs.U * self.scale_).cpu().numpy())
        tau, w_rank = float(self.params["tau_x"]), float(self.params["w_dec_rank"])

        def loss(batch: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
            target, mask = rank_targets(fs.X, batch, nb, tau)
            code = codes[torch.cat([batch, nb.reshape(-1)])]
            return decoder_loss(self.decoder_, code, fs, batch, nb, target, mask, 1.0, w_rank)

        self._train_stage(
            self.decoder_, loss, lambda: None, knn, range(epochs, epochs + dec_epochs),
            epochs + dec_epochs, *args,
        )
