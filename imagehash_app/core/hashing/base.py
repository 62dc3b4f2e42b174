"""The one interface every hasher shares, and the helpers the methods have in common.

A hasher turns L2-normalised features (n, d) into packed binary codes (n, ceil(bits / 64)) and
turns codes back into approximate, L2-normalised features (its decoder), so that the engine can
re-rank Hamming candidates without storing any real feature of the library. Weights live in
``weights.safetensors`` and everything a person or the engine needs to judge them (method, bits,
backbone, training size, hyper-parameters, measured metrics) in ``hasher.json``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from imagehash_app.core.codes import pack_signs, unpack_signs, words_for
from imagehash_app.core.errors import CancelledError

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "hasher.json"
# Ridge term of the least-squares decoders: keeps the solve well posed from one sample up.
DECODER_RIDGE = 1e-3


@dataclass(frozen=True)
class TrainProgress:
    """One progress report of a fit: ``epoch`` of ``epochs`` done, current loss, seconds left."""

    epoch: int
    epochs: int
    loss: float
    eta_s: float


ProgressFn = Callable[[TrainProgress], None]
StopFn = Callable[[], bool]


class Hasher(ABC):
    """fit / encode / decode / save; learned state lives in attributes ending in ``_``."""

    method: str = ""
    trains_on_device: bool = False  # fit() takes device="cuda" (a GPU trains it in a fraction)

    def __init__(self, bits: int, feature_dim: int, **params: Any) -> None:
        if bits <= 0 or feature_dim <= 0:
            raise ValueError(f"bits and feature_dim must be positive, got {bits} and {feature_dim}")
        self.bits = int(bits)
        self.feature_dim = int(feature_dim)
        self.params: dict[str, Any] = dict(params)
        self.meta: dict[str, Any] = {
            "backbone": None,
            "train_size": 0,
            "params": self.params,
            "metrics": {},
            "created": None,
        }

    # -- the interface ---------------------------------------------------------------------
    @abstractmethod
    def fit(
        self,
        X: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        seed: int = 0,
    ) -> Hasher:
        """Learn the codes from features ``X`` (n, d), n >= 1; returns self."""

    @abstractmethod
    def project(self, X: np.ndarray) -> np.ndarray:
        """Real-valued code logits (n, bits); the code is their sign."""

    @abstractmethod
    def decode_signs(self, signs: np.ndarray) -> np.ndarray:
        """Approximate features (n, d), not yet normalised, from ±1 codes (n, bits)."""

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """Learned arrays to save; inverse of :meth:`load_state`."""

    @abstractmethod
    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        """Restore the learned arrays written by :meth:`state_dict`."""

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Packed uint64 codes (n, W) of features ``X`` (n, d)."""
        X = self._check_features(X)
        if X.shape[0] == 0:
            return np.zeros((0, words_for(self.bits)), dtype=np.uint64)
        return pack_signs(self.project(X))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """L2-normalised approximate features float32 (n, d) from packed codes (n, W)."""
        signs = unpack_signs(codes, self.bits)
        if signs.shape[0] == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return l2_normalize(self.decode_signs(signs))

    def save(self, directory: Path) -> None:
        """Write ``weights.safetensors`` and ``hasher.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: np.ascontiguousarray(v) for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        doc = {"method": self.method, "bits": self.bits, "feature_dim": self.feature_dim}
        doc.update(self.meta)
        doc["params"] = self.params
        if not doc.get("created"):
            doc["created"] = now_iso()
        (directory / META_FILE).write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")

    # -- helpers for subclasses ------------------------------------------------------------
    def _check_features(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.feature_dim:
            raise ValueError(f"expected features of shape (n, {self.feature_dim}), got {X.shape}")
        return X

    def _start_fit(self, X: np.ndarray) -> np.ndarray:
        """Validate training features and record the training size and time."""
        X = self._check_features(X)
        if X.shape[0] < 1:
            raise ValueError("a hasher needs at least one training sample")
        self.meta["train_size"] = int(X.shape[0])
        self.meta["created"] = now_iso()
        return X

    @classmethod
    def from_saved(cls, doc: dict[str, Any], tensors: dict[str, np.ndarray]) -> Hasher:
        """Rebuild a fitted hasher from its ``hasher.json`` document and weights."""
        hasher = cls(int(doc["bits"]), int(doc["feature_dim"]), **doc.get("params", {}))
        for key in ("backbone", "train_size", "metrics", "created"):
            if key in doc:
                hasher.meta[key] = doc[key]
        for key, value in doc.items():
            if key not in ("method", "bits", "feature_dim", "params") and key not in hasher.meta:
                hasher.meta[key] = value
        hasher.load_state(tensors)
        return hasher


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def now_iso() -> str:
    """UTC timestamp for ``created`` fields."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def random_directions(
    d: int, k: int, rng: np.random.Generator, exclude: np.ndarray | None = None
) -> np.ndarray:
    """``k`` seeded random unit directions (d, k), orthogonal to ``exclude`` (d, m) where they can be.

    Used to complete a projection when the data has fewer principal directions than bits.
    """
    G = rng.standard_normal((d, k)).astype(np.float64)
    m = 0 if exclude is None else exclude.shape[1]
    # Project out the given directions and orthonormalise only while there is room (k <= d - m);
    # beyond that (more bits than dimensions) plain random unit columns are the best we can do.
    if k <= d - m:
        if m:
            Q, _ = np.linalg.qr(exclude.astype(np.float64))
            G -= Q @ (Q.T @ G)
        G, _ = np.linalg.qr(G)
    G /= np.maximum(np.linalg.norm(G, axis=0, keepdims=True), 1e-12)
    return G


