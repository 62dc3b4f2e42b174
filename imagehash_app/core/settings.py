"""Settings of a library and where libraries live on disk.

Settings are stored with the library (catalogue `meta` table) so that the CLI and the window,
run on the same library, agree on backbone, code length and search depth.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "imagehash_app"
LIBRARY_ENV = "IMAGEHASH_APP_LIBRARY"

# Settings that decide what a stored code means: fixed once the library holds indexed photos.
IDENTITY_FIELDS = ("backbone", "weights", "bits")


@dataclass
class LibrarySettings:
    """Per-library settings; `backbone`, `weights` and `bits` are chosen at creation and kept."""

    backbone: str = "mobilenet_v2"
    weights: str = "auto"  # "auto" (torchvision pretrained), "none" (tests only) or a local file
    bits: int = 64
    device: str = "auto"
    rerank_depth: int = 200  # R: Hamming candidates re-ranked with the decoder
    reservoir_size: int = 20_000  # real features kept (float16) to train the hasher
    exclude_patterns: list[str] = field(default_factory=list)
    threads: int | None = None  # decode workers; None = chosen by the pipeline
    seed: int = 0
    train_min: int = 1000  # below this many photos the hasher is PCA-ITQ (fallback)
    batch_size: int = 32
    # Extra hyper-parameters per hashing method, e.g. {"urph": {"epochs": 20}}.
    hasher_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Duplicates (issue 15): the keeper rule ("pixels,compression,format,date", any order) and
    # the folders whose photos are always kept and never touched.
    duplicate_keep: str = "pixels,compression,format,date"
    reference_folders: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, as stored in the catalogue."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LibrarySettings:
        """Build from stored JSON, ignoring keys written by newer or older versions."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> None:
        """Reject values the engine cannot work with, with a message for a person."""
        from imagehash_app.core.errors import ImagehashError

        if self.bits not in (16, 32, 64, 128):
            raise ImagehashError(f"Code length must be 16, 32, 64 or 128 bits, not {self.bits}.")
        if self.rerank_depth < 1:
            raise ImagehashError("rerank_depth must be at least 1.")
        if self.reservoir_size < 1:
            raise ImagehashError("reservoir_size must be at least 1.")
        if self.batch_size < 1:
            raise ImagehashError("batch_size must be at least 1.")
        try:
            from imagehash_app.core.duplicates.report import KeeperRule

            KeeperRule.parse(self.duplicate_keep)
        except ValueError as exc:
            raise ImagehashError(str(exc)) from exc
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ImagehashError(f"Device must be auto, cpu, cuda or mps, not {self.device!r}.")


def default_library_dir() -> Path:
    """The library used when none is named: $IMAGEHASH_APP_LIBRARY, else the user data dir."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "library"
