"""The words photos carry, which photos were read for them, and the cross-modal versions' codes.

Why here: every SQL statement lives in core/store/. A photo is read for words again when its
path or mtime changed since it was last read (`words_unread`); `put_words` replaces its words.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imagehash_app.core.store.base import Queries
from imagehash_app.core.store.codes import code_params, unpack_code_rows


@dataclass(frozen=True)
class WordModelRow:
    id: int
    dir: str
    bits: int
    created: float
    active: bool
    note: str


class WordQueries(Queries):
    # --- reading ---------------------------------------------------------------------------------
    def words_unread(self, limit: int = -1) -> list[tuple[int, int, object, int]]:
        """(image id, folder id, stored relative path, mtime_ns) of indexed photos not read for
        words at their current path and mtime, in id order."""
        return self.conn.execute(
            "SELECT i.id, i.folder_id, i.rel_path, i.mtime_ns FROM images i "
            "LEFT JOIN words_read r ON r.image_id = i.id AND r.folder_id = i.folder_id "
            "AND r.rel_path = i.rel_path AND r.mtime_ns = i.mtime_ns "
            "WHERE i.status = 'indexed' AND r.image_id IS NULL ORDER BY i.id LIMIT ?",
            (limit,),
        ).fetchall()

    def put_words(
        self, image_id: int, folder_id: int, rel_path: object, mtime_ns: int,
        words: Sequence[tuple[str, str]],
    ) -> None:
        """Replace a photo's words with `words` [(word, source)] and record it as read."""
        self.conn.execute("DELETE FROM photo_words WHERE image_id = ?", (image_id,))
        for word, source in words:
            self.conn.execute("INSERT OR IGNORE INTO words(word) VALUES (?)", (word,))
            self.conn.execute(
                "INSERT OR IGNORE INTO photo_words(image_id, word_id, source) "
                "SELECT ?, id, ? FROM words WHERE word = ?", (image_id, source, word),
            )
        self.conn.execute(
            "INSERT OR REPLACE INTO words_read(image_id, folder_id, rel_path, mtime_ns) "
            "VALUES (?, ?, ?, ?)", (image_id, folder_id, rel_path, mtime_ns),
        )

    # --- what was read -----------------------------------------------------------------------------
    def vocabulary(self) -> list[tuple[str, int]]:
        """(word, number of indexed photos carrying it), most carried first, then by word."""
        return self.conn.execute(
            "SELECT w.word, COUNT(DISTINCT p.image_id) AS n FROM words w "
            "JOIN photo_words p ON p.word_id = w.id JOIN images i ON i.id = p.image_id "
            "WHERE i.status = 'indexed' GROUP BY w.id ORDER BY n DESC, w.word"
        ).fetchall()

    def photos_with_words(self) -> int:
        """How many indexed photos carry at least one word."""
        return self.conn.execute(
            "SELECT COUNT(DISTINCT p.image_id) FROM photo_words p JOIN images i "
            "ON i.id = p.image_id WHERE i.status = 'indexed'"
        ).fetchone()[0]

    def words_of(self, image_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
        """{image id: [(word, source)]} of the given photos (those carrying words)."""
        sql = (
            "SELECT p.image_id, w.word, p.source FROM photo_words p JOIN words w "
            "ON w.id = p.word_id WHERE p.image_id IN ({marks}) ORDER BY p.image_id, w.word"
        )
        out: dict[int, list[tuple[str, str]]] = {}
        for iid, word, source in self._rows_for_ids(sql, image_ids):
            out.setdefault(iid, []).append((word, source))
        return out

    def all_photo_words(self) -> list[tuple[int, str]]:
        """(image id, word) of every indexed photo carrying words, in id order (any source)."""
        return self.conn.execute(
            "SELECT DISTINCT p.image_id, w.word FROM photo_words p JOIN words w ON w.id = p.word_id "
            "JOIN images i ON i.id = p.image_id WHERE i.status = 'indexed' ORDER BY p.image_id"
        ).fetchall()

    def words_starting(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        """Vocabulary words beginning with `prefix` (lower-case), most carried first."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self.conn.execute(
            "SELECT w.word, COUNT(DISTINCT p.image_id) AS n FROM words w "
            "JOIN photo_words p ON p.word_id = w.id JOIN images i ON i.id = p.image_id "
            "WHERE i.status = 'indexed' AND w.word LIKE ? ESCAPE '\\' "
            "GROUP BY w.id ORDER BY n DESC, w.word LIMIT ?", (pattern, limit),
        ).fetchall()

    def image_ids_indexed(self) -> list[int]:
        """Ids of the indexed photos, in id order."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM images WHERE status = 'indexed' ORDER BY id"
        )]

    # --- cross-modal versions and their codes ---------------------------------------------------------
    def word_models(self) -> list[WordModelRow]:
        rows = self.conn.execute(
            "SELECT id, dir, bits, created, active, note FROM word_models ORDER BY id"
        ).fetchall()
        return [WordModelRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def active_word_model(self) -> WordModelRow | None:
        return next((m for m in self.word_models() if m.active), None)

    def add_word_model(self, directory: str, bits: int, note: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO word_models(dir, bits, created, note) VALUES (?, ?, ?, ?)",
            (directory, bits, time.time(), note),
        )
        return int(cur.lastrowid)

    def set_active_word_model(self, model_id: int | None) -> None:
        """Make `model_id` the one text queries use (None: none does)."""
        self.conn.execute("UPDATE word_models SET active = (id IS ?)", (model_id,))

    def delete_word_model(self, model_id: int) -> None:
        self.conn.execute("DELETE FROM word_models WHERE id = ?", (model_id,))

    def put_word_codes(self, model_id: int, image_ids: Sequence[int], codes: np.ndarray) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO word_codes(image_id, model_id, code) VALUES (?, ?, ?)",
            code_params(model_id, image_ids, codes),
        )

    def load_word_codes(self, model_id: int, words: int) -> tuple[np.ndarray, np.ndarray]:
        """(image ids (n,), packed codes (n, W)) of the indexed photos, in id order."""
        rows = self.conn.execute(
            "SELECT c.image_id, c.code FROM word_codes c JOIN images i ON i.id = c.image_id "
            "WHERE c.model_id = ? AND i.status = 'indexed' ORDER BY c.image_id", (model_id,),
        ).fetchall()
        return unpack_code_rows(rows, words)

    def missing_word_codes(self, model_id: int) -> list[int]:
        """Indexed photos without a code of cross-modal version `model_id`, in id order."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM images WHERE status = 'indexed' AND id NOT IN "
            "(SELECT image_id FROM word_codes WHERE model_id = ?) ORDER BY id", (model_id,),
        )]
