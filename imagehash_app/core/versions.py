"""Hasher versions: where they live on disk, how one is saved, registered, activated, set aside
and pruned, and which photos still lack its code.

Shared by the indexer (automatic training) and the fine-tune lifecycle, so that both register,
switch and prune the same way and never drop the active version or one a resumable job still needs.

The app only ever deletes what it created. A version's folder is named by the app
(`models/<method>-<12 hex>`) and recorded in the catalogue (meta `versions_started`) *before* it is
written, so that a folder left by a killed training can be recognised as the app's own; anything
else under `models/` is never touched (a fit the indexer records in its `fit_pending` record names
its folder there before writing it, to the same effect). Graph files are `graph/<model id>.hnsw[.json|.tmp]`; other
names are never touched. Every path read from the catalogue is checked to name such a folder inside
the library: libraries are copied, synced and shared, so the catalogue is input.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imagehash_app.core.errors import IncompatibleModelError
from imagehash_app.core.store import Catalog, ModelRow

if TYPE_CHECKING:
    from imagehash_app.core.hashing.base import Hasher

MODELS_DIR = "models"
GRAPH_DIR = "graph"
KEEP_MODELS = 2  # the active hasher version and the one before it (instant roll back)
FINETUNE_PENDING_KEY = "finetune_pending"  # meta key (JSON) of a fine-tune whose re-encode is unfinished
VERSIONS_STARTED_KEY = "versions_started"  # meta key (JSON list): version folders being written
SET_ASIDE_KEY = "set_aside_models"  # meta key: JSON list of hasher versions set aside, for status
BROKEN_SUFFIX = ".broken"

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
    return own_folder(root, rel, MODELS_DIR, _VERSION_NAME)


def own_folder(root: Path, rel: str, top: str, name: re.Pattern[str]) -> Path:
    """`root/top/<name>` named by the catalogue as `rel`, checked to be a folder the app makes
    (exactly `top/<a name matching name>`, not a link out of the library) before anything is
    loaded from it or removed. Raises UnsafeLibraryPathError otherwise."""
    parts = PurePosixPath(str(rel)).parts
    if len(parts) != 2 or parts[0] != top or not name.fullmatch(parts[1]):
        raise UnsafeLibraryPathError(
            f"The catalogue of {root} names a model folder {rel!r} that imagehash-app does not "
            "make; it is ignored. If you did not edit the library, restore it from a backup."
        )
    path = Path(root) / top / parts[1]
    base = (Path(root) / top).resolve()
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


# --- save, load, register, activate ----------------------------------------------------------------
def save_recorded(root: Path, hasher: SavableHasher, rel: str) -> None:
    """Write a fitted hasher into `rel`, a folder whose name the caller recorded in the catalogue
    before (the indexer's `fit_pending`); a killed try left there is overwritten."""
    hasher.save(version_path(root, rel))


def load_version(root: Path, model: ModelRow, expect_feature_dim: int | None = None) -> Hasher:
    """The hasher of a registered version (raises IncompatibleModelError when it cannot be used)."""
    from imagehash_app.core.hashing import load_hasher

    return load_hasher(
        version_path(root, model.dir), expect_feature_dim=expect_feature_dim,
        expect_backbone=model.backbone,
    )


def load_query_version(root: Path, model: ModelRow) -> Hasher:
    """The encoder and decoder of a registered version for searches: in numpy (no PyTorch) for
    every method `hashing.query_side` knows, else the full hasher (`load_version`)."""
    from imagehash_app.core.hashing.query_side import load_query_hasher

    query = load_query_hasher(version_path(root, model.dir), expect_backbone=model.backbone)
    return query if query is not None else load_version(root, model)  # type: ignore[return-value]


def register(
    cat: Catalog, *, method: str, bits: int, backbone: str, rel: str, train_size: int, note: str,
    image_ids: Sequence[int], codes: np.ndarray, then: Callable[[int], None] | None = None,
) -> int:
    """Add a saved version's row (inactive) with its codes of `image_ids`, and whatever `then`
    (given the new id) does, in one transaction: a kill leaves no half-registered version, only
    a folder the next writer removes. Returns the version's id."""
    with cat.transaction():
        weights_id = cat.weights_id() or ""
        model_id = cat.add_model(method, bits, backbone, weights_id, rel, train_size, note)
        cat.put_codes(model_id, image_ids, codes)
        if then is not None:
            then(model_id)
    return model_id


def activate(cat: Catalog, model_id: int) -> None:
    """Make a version the one that answers searches; call inside the transaction that gave it
    its missing codes (`missing_codes`)."""
    cat.set_active_model(model_id)


# --- codes still missing ---------------------------------------------------------------------------
def missing_codes(
    cat: Catalog, model_id: int, *, sampled_only: bool = False, limit: int = -1, after: int = 0
) -> list[int]:
    """Embedded photos without a code of `model_id`, in id order. `sampled_only`: only those kept
    in the reservoir (a version codes them exactly from their stored feature); otherwise all of
    them, the first `limit` (-1: all) with an id above `after`."""
    if sampled_only:
        return cat.sampled_missing_codes(model_id)
    return cat.missing_codes(model_id, limit, after)


def encode_sampled(cat: Catalog, model_id: int, get_hasher: Callable[[], Hasher]) -> int:
    """Give a code of `model_id` to every embedded reservoir photo that lacks one, from its stored
    feature; returns how many. Call inside a transaction; the hasher is loaded only when needed."""
    missing = missing_codes(cat, model_id, sampled_only=True)
    if not missing:
        return 0
    feats = cat.reservoir_features(missing)
    cat.put_codes(model_id, missing, get_hasher().encode(np.stack([feats[i] for i in missing])))
    return len(missing)


def discard_unregistered(cat: Catalog, root: Path, name: str) -> None:
    """Remove the folder `models/<name>` that a killed fit began, when its name was recorded (the
    caller's record) and no registered version uses it."""
    rel = f"{MODELS_DIR}/{name}"
    if not is_version_name(name) or rel in {m.dir for m in cat.models()}:
        return
    folder = removable_version_dir(root, rel)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


# --- versions that cannot be loaded ----------------------------------------------------------------
def set_aside_model(cat: Catalog, root: Path, model: ModelRow, reason: str) -> str:
    """Take a hasher version that cannot be loaded out of service: its folder is renamed
    `<dir>.broken` (kept for a person to look at), its row and codes removed, and the fact
    recorded for `status`. Returns the folder's new name, relative to the library."""
    root = Path(root).resolve()
    try:  # only a folder of the app's own kind inside the library is renamed
        folder: Path | None = version_path(root, model.dir)
    except UnsafeLibraryPathError:
        folder = None
    new_dir = ""
    if folder is not None and not folder.is_symlink() and folder.is_dir():
        target = folder.with_name(folder.name + BROKEN_SUFFIX)
        n = 1
        while target.exists():
            n += 1
            target = folder.with_name(f"{folder.name}{BROKEN_SUFFIX}{n}")
        with contextlib.suppress(OSError):
            os.replace(folder, target)
            new_dir = target.relative_to(root).as_posix()
    with cat.transaction():
        cat.delete_model(model.id)
        records = cat.get_json(SET_ASIDE_KEY, []) or []
        records.append({
            "id": model.id, "method": model.method, "dir": model.dir, "kept_as": new_dir,
            "reason": reason, "when": time.time(),
        })
        cat.set_json(SET_ASIDE_KEY, records[-20:])
    return new_dir


def set_aside_records(cat: Catalog) -> list[dict]:
    """What `set_aside_model` recorded, oldest first (nothing when the record is unreadable)."""
    try:
        records = cat.get_json(SET_ASIDE_KEY, [])
    except ValueError:
        return []
    return records if isinstance(records, list) else []


def usable_model(
    cat: Catalog, root: Path, load: Callable[[ModelRow], Hasher], *, writable: bool
) -> tuple[ModelRow, Hasher] | None:
    """The active hasher version and its loaded hasher, setting aside (when `writable`) every
    version that cannot be loaded and falling back to the newest one that can. Read-only, broken
    versions are only skipped. None when no version is usable (the next index run trains one)."""
    from imagehash_app.core.health import first_line

    models = cat.models()
    active = next((m for m in models if m.active), None)
    if active is None:
        return None
    candidates = [active] + [m for m in reversed(models) if not m.active]
    for model in candidates:
        try:
            hasher = load(model)
        except IncompatibleModelError as exc:
            if writable:
                set_aside_model(cat, root, model, first_line(exc))
            continue
        if model is not active and writable:
            with cat.transaction():
                activate(cat, model.id)
        return model, hasher
    return None
