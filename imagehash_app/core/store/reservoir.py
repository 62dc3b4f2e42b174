"""The reservoir's table: the float16 features of the sampled photos, one slot each.

Only storage is here; which photo enters or leaves the sample is decided by core/reservoir.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from imagehash_app.core.store.base import Queries

FEATURE_DTYPE = "<f2"  # features are kept as float16: half the bytes, ample for training


class ReservoirQueries(Queries):
    def reservoir_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM reservoir").fetchone()[0]

    def reservoir_bytes(self) -> int:
        return self.conn.execute(
            "SELECT COALESCE(SUM(LENGTH(feature)), 0) FROM reservoir"
        ).fetchone()[0]

    def reservoir_ids(self, image_ids: Iterable[int]) -> set[int]:
        """Which of `image_ids` have a feature in the reservoir."""
        sql = "SELECT image_id FROM reservoir WHERE image_id IN ({marks})"
        return {r[0] for r in self._rows_for_ids(sql, list(image_ids))}

    def reservoir_image_ids(self) -> list[int]:
        """Every sampled photo's id, in id order."""
        return [r[0] for r in self.conn.execute("SELECT image_id FROM reservoir ORDER BY image_id")]

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
        feats = np.frombuffer(b"".join(r[1] for r in rows), dtype=FEATURE_DTYPE).reshape(len(rows), dim)
        return ids, feats.astype(np.float32)

    def reservoir_features(self, image_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored float16 features (as float32) of those of `image_ids` that are in the reservoir."""
        sql = "SELECT image_id, feature FROM reservoir WHERE image_id IN ({marks})"
        return {
            iid: np.frombuffer(blob, dtype=FEATURE_DTYPE).astype(np.float32)
            for iid, blob in self._rows_for_ids(sql, image_ids)
        }

    # --- slots -----------------------------------------------------------------------------------
    def reservoir_top_slot(self) -> int | None:
        return self.conn.execute("SELECT MAX(slot) FROM reservoir").fetchone()[0]

    def reservoir_slots(self) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT slot FROM reservoir")}

    def reservoir_put(self, image_id: int, slot: int, feature: bytes, *, replace: bool) -> None:
        """Keep a photo's feature in `slot`; `replace`: the photo in that slot leaves first."""
        if replace:
            self.conn.execute("DELETE FROM reservoir WHERE slot = ?", (slot,))
        self.conn.execute(
            "INSERT INTO reservoir(image_id, slot, feature) VALUES (?, ?, ?)",
            (int(image_id), slot, feature),
        )

    def reservoir_delete(self, image_ids: Iterable[int]) -> None:
        self.conn.executemany(
            "DELETE FROM reservoir WHERE image_id = ?", [(int(i),) for i in image_ids]
        )

    def reservoir_renumber(self, image_ids: Sequence[int]) -> None:
        """Give the kept photos (`image_ids`, all that is left) the slots 0, 1, … in that order."""
        self.conn.execute("UPDATE reservoir SET slot = -1 - slot")
        for new_slot, image_id in enumerate(image_ids):
            self.conn.execute(
                "UPDATE reservoir SET slot = ? WHERE image_id = ?", (new_slot, int(image_id))
            )

    # --- damaged rows ----------------------------------------------------------------------------
    def broken_feature_ids(self) -> list[int]:
        """Reservoir rows whose length differs from most (a damaged or hand-edited catalogue)."""
        common = self.conn.execute(
            "SELECT LENGTH(feature) FROM reservoir GROUP BY LENGTH(feature) "
            "ORDER BY COUNT(*) DESC LIMIT 1"
        ).fetchone()
        return [] if common is None else [r[0] for r in self.conn.execute(
            "SELECT image_id FROM reservoir WHERE typeof(feature) != 'blob' "
            "OR LENGTH(feature) != ? OR LENGTH(feature) % 2 != 0", (common[0],)
        )]
