"""Low-level failures in words: a damaged catalogue, a full disk, a read-only folder, each turned
into the person-facing error (core/errors.py) that both faces show as one sentence.

Below the catalogue and the repairs of core/health.py, which use it: it imports neither.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

from imagehash_app.core.errors import (
    ImagehashError,
    LibraryDamagedError,
    disk_full,
    is_damaged_database,
    is_disk_full,
)

BACKUP_FILE = "catalog.backup.sqlite3"


# --- errors in words ---------------------------------------------------------------------------
def first_line(exc: BaseException) -> str:
    """The exception's text on one line, for a sentence (details go to the log)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def damaged_error(library: Path, detail: str) -> LibraryDamagedError:
    """The sentence for a damaged catalogue, with the way out this library has."""
    lib = Path(library)
    cmd = f"imagehash-app --library {lib} repair"
    if (lib / BACKUP_FILE).is_file():
        way = (f"restore its last backup with `{cmd} --restore-backup` or rebuild it from your "
               f"photos with `{cmd} --rebuild` (both keep the damaged file)")
    else:
        way = f"rebuild it from your photos with `{cmd} --rebuild` (it keeps the damaged file)"
    return LibraryDamagedError(f"The catalogue of the library at {lib} is damaged ({detail}); {way}.")


def translate(
    exc: BaseException, library: Path, *, opening: bool = False
) -> ImagehashError | None:
    """The person-facing error for a low-level failure at `library`, or None when it is not one
    of ours to name (the caller re-raises it). `opening`: always give an error (the library could
    not be opened, whatever the reason)."""
    if isinstance(exc, ImagehashError):
        return exc
    lib = Path(library)
    if is_disk_full(exc) or (_is_io_error(exc) and _nearly_full(lib)):
        return disk_full(lib, exc)
    if is_damaged_database(exc):
        return damaged_error(lib, first_line(exc))
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return ImagehashError(
            f"The library at {lib} is on a read-only disk; searching works, but changing it needs "
            "a writable folder (copy the library elsewhere and use --library)."
        )
    if isinstance(exc, PermissionError) or (
        isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc)
    ):
        return ImagehashError(
            f"The library at {lib} cannot be written ({first_line(exc)}); check that you own the "
            "folder and its files, or use another one with --library."
        )
    if opening:
        return ImagehashError(
            f"The library at {lib} cannot be opened ({first_line(exc)}); check that the folder "
            "exists and is readable, or use another one with --library."
        )
    return None


LOW_SPACE_BYTES = 1 << 20  # an I/O error with less free than this is taken for a full disk


def _is_io_error(exc: BaseException) -> bool:
    """SQLite's SQLITE_IOERR family: on a full disk it is what a failed `-shm` or journal
    extension gives instead of SQLITE_FULL."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == sqlite3.SQLITE_IOERR


def _nearly_full(path: Path) -> bool:
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize < LOW_SPACE_BYTES
    return False


# --- checking ----------------------------------------------------------------------------------
def quick_check(conn: sqlite3.Connection) -> str | None:
    """None when SQLite's `quick_check` finds the database sound, else its first complaint."""
    from imagehash_app.core.store import maintenance

    try:
        first = maintenance.quick_check(conn)
    except sqlite3.DatabaseError as exc:
        if is_disk_full(exc):
            raise
        return first_line(exc)
    return None if first == "ok" else first


def check_file(path: Path) -> str | None:
    """quick_check of the database file at `path` (opened read-only); None when sound."""
    from imagehash_app.core.store import maintenance

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return "the file is missing or empty"
    try:
        conn = maintenance.open_read_only(path)
    except sqlite3.Error as exc:
        return first_line(exc)
    try:
        return quick_check(conn)
    finally:
        conn.close()


# --- the rolling backup ------------------------------------------------------------------------


@contextlib.contextmanager
def translated(library: Path):
    """Re-raise a low-level failure inside the block as the person-facing error `translate`
    gives (a full disk, a damaged catalogue, a read-only folder); anything else unchanged."""
    try:
        yield
    except ImagehashError:
        raise
    except Exception as exc:
        err = translate(exc, library) if isinstance(exc, (sqlite3.Error, OSError)) else (
            disk_full(Path(library), exc) if is_disk_full(exc) else None
        )
        if err is None:
            raise
        raise err from exc
