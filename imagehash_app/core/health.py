"""A library's health: the rolling backup, repair, broken models set aside (low-level errors in
words are core/damage.py's, used here and by the catalogue).

The catalogue is checked with `PRAGMA quick_check` where it matters: before a backup replaces the
previous one (a damaged catalogue must never overwrite a sound backup) and in `repair` (the backup
is checked before it is put back). Opening does not check: on a synthetic 100 000-photo catalogue
(97.5 MB with a full 20 000 x 1280-d reservoir) quick_check takes 0.18 s and the backup 0.45 s
(`python -m benchmarks.sweep_disk_full --levels 0 --quick-check-photos 100000`), fine once per
index run but not for every search; damage met at any other time is reported by SQLite itself and
named by `translate`.

One rolling backup, `catalog.backup.sqlite3`, is written with SQLite's online backup API after an
index run that changed the catalogue: to a temporary name first, then `os.replace`, so that a full
disk or a kill leaves the previous backup (and the catalogue) as they were. Repair moves the damaged
catalogue aside (renamed, never deleted) and either restores the backup or rebuilds an empty
catalogue that keeps the folders list and settings, to be indexed again from the photos.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagehash_app.core.damage import (  # translate(d) re-exported: callers use health.translated
    BACKUP_FILE,
    check_file,
    damaged_error,
    first_line,
    quick_check,
    translate,  # noqa: F401
    translated,  # noqa: F401
)
from imagehash_app.core.errors import (
    DiskFullError,
    LibraryDamagedError,
    disk_full,
    is_disk_full,
)

if TYPE_CHECKING:
    from imagehash_app.core.catalog import Catalog, ModelRow
    from imagehash_app.core.hashing.base import Hasher

CATALOG_FILE = "catalog.sqlite3"  # = catalog.CATALOG_FILE
SET_ASIDE_KEY = "set_aside_models"  # meta key: JSON list of hasher versions set aside, for status
BROKEN_SUFFIX = ".broken"
_SIDE_FILES = ("-wal", "-shm")


def make_backup(conn: sqlite3.Connection, library: Path) -> Path:
    """Replace `<library>/catalog.backup.sqlite3` with a copy of the catalogue behind `conn`.

    Checked first (a damaged catalogue raises LibraryDamagedError and keeps the old backup); written
    to a temporary file then renamed, so a full disk (DiskFullError) or a kill never leaves a
    half-written backup in place of the previous one.
    """
    library = Path(library)
    problem = quick_check(conn)
    if problem is not None:
        raise damaged_error(library, problem)
    target = library / BACKUP_FILE
    tmp = library / f"{BACKUP_FILE}.tmp-{os.getpid()}"
    try:
        dest = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.backup(dest)
            dest.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            dest.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-journal", *_SIDE_FILES))):
            with contextlib.suppress(OSError):
                leftover.unlink()
        if isinstance(exc, (sqlite3.Error, OSError)) and is_disk_full(exc):
            raise DiskFullError(
                f"The catalogue of {library} is up to date, but its backup could not be written: "
                "the disk is full; free some space (the previous backup is kept)."
            ) from exc
        raise
    return target


# --- repair ------------------------------------------------------------------------------------
def _set_damaged_aside(library: Path) -> Path:
    """Rename the catalogue (and its -wal/-shm) to catalog.damaged-<time>.sqlite3; returns it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = library / f"catalog.damaged-{stamp}.sqlite3"
    n = 1
    while kept.exists():
        n += 1
        kept = library / f"catalog.damaged-{stamp}-{n}.sqlite3"
    source = library / CATALOG_FILE
    if source.exists():
        os.replace(source, kept)
    for side in _SIDE_FILES:
        if (library / (CATALOG_FILE + side)).exists():
            os.replace(library / (CATALOG_FILE + side), library / (kept.name + side))
    return kept


def restore_backup(library: Path) -> Path:
    """Put the last backup back as the catalogue; the damaged one is kept renamed (returned).
    The caller holds the writer lock."""
    library = Path(library)
    backup = library / BACKUP_FILE
    problem = check_file(backup)
    if problem is not None:
        raise LibraryDamagedError(
            f"The library at {library} has no usable backup ({problem}); rebuild the catalogue "
            f"from your photos with `imagehash-app --library {library} repair --rebuild`."
        )
    tmp = library / f"{CATALOG_FILE}.restore-{os.getpid()}"
    try:
        src = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
        dest = sqlite3.connect(tmp)
        try:
            src.backup(dest)
        finally:
            dest.close()
            src.close()
        kept = _set_damaged_aside(library)
        os.replace(tmp, library / CATALOG_FILE)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, (sqlite3.Error, OSError)) and is_disk_full(exc):
            raise disk_full(library, exc) from exc
        raise
    return kept


