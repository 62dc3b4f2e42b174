"""Typed rows the store hands out: what the rest of the engine knows of the catalogue's tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagehash_app.core.stored_paths import StoredPath, from_db

STATUSES = ("indexed", "pending", "skipped", "offline")


@dataclass(frozen=True)
class FolderRow:
    id: int
    path: Path
    added: float


@dataclass(frozen=True)
class ModelRow:
    """A registered hasher version; its files are in `<library>/<dir>`."""

    id: int
    method: str
    bits: int
    backbone: str
    weights_id: str
    created: float
    active: bool
    dir: str
    train_size: int
    note: str


@dataclass(frozen=True)
class ImageRow:
    """What a scan compares a file on disk with: a folder's image as stored."""

    id: int
    rel_path: str
    size: int
    mtime_ns: int
    fingerprint: str | None


def join(folder: StoredPath, rel: StoredPath) -> Path:
    """The absolute path of an image from its stored folder path and relative path."""
    return Path(from_db(folder)) / from_db(rel)
