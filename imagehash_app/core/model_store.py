"""Where hasher versions live on disk, which of them a library keeps, and what may be deleted.

Shared by the indexer (automatic training) and the fine-tune lifecycle, so that both prune the same
way and never drop the active version or one a resumable job still needs.

The app only ever deletes what it created. A version's folder is named by the app
(`models/<method>-<12 hex>`) and recorded in the catalogue (meta `versions_started`) *before* it is
written, so that a folder left by a killed training can be recognised as the app's own; anything
else under `models/` is never touched. Graph files are `graph/<model id>.hnsw[.json|.tmp]`; other
names are never touched. Every path read from the catalogue is checked to name such a folder inside
the library: libraries are copied, synced and shared, so the catalogue is input.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from imagehash_app.core.errors import IncompatibleModelError
from imagehash_app.core.store import Catalog, ModelRow

MODELS_DIR = "models"
GRAPH_DIR = "graph"
KEEP_MODELS = 2  # the active hasher version and the one before it (instant roll back)
FINETUNE_PENDING_KEY = "finetune_pending"  # meta key (JSON) of a fine-tune whose re-encode is unfinished
VERSIONS_STARTED_KEY = "versions_started"  # meta key (JSON list): version folders being written

_VERSION_NAME = re.compile(r"[a-z0-9_]{1,32}-[0-9a-f]{12}")
_GRAPH_NAME = re.compile(r"([0-9]{1,18})\.hnsw(?:\.json|\.tmp)?")

log = logging.getLogger(__name__)


class UnsafeLibraryPathError(IncompatibleModelError):
    """The catalogue names a model folder that is not one the app makes inside the library: such
    a version cannot be loaded (and is set aside by a writer, its folder left alone)."""


class SavableHasher(Protocol):
    method: str

    def save(self, directory: Path) -> None: ...


def version_path(root: Path, rel: str) -> Path:
    """The folder of the version stored as `rel` (models.dir), checked to be the app's own kind
    of folder inside the library. Raises UnsafeLibraryPathError otherwise."""
    parts = PurePosixPath(str(rel)).parts
    if len(parts) != 2 or parts[0] != MODELS_DIR or not _VERSION_NAME.fullmatch(parts[1]):
        raise UnsafeLibraryPathError(
            f"The catalogue of {root} names a model folder {rel!r} that imagehash-app does not "
            "make; it is ignored. If you did not edit the library, restore it from a backup."
        )
    path = Path(root) / MODELS_DIR / parts[1]
    base = (Path(root) / MODELS_DIR).resolve()
    if path.exists() and path.resolve().parent != base:
        raise UnsafeLibraryPathError(
            f"The model folder {path} leads outside the library (a link); it is ignored."
        )
    return path


def save_version(cat: Catalog, root: Path, hasher: SavableHasher) -> str:
    """Write a fitted hasher into a new folder of `models/` and return its `models.dir` value.

    The folder is recorded in the catalogue first (its own small transaction), so that a kill
    before the version is registered leaves a folder the next writer knows it may remove.
    """
    rel = f"{MODELS_DIR}/{hasher.method}-{uuid.uuid4().hex[:12]}"
    registered = {m.dir for m in cat.models()}
    with cat.transaction():
        started = [d for d in cat.get_json(VERSIONS_STARTED_KEY, []) if d not in registered]
        cat.set_json(VERSIONS_STARTED_KEY, [*started, rel])
    hasher.save(version_path(root, rel))
    return rel


def is_version_name(name: str) -> bool:
    """Whether `name` is how the app names a version's folder under models/."""
    return _VERSION_NAME.fullmatch(name) is not None


def removable_version_dir(root: Path, rel: str) -> Path | None:
    """`version_path`, and only a real folder (no link on the way) that exists; else None."""
    try:
        path = version_path(root, rel)
    except UnsafeLibraryPathError as exc:
        log.warning("not deleting: %s", exc)
        return None
    models = Path(root) / MODELS_DIR
    if models.is_symlink() or path.is_symlink() or not path.is_dir():
        return None
    return path


def _graph_files(root: Path, model_id: int) -> list[Path]:
    folder = Path(root) / GRAPH_DIR
    if folder.is_symlink():
        return []
    names = (f"{model_id}.hnsw", f"{model_id}.hnsw.json", f"{model_id}.hnsw.tmp")
    return [folder / n for n in names if (folder / n).is_file() and not (folder / n).is_symlink()]


def remove_model_files(root: Path, model: ModelRow) -> None:
    """Delete a dropped version's folder and graph files (rebuildable or no longer wanted)."""
    path = removable_version_dir(root, model.dir)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
    for f in _graph_files(root, model.id):
        f.unlink(missing_ok=True)


def remove_orphans(cat: Catalog, root: Path) -> list[Path]:
    """Remove what a killed writer left: version folders recorded as started but never
    registered, and graph files of versions that no longer exist. Returns what was removed."""
    models = cat.models()
    registered = {m.dir for m in models}
    removed: list[Path] = []
    started = cat.get_json(VERSIONS_STARTED_KEY, [])
    for rel in started:
        if rel in registered:
            continue
        path = removable_version_dir(root, rel)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if started:
        with cat.transaction():
            cat.set_json(VERSIONS_STARTED_KEY, [])
    folder = Path(root) / GRAPH_DIR
    if folder.is_dir() and not folder.is_symlink():
        ids = {m.id for m in models}
        for child in folder.iterdir():
            match = _GRAPH_NAME.fullmatch(child.name)
            if match and int(match.group(1)) not in ids and child.is_file() and not child.is_symlink():
                child.unlink(missing_ok=True)
                removed.append(child)
    return removed


def prune_models(
    cat: Catalog, root: Path, keep: int = KEEP_MODELS, protect: Sequence[int] = ()
) -> list[int]:
    """Drop versions beyond the newest `keep` (never the active one nor `protect`)."""
    models = cat.models()
    safe = {m.id for m in models if m.active} | set(protect)
    kept: list[ModelRow] = [m for m in models if m.id in safe]
    for m in reversed(models):
        if len(kept) >= keep:
            break
        if m.id not in safe:
            kept.append(m)
    drop = [m for m in models if m not in kept]
    if drop:
        with cat.transaction():
            for m in drop:
                cat.delete_model(m.id)
        for m in drop:
            remove_model_files(root, m)
    return [m.id for m in drop]
