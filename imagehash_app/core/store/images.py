"""Folders, images and what a scan writes: the catalogue's picture of the person's folders."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from imagehash_app.core.store.base import Queries
from imagehash_app.core.store.rows import STATUSES, FolderRow, ImageRow, join
from imagehash_app.core.stored_paths import StoredPath, from_db, sort_key, to_db

# (folder id, stored relative path, size, mtime_ns): where a scan found a file
Placed = tuple[int, StoredPath, int, int]


class FolderQueries(Queries):
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

    def folder_image_ids(self, folder_id: int) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM images WHERE folder_id = ?", (folder_id,)
        )]

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


class ImageQueries(Queries):
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

    def embedded_among(self, image_ids: Sequence[int]) -> list[int]:
        """Those of `image_ids` that are embedded (counted in the population)."""
        sql = "SELECT id FROM images WHERE id IN ({marks}) AND indexed_at IS NOT NULL"
        return [r[0] for r in self._rows_for_ids(sql, image_ids)]

    def embedded_since(self, when: float) -> int:
        """How many photos were embedded after `when` (a time.time())."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM images WHERE indexed_at > ?", (when,)
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

    def image_ids(self) -> list[int]:
        """Every image's id, in id order."""
        return [r[0] for r in self.conn.execute("SELECT id FROM images ORDER BY id")]

    def paths_of(self, image_ids: Sequence[int]) -> dict[int, Path]:
        """Absolute paths of the given images."""
        sql = (
            "SELECT i.id, f.path, i.rel_path FROM images i JOIN folders f ON f.id = i.folder_id "
            "WHERE i.id IN ({marks})"
        )
        return {iid: join(fp, rel) for iid, fp, rel in self._rows_for_ids(sql, image_ids)}

    def image_id_for(self, path: Path) -> int | None:
        """The image stored at `path` (absolute), if any: looked up through its folder."""
        row = self._row_at(path, "id")
        return None if row is None else row[0]

    def photo_facts(self, path: Path) -> tuple[int | None, int | None, int, int] | None:
        """(width, height, size, mtime_ns) recorded for the photo at `path` (absolute), if any."""
        row = self._row_at(path, "width, height, size, mtime_ns")
        return None if row is None else (row[0], row[1], row[2], row[3])

    def _row_at(self, path: Path, columns: str) -> tuple | None:
        """`columns` (a constant of this module) of the image stored at `path`, found through
        the folder that holds it."""
        for folder in self.folders():  # type: ignore[attr-defined]  # FolderQueries, in Catalog
            try:
                rel = path.relative_to(folder.path).as_posix()
            except ValueError:
                continue
            row = self.conn.execute(
                f"SELECT {columns} FROM images WHERE folder_id = ? AND rel_path = ?",
                (folder.id, to_db(rel)),
            ).fetchone()
            if row:
                return tuple(row)
        return None

    def images_of_folder(self, folder_id: int) -> list[ImageRow]:
        """A folder's images as stored, for a scan to compare with what it finds."""
        rows = self.conn.execute(
            "SELECT id, rel_path, size, mtime_ns, fingerprint FROM images WHERE folder_id = ?",
            (folder_id,),
        ).fetchall()
        return [ImageRow(iid, from_db(rel), size, mtime, fp) for iid, rel, size, mtime, fp in rows]

    def pending_paths(self) -> list[tuple[int, Path]]:
        """(id, absolute path) of the images waiting to be embedded, in id order."""
        rows = self.conn.execute(
            "SELECT i.id, f.path, i.rel_path FROM images i JOIN folders f ON f.id = i.folder_id "
            "WHERE i.status = 'pending' ORDER BY i.id"
        ).fetchall()
        return [(iid, join(fp, rel)) for iid, fp, rel in rows]

    # --- what a scan writes ------------------------------------------------------------------
    def mark_folder_offline(self, folder_id: int) -> None:
        """A folder that is not reachable now: its photos stay, offline (still searchable)."""
        self.conn.execute(
            "UPDATE images SET status = 'offline' WHERE folder_id = ? AND status != 'offline'",
            (folder_id,),
        )

    def mark_folder_online(self, folder_id: int) -> None:
        """A folder reachable again: its photos go back to the status they had."""
        self.conn.execute(
            "UPDATE images SET status = CASE WHEN indexed_at IS NOT NULL THEN 'indexed' "
            "WHEN reason IS NOT NULL THEN 'skipped' ELSE 'pending' END "
            "WHERE folder_id = ? AND status = 'offline'",
            (folder_id,),
        )

    def apply_scan(
        self,
        deleted: Sequence[int],
        changed: Sequence[tuple[int, int, int]],
        moved: Sequence[tuple[Placed, int]],
        new: Sequence[Placed],
        unreachable: Sequence[int],
    ) -> None:
        """Store a scan's diff (call inside its transaction, after `reservoir_remove` of the
        photos that go): `changed` (id, size, mtime_ns) wait to be embedded again and lose their
        codes; `moved` ((folder, rel, size, mtime_ns), id); `new` files wait to be embedded;
        `unreachable` photos (in a folder that could not be listed) go offline."""
        conn = self.conn
        conn.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in deleted])
        conn.executemany(
            "UPDATE images SET size = ?, mtime_ns = ?, fingerprint = NULL, width = NULL, "
            "height = NULL, status = 'pending', reason = NULL, indexed_at = NULL WHERE id = ?",
            [(size, mtime, iid) for iid, size, mtime in changed],
        )
        conn.executemany("DELETE FROM codes WHERE image_id = ?", [(iid,) for iid, _, _ in changed])
        conn.executemany(
            "DELETE FROM signatures WHERE image_id = ?", [(iid,) for iid, _, _ in changed]
        )
        conn.executemany(
            "UPDATE images SET folder_id = ?, rel_path = ?, size = ?, mtime_ns = ? WHERE id = ?",
            [(*place, iid) for place, iid in moved],
        )
        conn.executemany(
            "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status) "
            "VALUES (?, ?, ?, ?, 'pending')",
            list(new),
        )
        conn.executemany(
            "UPDATE images SET status = 'offline' WHERE id = ?", [(i,) for i in unreachable]
        )

    # --- what embedding writes -----------------------------------------------------------------
    def mark_skipped(self, skipped: Sequence[tuple[str, int]]) -> None:
        """(reason, id) of files that could not be read as photos."""
        self.conn.executemany(
            "UPDATE images SET status = 'skipped', reason = ?, indexed_at = NULL WHERE id = ?",
            skipped,
        )

    def mark_indexed(self, rows: Sequence[tuple[str | None, int, int, float, int]]) -> None:
        """(fingerprint, width, height, indexed_at, id) of embedded photos."""
        self.conn.executemany(
            "UPDATE images SET status = 'indexed', reason = NULL, fingerprint = ?, width = ?, "
            "height = ?, indexed_at = ? WHERE id = ?",
            rows,
        )

    def requeue(self, image_ids: Sequence[int]) -> None:
        """Photos to be embedded again (their stored feature or code was lost)."""
        self.conn.executemany(
            "UPDATE images SET status = 'pending', indexed_at = NULL WHERE id = ?",
            [(int(i),) for i in image_ids],
        )

    def orphaned_indexed(self, model_id: int | None) -> list[int]:
        """Indexed photos with neither a code of `model_id` (None: no model) nor a reservoir
        feature: nothing can give them a code without embedding them again."""
        has_code = (
            "SELECT image_id FROM codes WHERE model_id = ?" if model_id is not None
            else "SELECT -1 WHERE ? IS NULL"
        )
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM images WHERE status = 'indexed' "
            f"AND id NOT IN ({has_code}) AND id NOT IN (SELECT image_id FROM reservoir)",
            (model_id,),
        )]
