"""Whole-file work on a catalogue: integrity check, copies (backup, restore), salvage.

The policy (when to back up, what to tell the person, where files go) is core/health.py's; this
module only speaks to SQLite.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any


def open_read_only(path: Path) -> sqlite3.Connection:
    """A plain read-only connection to the database file at `path` (raises sqlite3.Error)."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def quick_check(conn: sqlite3.Connection) -> str:
    """The first line of `PRAGMA quick_check` ('ok' when sound); raises sqlite3.DatabaseError
    when the check cannot even run."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    return str(rows[0][0]) if rows else "no answer"


def copy_to(conn: sqlite3.Connection, target: Path) -> None:
    """Copy the database behind `conn` into the new file `target` (SQLite's online backup),
    left in rollback-journal mode: one self-contained file."""
    dest = sqlite3.connect(target, isolation_level=None)
    try:
        conn.backup(dest)
        dest.execute("PRAGMA journal_mode = DELETE")
    finally:
        dest.close()


def copy_file(source: Path, target: Path) -> None:
    """Copy the database file `source` (opened read-only) into the new file `target`."""
    src = open_read_only(source)
    try:
        dest = sqlite3.connect(target)
        try:
            src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()


def salvage(path: Path) -> tuple[list[str], dict[str, Any] | None]:
    """What can still be read from a damaged catalogue: (folder paths, settings), best effort."""
    folders: list[str] = []
    settings: dict[str, Any] | None = None
    if not Path(path).is_file():
        return folders, settings
    try:
        conn = open_read_only(path)
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
