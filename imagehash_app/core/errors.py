"""Errors the engine raises on purpose. Each message is written for a person: what happened, what to do.

Low-level failures (SQLite, the file system, safetensors) are translated into these at the engine's
boundary, where it is known what was being done, so that the CLI and the window say the same thing.
"""

from __future__ import annotations

import errno
import sqlite3


class ImagehashError(Exception):
    """Base of every error the engine raises on purpose; the CLI and GUI show its message as is."""


class LibraryLockedError(ImagehashError):
    """Another process holds the library's writer lock."""


class WeightsUnavailableError(ImagehashError):
    """Pretrained backbone weights could not be found or downloaded."""


class ImageDecodeError(ImagehashError):
    """A file could not be decoded as an image; `reason` is the short text recorded for it."""

    def __init__(self, reason: str, path: object | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path is not None else reason)


class IncompatibleModelError(ImagehashError):
    """A saved hasher does not match the library (backbone or feature size differ), or its files
    cannot be read as a hasher at all."""


class CancelledError(ImagehashError):
    """A long job stopped because the caller asked it to."""


class LibraryDamagedError(ImagehashError):
    """The library's catalogue (or the folder given as a library) cannot be used as one."""


class DiskFullError(ImagehashError):
    """A write failed because the disk (or the user's quota) is full; nothing half-written is kept."""


_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, says the disk or the quota is full:
    ENOSPC / EDQUOT from the OS, SQLITE_FULL from SQLite, or the same words from a library
    (safetensors, Pillow) that turned the OS error into its own."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        text = str(exc).lower()
        if any(t in text for t in _FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full(where: object, exc: BaseException | None = None) -> DiskFullError:
    """The one sentence for a full disk while writing to `where`."""
    err = DiskFullError(
        f"The disk holding {where} is full; free some space and try again "
        "(work finished so far is kept)."
    )
    err.__cause__ = exc
    return err


def is_damaged_database(exc: BaseException) -> bool:
    """SQLite's words for a file that is not a sound database (garbage, truncated, malformed)."""
    if not isinstance(exc, sqlite3.DatabaseError) or is_disk_full(exc):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or type(exc) is sqlite3.DatabaseError
