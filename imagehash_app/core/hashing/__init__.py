"""Binary hashers behind one interface: a registry, a factory and a loader that checks compatibility.

The methods' modules (and PyTorch with them) are imported on first use, so that code needing only
the names or the interface — the command line's start-up, decode worker processes — stays light.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from imagehash_app.core.codes import words_for
from imagehash_app.core.errors import IncompatibleModelError
from imagehash_app.core.hashing.base import META_FILE, WEIGHTS_FILE, Hasher, TrainProgress

# method name -> (module, class)
METHODS: dict[str, tuple[str, str]] = {
    "urph": ("imagehash_app.core.hashing.urph", "URPHHasher"),
    "itq": ("imagehash_app.core.hashing.baselines", "ITQHasher"),
    "lsh": ("imagehash_app.core.hashing.baselines", "LSHHasher"),
    "harr": ("imagehash_app.core.hashing.harr", "HARRHasher"),
    "distillhash": ("imagehash_app.core.hashing.distillhash", "DistillHashHasher"),
    "dsg": ("imagehash_app.core.hashing.dsg", "DSGHasher"),
    "dmuh": ("imagehash_app.core.hashing.dmuh", "DMUHHasher"),
    "deepquan": ("imagehash_app.core.hashing.deepquan", "DeepQuanHasher"),
    "dsh": ("imagehash_app.core.hashing.supervised", "DSHHasher"),
    "dpsh": ("imagehash_app.core.hashing.supervised", "DPSHHasher"),
    "dsdh": ("imagehash_app.core.hashing.supervised", "DSDHHasher"),
}

__all__ = ["METHODS", "Hasher", "TrainProgress", "hasher_class", "load_hasher", "make_hasher"]


def hasher_class(method: str) -> type[Hasher]:
    """The class of ``method`` (one of :data:`METHODS`), imported now."""
    try:
        module, name = METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown hashing method {method!r}; choose one of {', '.join(METHODS)}"
        ) from None
    return getattr(importlib.import_module(module), name)


def make_hasher(method: str, bits: int, feature_dim: int, **params: Any) -> Hasher:
    """A new, unfitted hasher of ``method`` (one of :data:`METHODS`)."""
    return hasher_class(method)(bits, feature_dim, **params)


def load_hasher(
    directory: Path, expect_feature_dim: int | None = None, expect_backbone: str | None = None
) -> Hasher:
    """Load a saved hasher; raise :class:`IncompatibleModelError` when it does not fit the library
    or its files cannot be read as a hasher (garbage, empty or wrong-shape weights, nonsense JSON):
    a version that cannot be loaded is the caller's to set aside, never a traceback."""
    directory = Path(directory)
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise IncompatibleModelError(
            f"No hasher found in {directory} (expected {META_FILE} and {WEIGHTS_FILE}); train a new one."
        )
    try:
        doc = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise IncompatibleModelError(
            f"The hasher description {meta_path} is unreadable ({_one_line(exc)}); train a new one."
        ) from exc
    if not isinstance(doc, dict):
        raise IncompatibleModelError(
            f"The hasher description {meta_path} is not a hasher description; train a new one."
        )
    method = doc.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise IncompatibleModelError(
            f"The hasher in {directory} uses an unknown method {method!r}; train a new one."
        )
    try:
        feature_dim = int(doc.get("feature_dim", -1))
    except (TypeError, ValueError):
        feature_dim = -1
    if expect_feature_dim is not None and feature_dim != int(expect_feature_dim):
        raise IncompatibleModelError(
            f"The hasher in {directory} expects {doc.get('feature_dim')}-d features but the library's backbone "
            f"gives {expect_feature_dim}-d; train a new hasher for this backbone."
        )
    if expect_backbone is not None and doc.get("backbone") not in (None, expect_backbone):
        raise IncompatibleModelError(
            f"The hasher in {directory} was trained on {doc.get('backbone')!r} features, not {expect_backbone!r}; "
            "train a new hasher for this backbone."
        )
    try:
        hasher = hasher_class(method).from_saved(doc, load_file(str(weights_path)))
        if feature_dim > 0:  # encoding and decoding one feature proves the weights' shapes fit
            code = hasher.encode(np.zeros((1, feature_dim), dtype=np.float32))
            decoded = np.asarray(hasher.decode(code))
            if code.shape != (1, words_for(hasher.bits)) or decoded.shape != (1, feature_dim):
                raise ValueError(f"weights give codes {code.shape} and features {decoded.shape}")
    except IncompatibleModelError:
        raise
    except Exception as exc:  # safetensors' own errors, KeyError, shape mismatches, bad JSON values
        raise IncompatibleModelError(
            f"The hasher in {directory} cannot be loaded ({_one_line(exc)}); it will be set aside "
            "and a new one trained on the next `imagehash-app index`."
        ) from exc
    return hasher


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]
