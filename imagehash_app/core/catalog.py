"""The SQLite catalogue: folders, images, hasher versions, codes, the feature reservoir, settings.

WAL mode lets readers (search, status) work while one writer indexes. Every batch of work is one
transaction, so a kill at any moment leaves the catalogue as it was after the last finished batch.
The schema version lives in `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i + 1.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.stored_paths import StoredPath, from_db, sort_key, to_db

CATALOG_FILE = "catalog.sqlite3"
STATUSES = ("indexed", "pending", "skipped", "offline")
BUSY_TIMEOUT_MS = 10_000

MIGRATIONS: list[str] = [
    """
    CREATE TABLE folders(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        added REAL NOT NULL
    );
    CREATE TABLE images(
        id INTEGER PRIMARY KEY,
        folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        rel_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        fingerprint TEXT,
        width INTEGER,
        height INTEGER,
        status TEXT NOT NULL CHECK (status IN ('indexed', 'pending', 'skipped', 'offline')),
        reason TEXT,
        indexed_at REAL,
        UNIQUE(folder_id, rel_path)
    );
    CREATE INDEX images_status ON images(status);
    CREATE TABLE models(
        id INTEGER PRIMARY KEY,
        method TEXT NOT NULL,
        bits INTEGER NOT NULL,
        backbone TEXT NOT NULL,
        weights_id TEXT NOT NULL,
        created REAL NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        dir TEXT NOT NULL,
        train_size INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE codes(
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        code BLOB NOT NULL,
        PRIMARY KEY(image_id, model_id)
    ) WITHOUT ROWID;
    CREATE INDEX codes_model ON codes(model_id, image_id);
    CREATE TABLE reservoir(
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        slot INTEGER NOT NULL UNIQUE,
        feature BLOB NOT NULL
    );
    CREATE TABLE meta(
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: counting the embedded photos (the sampler and the training policy do, every batch) reads
    # this small index instead of the whole images table: 1.2 ms instead of 11 at 100 000 photos.
    """
    CREATE INDEX images_embedded ON images(indexed_at) WHERE indexed_at IS NOT NULL;
    """,
    # 3: folders the last scan could not list (permission denied, I/O error), so that `status`
    # names them instead of their photos silently going missing; `rel_path` '' is the folder
    # itself. Here as in folders.path and images.rel_path, a name that is not valid UTF-8 is
    # stored as a BLOB of its bytes (core/stored_paths.py); older libraries hold only TEXT.
    """
    CREATE TABLE unreadable_dirs(
        folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        rel_path TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY(folder_id, rel_path)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


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


def join(folder: StoredPath, rel: StoredPath) -> Path:
    """The absolute path of an image from its stored folder path and relative path."""
    return Path(from_db(folder)) / from_db(rel)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen yet, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ImagehashError(
            f"This library was written by a newer imagehash-app (schema {version}, "
            f"this version knows {SCHEMA_VERSION}). Update imagehash-app to open it."
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration script (no semicolons inside statements) so it runs inside our transaction."""
    return [s.strip() for s in script.split(";") if s.strip()]


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


class Catalog:
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
                migrate(conn)
            else:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    raise ImagehashError(
                        f"The library at {path.parent} has schema {version}, this version needs "
                        f"{SCHEMA_VERSION}. Run `imagehash-app index` once to upgrade it."
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
        """One atomic unit of work: all of it is stored, or none of it."""
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

    # --- meta (settings, counters) -------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get_json(self, key: str, default=None):
        raw = self.get_meta(key)
        return default if raw is None else json.loads(raw)

    def set_json(self, key: str, value) -> None:
        self.set_meta(key, json.dumps(value, sort_keys=True))

    def get_int(self, key: str, default: int = 0) -> int:
        raw = self.get_meta(key)
        return default if raw is None else int(raw)

    # --- folders ---------------------------------------------------------------------------
    def folders(self) -> list[FolderRow]:
        """The folders in the order of their paths' bytes."""
        rows = self.conn.execute("SELECT id, path, added FROM folders").fetchall()
        out = [FolderRow(i, Path(from_db(p)), a) for i, p, a in rows]
        return sorted(out, key=lambda f: sort_key(f.path))

    def folder_by_path(self, path: Path) -> FolderRow | None:
        row = self.conn.execute(
            "SELECT id, path, added FROM folders WHERE path = ?", (to_db(path),)
        ).fetchone()
        return FolderRow(row[0], Path(from_db(row[1])), row[2]) if row else None

    def add_folder(self, path: Path) -> FolderRow:
        """Register `path` (absolute) unless known; returns its row."""
        existing = self.folder_by_path(path)
        if existing:
            return existing
        cur = self.conn.execute(
            "INSERT INTO folders(path, added) VALUES (?, ?)", (to_db(path), time.time())
        )
        return FolderRow(cur.lastrowid, Path(path), time.time())

    def delete_folder(self, folder_id: int) -> None:
        self.conn.execute("DELETE FROM folders WHERE id = ?", (folder_id,))

    def folder_counts(self) -> dict[int, dict[str, int]]:
        """Per folder id, the number of images in each status."""
        out: dict[int, dict[str, int]] = {}
        for fid, status, n in self.conn.execute(
            "SELECT folder_id, status, COUNT(*) FROM images GROUP BY folder_id, status"
        ):
            out.setdefault(fid, dict.fromkeys(STATUSES, 0))[status] = n
        return out

    # --- images ----------------------------------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM images GROUP BY status"):
            counts[status] = n
        return counts

    def population(self) -> int:
        """Images whose features entered the reservoir sampler (embedded, not since removed)."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM images WHERE indexed_at IS NOT NULL"
        ).fetchone()[0]

    def skipped(self) -> list[tuple[Path, str]]:
        """Skipped photos with their reasons, in path order."""
        rows = self.conn.execute(
            "SELECT f.path, i.rel_path, i.reason FROM images i JOIN folders f ON f.id = i.folder_id "
            "WHERE i.status = 'skipped'"
        ).fetchall()
        out = [(join(fp, rel), reason or "") for fp, rel, reason in rows]
        return sorted(out, key=lambda r: sort_key(r[0]))

    def skipped_reasons(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT COALESCE(reason, ''), COUNT(*) FROM images WHERE status = 'skipped' "
            "GROUP BY reason ORDER BY COUNT(*) DESC"
        ).fetchall()
        return dict(rows)

    def paths_of(self, image_ids: Sequence[int]) -> dict[int, Path]:
        """Absolute paths of the given images (chunked to stay under SQLite's variable limit)."""
        sql = (
            "SELECT i.id, f.path, i.rel_path FROM images i JOIN folders f ON f.id = i.folder_id "
            "WHERE i.id IN ({marks})"
        )
        return {iid: join(fp, rel) for iid, fp, rel in self.rows_for_ids(sql, image_ids)}

    def image_id_for(self, path: Path) -> int | None:
        """The image stored at `path` (absolute), if any: looked up through its folder."""
        for folder in self.folders():
            try:
                rel = path.relative_to(folder.path).as_posix()
            except ValueError:
                continue
            row = self.conn.execute(
                "SELECT id FROM images WHERE folder_id = ? AND rel_path = ?",
                (folder.id, to_db(rel)),
            ).fetchone()
            if row:
                return row[0]
        return None

    def images_of_folder(self, folder_id: int) -> list[tuple[int, str, int, int, str | None]]:
        """(id, path relative to the folder, size, mtime_ns, fingerprint) of a folder's images."""
        rows = self.conn.execute(
            "SELECT id, rel_path, size, mtime_ns, fingerprint FROM images WHERE folder_id = ?",
            (folder_id,),
        ).fetchall()
        return [(iid, from_db(rel), size, mtime, fp) for iid, rel, size, mtime, fp in rows]

    def pending_paths(self) -> list[tuple[int, Path]]:
        """(id, absolute path) of the images waiting to be embedded, in id order."""
        rows = self.conn.execute(
            "SELECT i.id, f.path, i.rel_path FROM images i JOIN folders f ON f.id = i.folder_id "
            "WHERE i.status = 'pending' ORDER BY i.id"
        ).fetchall()
        return [(iid, join(fp, rel)) for iid, fp, rel in rows]

    def move_folder_images(self, source_id: int, target_id: int, prefix: str) -> None:
        """Give a folder's images to another folder, `prefix` (ending in '/') before their paths;
        joined here rather than with SQL's `||`, which would turn a BLOB path into broken text."""
        rows = self.conn.execute(
            "SELECT id, rel_path FROM images WHERE folder_id = ?", (source_id,)
        ).fetchall()
        self.conn.executemany(
            "UPDATE images SET folder_id = ?, rel_path = ? WHERE id = ?",
            [(target_id, to_db(prefix + from_db(rel)), iid) for iid, rel in rows],
        )

    # --- folders a scan could not read -------------------------------------------------------
    def set_unreadable(self, folder_id: int, entries: Iterable[tuple[str, str]]) -> None:
        """Replace what the last scan of a folder could not list: (path relative to it, reason)."""
        self.conn.execute("DELETE FROM unreadable_dirs WHERE folder_id = ?", (folder_id,))
        self.conn.executemany(
            "INSERT OR REPLACE INTO unreadable_dirs(folder_id, rel_path, reason) VALUES (?, ?, ?)",
            [(folder_id, to_db(rel), reason) for rel, reason in entries],
        )

    def unreadable(self) -> list[tuple[Path, str]]:
        """(absolute path, reason) of every folder the last scans could not list, in path order."""
        rows = self.conn.execute(
            "SELECT f.path, u.rel_path, u.reason FROM unreadable_dirs u "
            "JOIN folders f ON f.id = u.folder_id"
        ).fetchall()
        out = [(join(fp, rel), reason) for fp, rel, reason in rows]
        return sorted(out, key=lambda r: sort_key(r[0]))

    # --- models ----------------------------------------------------------------------------
    def models(self) -> list[ModelRow]:
        rows = self.conn.execute(
            "SELECT id, method, bits, backbone, weights_id, created, active, dir, train_size, note "
            "FROM models ORDER BY id"
        ).fetchall()
        return [ModelRow(*r[:6], bool(r[6]), *r[7:]) for r in rows]

    def active_model(self) -> ModelRow | None:
        return next((m for m in self.models() if m.active), None)

    def add_model(
        self, method: str, bits: int, backbone: str, weights_id: str, dir: str,
        train_size: int, note: str,
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO models(method, bits, backbone, weights_id, created, active, dir, "
            "train_size, note) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (method, bits, backbone, weights_id, time.time(), dir, train_size, note),
        )
        return int(cur.lastrowid)

    def set_active_model(self, model_id: int) -> None:
        self.conn.execute("UPDATE models SET active = (id = ?)", (model_id,))

    def delete_model(self, model_id: int) -> None:
        self.conn.execute("DELETE FROM models WHERE id = ?", (model_id,))

    # --- codes -----------------------------------------------------------------------------
    def put_codes(self, model_id: int, image_ids: Sequence[int], codes: np.ndarray) -> None:
        """Store packed codes (uint64 (n, W)) little-endian, one BLOB per image."""
        data = np.ascontiguousarray(codes, dtype="<u8")
        self.conn.executemany(
            "INSERT OR REPLACE INTO codes(image_id, model_id, code) VALUES (?, ?, ?)",
            [(int(i), model_id, row.tobytes()) for i, row in zip(image_ids, data, strict=True)],
        )

    def load_codes(self, model_id: int, words: int) -> tuple[np.ndarray, np.ndarray]:
        """All codes of a model as (image ids int64 (n,), codes uint64 (n, W)) in one query."""
        rows = self.conn.execute(
            "SELECT image_id, code FROM codes WHERE model_id = ? ORDER BY image_id", (model_id,)
        ).fetchall()
        # A row of the wrong length (a damaged catalogue) is left out; the next index run drops it
        # and codes the photo again (health.drop_broken_rows).
        rows = [r for r in rows if isinstance(r[1], bytes) and len(r[1]) == 8 * words]
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(r[1] for r in rows)
        codes = np.frombuffer(blob, dtype="<u8").astype(np.uint64).reshape(len(rows), words)
        return ids, codes

    def code_of(self, model_id: int, image_id: int, words: int) -> np.ndarray | None:
        row = self.conn.execute(
            "SELECT code FROM codes WHERE model_id = ? AND image_id = ?", (model_id, image_id)
        ).fetchone()
        return None if row is None else np.frombuffer(row[0], "<u8").astype(np.uint64)[:words]

    # --- reservoir (raw rows; the sampling policy is in core/reservoir.py) ---------------------
    def rows_for_ids(
        self, sql: str, image_ids: Sequence[int], params: Sequence[Any] = ()
    ) -> Iterator[tuple]:
        """Rows of `sql` with its `{marks}` filled with the ids, 500 ids per query to stay under
        SQLite's bound-parameter limit."""
        ids = [int(i) for i in image_ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            yield from self.conn.execute(
                sql.format(marks=",".join("?" * len(chunk))), [*params, *chunk]
            )

    def reservoir_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM reservoir").fetchone()[0]

    def reservoir_bytes(self) -> int:
        return self.conn.execute(
            "SELECT COALESCE(SUM(LENGTH(feature)), 0) FROM reservoir"
        ).fetchone()[0]

    def reservoir_ids(self, image_ids: Iterable[int]) -> set[int]:
        """Which of `image_ids` have a feature in the reservoir."""
        sql = "SELECT image_id FROM reservoir WHERE image_id IN ({marks})"
        return {r[0] for r in self.rows_for_ids(sql, list(image_ids))}

    def load_reservoir(self, only_indexed: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(image ids (n,), float32 features (n, d)) of the reservoir, stored as float16."""
        where = (
            "WHERE r.image_id IN (SELECT id FROM images WHERE status IN ('indexed', 'offline'))"
            if only_indexed else ""
        )
        rows = self.conn.execute(
            f"SELECT r.image_id, r.feature FROM reservoir r {where} ORDER BY r.image_id"
        ).fetchall()
        if rows:  # rows of another length than most (a damaged catalogue) are left out
            lengths = [len(r[1]) if isinstance(r[1], bytes) else -1 for r in rows]
            common = max(set(lengths), key=lengths.count)
            rows = [r for r, n in zip(rows, lengths, strict=True) if n == common and n % 2 == 0]
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, 0), dtype=np.float32)
        dim = len(rows[0][1]) // 2
        feats = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f2").reshape(len(rows), dim)
        return ids, feats.astype(np.float32)
