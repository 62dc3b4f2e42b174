"""What the duplicates search reads and writes: copy signatures, the facts of the keeper rule,
pairs marked "not duplicates", and the record of files moved to the trash (issue 15)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagehash_app.core.store.base import Queries
from imagehash_app.core.store.rows import join
from imagehash_app.core.stored_paths import from_db, to_db


@dataclass(frozen=True)
class CopyRow:
    """One photo with a copy signature, as the duplicates search reads it."""

    id: int
    path: Path
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    format: str | None
    taken: float | None
    quality: float | None
    signature: bytes


@dataclass(frozen=True)
class TrashedRow:
    path: Path
    keeper: Path | None
    bytes: int
    trashed: float


class DuplicateQueries(Queries):
    # --- what indexing writes --------------------------------------------------------------------
    def put_signatures(self, rows: Sequence[tuple[int, bytes, str, float | None, float | None]]):
        """(id, signature, format, taken, quality) of photos just decoded."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO signatures(image_id, signature) VALUES (?, ?)",
            [(iid, sig) for iid, sig, _, _, _ in rows],
        )
        self.conn.executemany(
            "UPDATE images SET format = ?, taken = ?, quality = ? WHERE id = ?",
            [(fmt, taken, quality, iid) for iid, _, fmt, taken, quality in rows],
        )

    def missing_signatures(self) -> list[tuple[int, Path]]:
        """(id, absolute path) of indexed photos without a signature (indexed before signatures
        existed), in id order: the next index run makes theirs."""
        rows = self.conn.execute(
            "SELECT i.id, f.path, i.rel_path FROM images i JOIN folders f ON f.id = i.folder_id "
            "WHERE i.status = 'indexed' AND i.id NOT IN (SELECT image_id FROM signatures) "
            "ORDER BY i.id"
        ).fetchall()
        return [(iid, join(fp, rel)) for iid, fp, rel in rows]

    def unsigned_count(self) -> int:
        """Indexed or offline photos that have no signature yet."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM images WHERE status IN ('indexed', 'offline') "
            "AND id NOT IN (SELECT image_id FROM signatures)"
        ).fetchone()[0]

    # --- what the duplicates search reads ----------------------------------------------------------
    def copy_rows(self) -> list[CopyRow]:
        """Every indexed or offline photo with a signature, in id order."""
        rows = self.conn.execute(
            "SELECT i.id, f.path, i.rel_path, i.size, i.mtime_ns, i.width, i.height, i.format, "
            "i.taken, i.quality, s.signature FROM images i "
            "JOIN folders f ON f.id = i.folder_id JOIN signatures s ON s.image_id = i.id "
            "WHERE i.status IN ('indexed', 'offline') ORDER BY i.id"
        ).fetchall()
        return [
            CopyRow(r[0], join(r[1], r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], bytes(r[10]))
            for r in rows
        ]

    def signatures_of(self, image_ids: Sequence[int]) -> dict[int, bytes]:
        sql = "SELECT image_id, signature FROM signatures WHERE image_id IN ({marks})"
        return {iid: bytes(s) for iid, s in self._rows_for_ids(sql, image_ids)}

    def copy_row_for(self, path: Path) -> CopyRow | None:
        """The photo stored at `path` (absolute) with its signature (None when it has none)."""
        image_id = self.image_id_for(path)  # type: ignore[attr-defined]  # ImageQueries
        if image_id is None:
            return None
        r = self.conn.execute(
            "SELECT i.id, f.path, i.rel_path, i.size, i.mtime_ns, i.width, i.height, i.format, "
            "i.taken, i.quality, s.signature FROM images i "
            "JOIN folders f ON f.id = i.folder_id LEFT JOIN signatures s ON s.image_id = i.id "
            "WHERE i.id = ?", (image_id,),
        ).fetchone()
        if r is None:
            return None
        return CopyRow(r[0], join(r[1], r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                       bytes(r[10]) if r[10] is not None else b"")

    # --- "not duplicates" ---------------------------------------------------------------------
    def put_not_duplicates(self, pairs: Iterable[tuple[int, int]]) -> None:
        now = time.time()
        self.conn.executemany(
            "INSERT OR REPLACE INTO not_duplicates(a, b, marked) VALUES (?, ?, ?)",
            [(*sorted((int(a), int(b))), now) for a, b in pairs if a != b],
        )

    def not_duplicate_pairs(self) -> set[tuple[int, int]]:
        return {(a, b) for a, b in self.conn.execute("SELECT a, b FROM not_duplicates")}

    # --- the trash -----------------------------------------------------------------------------
    def record_trashed(self, path: Path, keeper: Path | None, size: int) -> None:
        self.conn.execute(
            "INSERT INTO trashed(path, keeper, bytes, trashed) VALUES (?, ?, ?, ?)",
            (to_db(path), None if keeper is None else to_db(keeper), int(size), time.time()),
        )

    def trashed(self) -> list[TrashedRow]:
        rows = self.conn.execute(
            "SELECT path, keeper, bytes, trashed FROM trashed ORDER BY trashed, id"
        ).fetchall()
        return [
            TrashedRow(Path(from_db(p)), None if k is None else Path(from_db(k)), b, t)
            for p, k, b, t in rows
        ]

    def delete_images(self, image_ids: Sequence[int]) -> None:
        """Photos that left the library (trashed): their rows go, and with them their codes,
        signatures and marks (call `reservoir_remove` first, in the same transaction)."""
        self.conn.executemany("DELETE FROM images WHERE id = ?", [(int(i),) for i in image_ids])
