"""The SQLite catalogue: one connection, its transactions, and every query (grouped by concern).

WAL mode lets readers (search, status) work while one writer indexes. Every batch of work is one
transaction, so a kill at any moment leaves the catalogue as it was after the last finished batch.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.store import schema
from imagehash_app.core.store.codes import CodeQueries
from imagehash_app.core.store.duplicates import DuplicateQueries
from imagehash_app.core.store.feedback import FeedbackQueries
from imagehash_app.core.store.images import FolderQueries, ImageQueries
from imagehash_app.core.store.meta import MetaQueries
from imagehash_app.core.store.reservoir import ReservoirQueries
from imagehash_app.core.store.words import WordQueries

CATALOG_FILE = "catalog.sqlite3"
BUSY_TIMEOUT_MS = 10_000


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """`mode=ro`, or `immutable=1` when SQLite cannot make the WAL's `-shm` (a read-only folder or
    mount once the writer's `-wal`/`-shm` are gone): search must still work there."""
    uri = path.resolve().as_uri()
    conn = None
    try:
        conn = sqlite3.connect(
            f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:  # not a damaged file (that is a DatabaseError): the -shm
        if conn is not None:
            conn.close()
    return sqlite3.connect(
        f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
    )


class Catalog(
    MetaQueries, FolderQueries, ImageQueries, CodeQueries, ReservoirQueries, FeedbackQueries,
    DuplicateQueries, WordQueries,
):
    """One connection to a library's catalogue. Not shared between threads."""

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
        self.conn = conn
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Catalog:
        """Open (and create or migrate, when writable) the catalogue file at `path`.

        A file that is not a sound SQLite database raises LibraryDamagedError (with the way out);
        a full disk raises DiskFullError. Read-only, a WAL database whose `-shm` cannot be created
        (a read-only folder or mount) is opened immutable, so search still works.
        """
        path = Path(path)
        try:
            return cls._open(path, read_only)
        except ImagehashError:
            raise
        except (sqlite3.Error, OSError) as exc:
            from imagehash_app.core.damage import translate

            raise translate(exc, path.parent, opening=True) from exc

    @classmethod
    def _open(cls, path: Path, read_only: bool) -> Catalog:
        from imagehash_app.core.damage import BACKUP_FILE, damaged_error

        if read_only and not path.exists():
            raise ImagehashError(
                f"There is no library at {path.parent}. Index a folder first: "
                f"imagehash-app --library {path.parent} index PATH"
            )
        if path.exists() and not path.is_file():
            raise damaged_error(path.parent, "the catalogue is not a file")
        # An empty file is where a new catalogue starts, unless the library had one (a backup).
        if path.is_file() and path.stat().st_size == 0 and (
            read_only or (path.parent / BACKUP_FILE).exists()
        ):
            raise damaged_error(path.parent, "the catalogue file is empty")
        if read_only:
            conn = _connect_read_only(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            if not read_only:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                schema.migrate(conn)
            else:
                version = schema.user_version(conn)
                if version != schema.SCHEMA_VERSION:
                    raise ImagehashError(
                        f"The library at {path.parent} has schema {version}, this version needs "
                        f"{schema.SCHEMA_VERSION}. Run `imagehash-app index` once to upgrade it."
                    )
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, read_only)

    def close(self) -> None:
        """Close; the last writer to leave puts the catalogue back in rollback-journal mode, so
        that readers which come later (status, search) create no -wal/-shm files in the library.
        With another connection open the switch is refused at once and WAL stays."""
        if not self.read_only:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA busy_timeout = 0")
                self.conn.execute("PRAGMA journal_mode = DELETE")
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work: all of it is stored, or none of it. (The connection it
        yields is for tests and benchmarks that write rows by hand; the engine calls operations.)"""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                # SQLite may have rolled back already (SQLITE_FULL, SQLITE_CORRUPT): a ROLLBACK
                # then fails with "no transaction is active" and would hide the real error.
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            from imagehash_app.core.damage import translate

            err = translate(exc, self.path.parent)
            if err is None:
                raise
            raise err from exc

    def change_token(self) -> tuple[int, int]:
        """Changes when anyone (this connection or another) commits: cache invalidation key."""
        data_version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        return data_version, self.conn.total_changes

    @property
    def total_changes(self) -> int:
        """Rows this connection changed since it was opened: whether a run wrote anything."""
        return self.conn.total_changes