def fit_linear_decoder(signs: np.ndarray, X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Least-squares back-projection A (bits, d) with ``X - mean ≈ signs @ A`` (ridge-regularised)."""
    B = signs.astype(np.float64)
    gram = B.T @ B + DECODER_RIDGE * max(B.shape[0], 1) * np.eye(B.shape[1])
    return np.linalg.solve(gram, B.T @ (X.astype(np.float64) - mean)).astype(np.float32)


def check_stop(should_stop: StopFn | None) -> None:
    """Raise :class:`CancelledError` when the caller asked the fit to stop."""
    if should_stop is not None and should_stop():
        raise CancelledError("Training was cancelled; the previous hasher stays in use.")


def report(
    progress: ProgressFn | None, epoch: int, epochs: int, loss: float, started: float
) -> None:
    """Send a :class:`TrainProgress` with an ETA extrapolated from the epochs done so far."""
    if progress is None:
        return
    elapsed = time.perf_counter() - started
    eta = elapsed / max(epoch, 1) * (epochs - epoch)
    progress(TrainProgress(epoch=epoch, epochs=epochs, loss=float(loss), eta_s=float(eta)))


class FitThread:
    """A hasher fit on its own thread, so that a job can go on working while it trains (indexing
    keeps embedding photos) or relay its progress between yields (`fit_in_thread`).

    `fit(progress, should_stop)` runs on the thread; its return value is `result()`. Stopping
    (`cancel()` or the caller's `should_stop`) makes `check_stop` in the fit raise.
    """

    def __init__(self, fit: Callable[[ProgressFn, StopFn], Any], should_stop: StopFn | None) -> None:
        self._reports: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._should_stop = should_stop
        self._outcome: dict[str, Any] = {}
        self._ended = False  # the end-of-fit marker was taken off the queue
        self._thread = threading.Thread(target=self._work, args=(fit,), name="hasher-fit", daemon=True)
        self._thread.start()

    def _stopping(self) -> bool:
        return self._stop.is_set() or bool(self._should_stop and self._should_stop())

    def _work(self, fit: Callable[[ProgressFn, StopFn], Any]) -> None:
        try:
            self._outcome["result"] = fit(self._reports.put, self._stopping)
        except BaseException as exc:  # handed to the caller's thread by result()
            self._outcome["error"] = exc
        finally:
            self._reports.put(_FIT_DONE)

    def done(self) -> bool:
        """The fit has ended (finished, failed or stopped)."""
        return not self._thread.is_alive()

    def reports(self) -> Iterator[TrainProgress]:
        """Every report not yet taken, waiting for new ones until the fit ends."""
        while not self._ended:
            item = self._reports.get()
            if item is _FIT_DONE:
                self._ended = True
            else:
                yield item

    def result(self) -> Any:
        """Wait for the fit; its return value, or the error it raised."""
        self._thread.join()
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome.get("result")

    def cancel(self) -> None:
        """Ask the fit to stop and wait until it has."""
        self._stop.set()
        self._thread.join()


_FIT_DONE = object()


def fit_in_thread(
    fit: Callable[[ProgressFn, StopFn], None], should_stop: StopFn | None
) -> Iterator[TrainProgress]:
    """Run `fit(progress, should_stop)` on a worker thread and yield its reports on this one.

    Lets a generator-based job (indexing, fine-tuning) relay training progress between yields.
    Closing this generator (or `should_stop`) asks the fit to stop and waits for it to end; an
    error raised by the fit is raised here.
    """
    job = FitThread(fit, should_stop)
    try:
        yield from job.reports()
    finally:
        job.cancel()
    job.result()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to hasher.json")