def salvage(path: Path) -> tuple[list[str], dict[str, Any] | None]:
    """What can still be read from a damaged catalogue: (folder paths, settings), best effort."""
    folders: list[str] = []
    settings: dict[str, Any] | None = None
    if not Path(path).is_file():
        return folders, settings
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return folders, settings
    try:
        with contextlib.suppress(sqlite3.Error, ValueError):
            folders = [str(r[0]) for r in conn.execute("SELECT path FROM folders ORDER BY id")]
        with contextlib.suppress(sqlite3.Error, ValueError, TypeError):
            row = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
            settings = json.loads(row[0]) if row else None
    finally:
        conn.close()
    return folders, settings


def rebuild_catalog(library: Path) -> tuple[Path, list[str]]:
    """Start the catalogue afresh, keeping the folders list and settings read from the damaged one
    (or, failing that, from the backup). Returns (where the damaged one was kept, folders).
    The caller holds the writer lock and indexes the folders afterwards."""
    from imagehash_app.core.catalog import Catalog

    library = Path(library)
    folders, settings = salvage(library / CATALOG_FILE)
    if not folders or settings is None:
        more_folders, more_settings = salvage(library / BACKUP_FILE)
        folders = folders or more_folders
        settings = settings if settings is not None else more_settings
    kept = _set_damaged_aside(library)
    cat = Catalog.open(library / CATALOG_FILE)
    try:
        with cat.transaction():
            if settings is not None:
                cat.set_json("settings", settings)
            for folder in folders:
                cat.add_folder(Path(folder))
    finally:
        cat.close()
    return kept, folders


# --- hasher versions that cannot be loaded -----------------------------------------------------
def set_aside_model(cat: Catalog, root: Path, model: ModelRow, reason: str) -> str:
    """Take a hasher version that cannot be loaded out of service: its folder is renamed
    `<dir>.broken` (kept for a person to look at), its row and codes removed, and the fact
    recorded for `status`. Returns the folder's new name, relative to the library."""
    from imagehash_app.core.model_store import UnsafeLibraryPathError, version_path

    root = Path(root).resolve()
    try:  # only a folder of the app's own kind inside the library is renamed
        folder = version_path(root, model.dir)
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


def usable_model(
    cat: Catalog, root: Path, load: Callable[[ModelRow], Hasher], *, writable: bool
) -> tuple[ModelRow, Hasher] | None:
    """The active hasher version and its loaded hasher, setting aside (when `writable`) every
    version that cannot be loaded and falling back to the newest one that can. Read-only, broken
    versions are only skipped. None when no version is usable (the next index run trains one)."""
    from imagehash_app.core.errors import IncompatibleModelError

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
                cat.set_active_model(model.id)
        return model, hasher
    return None


def drop_broken_rows(cat: Catalog) -> int:
    """Delete code rows whose length does not fit their version's bits and reservoir rows whose
    length differs from the others' (a damaged or hand-edited catalogue); the images they belonged
    to are re-encoded or re-embedded by the index run. Returns how many rows went. Reads first
    (0.16 s at 100 000 photos) and writes only when there is something to drop."""
    from imagehash_app.core.reservoir import reservoir_remove

    conn = cat.conn
    bad_codes = conn.execute(
        "SELECT c.image_id, c.model_id FROM codes c JOIN models m ON m.id = c.model_id "
        "WHERE typeof(c.code) != 'blob' OR LENGTH(c.code) != ((m.bits + 63) / 64) * 8"
    ).fetchall()
    common = conn.execute(
        "SELECT LENGTH(feature) FROM reservoir GROUP BY LENGTH(feature) "
        "ORDER BY COUNT(*) DESC LIMIT 1"
    ).fetchone()
    bad_features = [] if common is None else [r[0] for r in conn.execute(
        "SELECT image_id FROM reservoir WHERE typeof(feature) != 'blob' "
        "OR LENGTH(feature) != ? OR LENGTH(feature) % 2 != 0", (common[0],)
    )]
    if not bad_codes and not bad_features:
        return 0
    with cat.transaction():
        conn.executemany("DELETE FROM codes WHERE image_id = ? AND model_id = ?", bad_codes)
        if bad_features:
            reservoir_remove(cat, bad_features)
            conn.executemany(
                "UPDATE images SET status = 'pending', indexed_at = NULL WHERE id = ?",
                [(i,) for i in bad_features],
            )
    return len(bad_codes) + len(bad_features)


