"""A library's health: the rolling backup, repair, broken rows dropped.

(Low-level errors in words are core/damage.py's, used here and by the store; hasher versions that
cannot be loaded are set aside by core/versions.py.)

The catalogue is checked with SQLite's `quick_check` where it matters: before a backup replaces the
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
import os
import sqlite3
import time
from pathlib import Path

from imagehash_app.core.damage import (  # noqa: F401 (re-exported: the faces' error boundary)
    BACKUP_FILE,
    check_file,
    damaged_error,
    first_line,
    quick_check,
    translate,
    translated,
)
from imagehash_app.core.errors import (
    DiskFullError,
    LibraryDamagedError,
    disk_full,
    is_disk_full,
)
from imagehash_app.core.store import Catalog, maintenance

CATALOG_FILE = "catalog.sqlite3"  # = store.CATALOG_FILE
_SIDE_FILES = ("-wal", "-shm")


# --- the rolling backup ------------------------------------------------------------------------
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
        maintenance.copy_to(conn, tmp)
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
        maintenance.copy_file(backup, tmp)
        kept = _set_damaged_aside(library)
        os.replace(tmp, library / CATALOG_FILE)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, (sqlite3.Error, OSError)) and is_disk_full(exc):
            raise disk_full(library, exc) from exc
        raise
    return kept


salvage = maintenance.salvage  # what can be read from a damaged catalogue


def rebuild_catalog(library: Path) -> tuple[Path, list[str]]:
    """Start the catalogue afresh, keeping the folders list and settings read from the damaged one
    (or, failing that, from the backup). Returns (where the damaged one was kept, folders).
    The caller holds the writer lock and indexes the folders afterwards."""
    library = Path(library)
    folders, settings = maintenance.salvage(library / CATALOG_FILE)
    if not folders or settings is None:
        more_folders, more_settings = maintenance.salvage(library / BACKUP_FILE)
        folders = folders or more_folders
        settings = settings if settings is not None else more_settings
    kept = _set_damaged_aside(library)
    cat = Catalog.open(library / CATALOG_FILE)
    try:
        with cat.transaction():
            if settings is not None:
                cat.set_settings_doc(settings)
            for folder in folders:
                cat.add_folder(Path(folder))
    finally:
        cat.close()
    return kept, folders


def drop_broken_rows(cat: Catalog) -> int:
    """Delete code rows whose length does not fit their version's bits and reservoir rows whose
    length differs from the others' (a damaged or hand-edited catalogue); the images they belonged
    to are re-encoded or re-embedded by the index run. Returns how many rows went. Reads first
    (0.16 s at 100 000 photos) and writes only when there is something to drop."""
    from imagehash_app.core.reservoir import reservoir_remove

    bad_codes = cat.broken_codes()
    bad_features = cat.broken_feature_ids()
    if not bad_codes and not bad_features:
        return 0
    with cat.transaction():
        cat.delete_codes(bad_codes)
        if bad_features:
            reservoir_remove(cat, bad_features)
            cat.requeue(bad_features)
    return len(bad_codes) + len(bad_features)
