"""Binary hashers behind one interface: a registry, a factory and a loader that checks compatibility.

The methods' modules (and PyTorch with them) are imported on first use, so that code needing only
the names or the interface — the command line's start-up, decode worker processes — stays light.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from safetensors.numpy import load_file

from imagehash_app.core.errors import IncompatibleModelError
from imagehash_app.core.hashing.base import META_FILE, WEIGHTS_FILE, Hasher, TrainProgress

# method name -> (module, class)
METHODS: dict[str, tuple[str, str]] = {
    "urph": ("imagehash_app.core.hashing.urph", "URPHHasher"),
    "itq": ("imagehash_app.core.hashing.baselines", "ITQHasher"),
    "lsh": ("imagehash_app.core.hashing.baselines", "LSHHasher"),
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
    """Load a saved hasher; raise :class:`IncompatibleModelError` when it does not fit the library."""
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
            f"The hasher description {meta_path} is unreadable ({exc}); train a new one."
        ) from exc
    method = doc.get("method")
    if method not in METHODS:
        raise IncompatibleModelError(
            f"The hasher in {directory} uses an unknown method {method!r}; train a new one."
        )
    if expect_feature_dim is not None and int(doc.get("feature_dim", -1)) != int(
        expect_feature_dim
    ):
        raise IncompatibleModelError(
            f"The hasher in {directory} expects {doc.get('feature_dim')}-d features but the library's backbone "
            f"gives {expect_feature_dim}-d; train a new hasher for this backbone."
        )
    if expect_backbone is not None and doc.get("backbone") not in (None, expect_backbone):
        raise IncompatibleModelError(
            f"The hasher in {directory} was trained on {doc.get('backbone')!r} features, not {expect_backbone!r}; "
            "train a new hasher for this backbone."
        )
    return hasher_class(method).from_saved(doc, load_file(str(weights_path)))
