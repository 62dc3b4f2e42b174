"""The query side of a saved hasher (encode a query, decode candidates) in numpy, without PyTorch.

A search needs only the encoder and the decoder of the active version, and for every method but
deepquan they are small MLPs or matrices: read from ``weights.safetensors`` and applied here with
numpy, they give the same codes and features as the PyTorch modules (checked in
tests/core/test_query_side.py), and a query never imports PyTorch. GELU uses an erf approximation
with absolute error below 1.5e-7 (Abramowitz & Stegun 7.1.26; below 5e-7 in float32).
A method this module does not know (deepquan) gives None: the caller loads the full hasher.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from imagehash_app.core.codes import pack_signs, unpack_signs, words_for
from imagehash_app.core.hashing.base import META_FILE, WEIGHTS_FILE, l2_normalize

LINEAR = frozenset({"itq", "lsh"})
HEAD = frozenset({"urph", "harr", "distillhash", "dsg", "dmuh"})  # head.HeadHasher
SUPERVISED = frozenset({"dsh", "dpsh", "dsdh"})  # supervised.SupervisedHasher
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which the head's networks use
BLOCK = 8192  # rows at a time, as the PyTorch hashers do: bounded scratch


_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))


def erf(x: np.ndarray) -> np.ndarray:
    """erf, elementwise, in float32 (Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, then float32
    rounding; the decoder's GELU runs on every re-ranked candidate, so it must be cheap)."""
    x = np.asarray(x, np.float32)
    a = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + _ERF_P * a)
    poly = _ERF_A[0]
    for coef in _ERF_A[1:]:
        poly = poly * t + coef
    y = np.float32(1.0) - poly * t * np.exp(-a * a)
    return np.copysign(y, x)


_SQRT_HALF = np.float32(np.sqrt(0.5))


def gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU() (the exact, erf form), float32."""
    x = np.asarray(x, np.float32)
    return np.float32(0.5) * x * (np.float32(1.0) + erf(x * _SQRT_HALF))


class _Mlp:
    """linear(x) + Linear -> LayerNorm -> GELU -> Linear (x): head.Encoder and head.Decoder."""

    def __init__(self, t: dict[str, np.ndarray], prefix: str) -> None:
        def get(name: str) -> np.ndarray:
            return np.asarray(t[prefix + name], np.float32)

        self.lin_w, self.lin_b = get("linear.weight").T.copy(), get("linear.bias")
        self.w0, self.b0 = get("mlp.0.weight").T.copy(), get("mlp.0.bias")
        self.ln_w, self.ln_b = get("mlp.1.weight"), get("mlp.1.bias")
        self.w3, self.b3 = get("mlp.3.weight").T.copy(), get("mlp.3.bias")
        self.in_dim, self.out_dim = self.lin_w.shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x @ self.w0 + self.b0
        mu = h.mean(axis=1, keepdims=True)
        var = ((h - mu) ** 2).mean(axis=1, keepdims=True)
        h = (h - mu) / np.sqrt(var + LAYER_NORM_EPS) * self.ln_w + self.ln_b
        return (x @ self.lin_w + self.lin_b) + gelu(h) @ self.w3 + self.b3


class QueryHasher:
    """`encode` and `decode` of a saved hasher, as `Hasher` has them; nothing to fit or save."""

    def __init__(self, method: str, bits: int, feature_dim: int, t: dict[str, np.ndarray]) -> None:
        self.method = method
        self.bits = bits
        self.feature_dim = feature_dim
        self.mean = np.asarray(t["mean"], np.float32)
        if method in LINEAR:
            self.W = np.asarray(t["W"], np.float32)
            self.A = np.asarray(t["A"], np.float32)
            self.encoder = self.decoder = None
        else:
            self.P = np.asarray(t["P"], np.float32)
            self.scale = float(np.asarray(t["scale"]).reshape(-1)[0])
            self.encoder = _Mlp(t, "encoder.")
            self.decoder = _Mlp(t, "decoder.") if method in HEAD else None
            self.A = np.asarray(t["A"], np.float32) if method in SUPERVISED else None
        self._check_shapes()

    def _check_shapes(self) -> None:
        code = self.encode(np.zeros((1, self.feature_dim), np.float32))
        decoded = self.decode(code)
        if code.shape != (1, words_for(self.bits)) or decoded.shape != (1, self.feature_dim):
            raise ValueError(f"weights give codes {code.shape} and features {decoded.shape}")

    def project(self, X: np.ndarray) -> np.ndarray:
        """Real-valued code logits (n, bits); the code is their sign."""
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.feature_dim:
            raise ValueError(f"expected features of shape (n, {self.feature_dim}), got {X.shape}")
        with one_blas_thread():
            if self.encoder is None:
                return (X - self.mean) @ self.W
            out = np.empty((X.shape[0], self.bits), np.float32)
            for start in range(0, X.shape[0], BLOCK):
                u = (X[start : start + BLOCK] - self.mean) @ self.P / np.float32(self.scale)
                out[start : start + u.shape[0]] = self.encoder(u)
            return out

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Packed uint64 codes (n, W) of features X (n, d)."""
        if np.shape(X)[0] == 0:
            return np.zeros((0, words_for(self.bits)), dtype=np.uint64)
        return pack_signs(self.project(X))

    def decode_signs(self, signs: np.ndarray) -> np.ndarray:
        """Approximate features (n, d), not yet normalised, from ±1 codes (n, bits)."""
        signs = signs.astype(np.float32)
        with one_blas_thread():
            if self.decoder is None:
                return signs @ self.A + self.mean
            out = np.empty((signs.shape[0], self.feature_dim), np.float32)
            for start in range(0, signs.shape[0], BLOCK):
                y = self.decoder(signs[start : start + BLOCK])
                out[start : start + y.shape[0]] = y @ self.P.T + self.mean
            return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """L2-normalised approximate features float32 (n, d) from packed codes (n, W)."""
        signs = unpack_signs(codes, self.bits)
        if signs.shape[0] == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return l2_normalize(self.decode_signs(signs))


_CONTROLLER = None  # threadpoolctl.ThreadpoolController, made on first use (it scans libraries)
_CONTROLLER_LOCK = threading.Lock()


def one_blas_thread():
    """A context in which numpy's BLAS runs on one thread. These products are small: split over
    two threads, each waits for the other to be scheduled, and beside busy cores (an index run,
    other programs) a 0.1 ms product took 25-60 ms; on one thread it stays at 0.1 ms."""
    global _CONTROLLER
    with _CONTROLLER_LOCK:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def supported(method: str) -> bool:
    return method in LINEAR or method in HEAD or method in SUPERVISED


def load_query_hasher(
    directory: Path, expect_feature_dim: int | None = None, expect_backbone: str | None = None
) -> QueryHasher | None:
    """The saved hasher in `directory` for queries, or None when this module cannot give it
    (an unknown method, unreadable or unexpected files): the caller then loads it in full, and
    `hashing.load_hasher` says in words what is wrong."""
    directory = Path(directory)
    try:
        doc = json.loads((directory / META_FILE).read_text())
        method = doc["method"]
        if not isinstance(method, str) or not supported(method):
            return None
        feature_dim = int(doc["feature_dim"])
        if expect_feature_dim is not None and feature_dim != int(expect_feature_dim):
            return None
        if expect_backbone is not None and doc.get("backbone") not in (None, expect_backbone):
            return None
        return QueryHasher(method, int(doc["bits"]), feature_dim, load_file(str(directory / WEIGHTS_FILE)))
    except Exception:  # anything unexpected: the full loader judges the files
        return None
