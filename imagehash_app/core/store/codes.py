"""Hasher versions' rows and their codes, including which photos still lack a code of a version."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from imagehash_app.core.store.base import Queries
from imagehash_app.core.store.rows import ModelRow

CODE_DTYPE = "<u8"  # codes are stored little-endian, one BLOB of W uint64 words per image


def code_params(model_id: int, image_ids: Sequence[int], codes: np.ndarray) -> list[tuple]:
    """(image_id, model_id, BLOB) rows for an INSERT of packed codes (uint64 (n, W))."""
    data = np.ascontiguousarray(codes, dtype=CODE_DTYPE)
    return [(int(i), model_id, row.tobytes()) for i, row in zip(image_ids, data, strict=True)]


def unpack_code_rows(rows: Sequence[tuple], words: int) -> tuple[np.ndarray, np.ndarray]:
    """(image ids int64 (n,), codes uint64 (n, W)) from (image_id, BLOB) rows. A row of the wrong
    length (a damaged catalogue) is left out; the next index run drops it and codes the photo
    again (health.drop_broken_rows)."""
    rows = [r for r in rows if isinstance(r[1], bytes) and len(r[1]) == 8 * words]
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    blob = b"".join(r[1] for r in rows)
    codes = np.frombuffer(blob, dtype=CODE_DTYPE).astype(np.uint64).reshape(len(rows), words)
    return ids, codes


class CodeQueries(Queries):
    # --- models --------------------------------------------------------------------------------
    def models(self) -> list[ModelRow]:
        rows = self.conn.execute(
            "SELECT id, method, bits, backbone, weights_id, created, active, dir, train_size, note "
            "FROM models ORDER BY id"
        ).fetchall()
        return [ModelRow(*r[:6], bool(r[6]), *r[7:]) for r in rows]

    def model(self, model_id: int) -> ModelRow | None:
        return next((m for m in self.models() if m.id == model_id), None)

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
        self.conn.executemany(
            "INSERT OR REPLACE INTO codes(image_id, model_id, code) VALUES (?, ?, ?)",
            code_params(model_id, image_ids, codes),
        )

    def load_codes(self, model_id: int, words: int) -> tuple[np.ndarray, np.ndarray]:
        """All codes of a model as (image ids int64 (n,), codes uint64 (n, W)) in one query."""
        rows = self.conn.execute(
            "SELECT image_id, code FROM codes WHERE model_id = ? ORDER BY image_id", (model_id,)
        ).fetchall()
        return unpack_code_rows(rows, words)

    def code_of(self, model_id: int, image_id: int, words: int) -> np.ndarray | None:
        row = self.conn.execute(
            "SELECT code FROM codes WHERE model_id = ? AND image_id = ?", (model_id, image_id)
        ).fetchone()
        return None if row is None else np.frombuffer(row[0], CODE_DTYPE).astype(np.uint64)[:words]

    def codes_of(self, model_id: int, image_ids: Sequence[int], words: int) -> dict[int, np.ndarray]:
        """Packed codes of `image_ids` under `model_id` (those that have one)."""
        sql = "SELECT image_id, code FROM codes WHERE model_id = ? AND image_id IN ({marks})"
        return {
            iid: np.frombuffer(blob, dtype=CODE_DTYPE).astype(np.uint64)[:words]
            for iid, blob in self._rows_for_ids(sql, image_ids, (model_id,))
        }

    def embedded_code_count(self, model_id: int) -> int:
        """How many embedded photos (indexed or offline) have a code of `model_id`."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM codes c JOIN images i ON i.id = c.image_id "
            "WHERE c.model_id = ? AND i.indexed_at IS NOT NULL", (model_id,),
        ).fetchone()[0]

    # --- codes still missing -------------------------------------------------------------------
    def missing_codes(self, model_id: int, limit: int = -1, after: int = 0) -> list[int]:
        """Embedded photos (indexed or offline) without a code of `model_id`, in id order: the
        first `limit` (all: -1) of those with an id above `after`."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM images WHERE indexed_at IS NOT NULL AND id > ? AND id NOT IN "
            "(SELECT image_id FROM codes WHERE model_id = ?) ORDER BY id LIMIT ?",
            (after, model_id, limit),
        )]

    def sampled_missing_codes(self, model_id: int) -> list[int]:
        """Embedded photos kept in the reservoir without a code of `model_id`, in id order: those
        a version can code exactly from their stored feature."""
        return [r[0] for r in self.conn.execute(
            "SELECT r.image_id FROM reservoir r JOIN images i ON i.id = r.image_id "
            "WHERE i.indexed_at IS NOT NULL AND r.image_id NOT IN "
            "(SELECT image_id FROM codes WHERE model_id = ?) ORDER BY r.image_id",
            (model_id,),
        )]

    # --- damaged rows ----------------------------------------------------------------------------
    def broken_codes(self) -> list[tuple[int, int]]:
        """(image id, model id) of code rows whose length does not fit their version's bits."""
        return self.conn.execute(
            "SELECT c.image_id, c.model_id FROM codes c JOIN models m ON m.id = c.model_id "
            "WHERE typeof(c.code) != 'blob' OR LENGTH(c.code) != ((m.bits + 63) / 64) * 8"
        ).fetchall()

    def delete_codes(self, rows: Sequence[tuple[int, int]]) -> None:
        """Drop the codes (image id, model id)."""
        self.conn.executemany("DELETE FROM codes WHERE image_id = ? AND model_id = ?", rows)
