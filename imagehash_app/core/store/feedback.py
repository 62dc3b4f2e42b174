"""The person's marks on results: "More like this" (+1) and "Not similar" (-1) for a query photo.

Why: the supervised fine-tunes (DSH, DPSH, DSDH) learn from pairs the person vouched for. Both
ends are library photos (by image id), so a mark goes when either photo leaves the library; a
pair marked again keeps only its latest mark, whichever end was the query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from imagehash_app.core.store.base import Queries


@dataclass(frozen=True)
class MarkRow:
    query_id: int
    result_id: int
    similar: bool
    marked: float


class FeedbackQueries(Queries):
    def put_mark(self, query_id: int, result_id: int, similar: bool) -> None:
        """Record (or change) the mark on the pair; stored in the pair's id order so that the
        same two photos marked from either end are one pair."""
        a, b = sorted((int(query_id), int(result_id)))
        self.conn.execute(
            "INSERT INTO feedback(query_id, result_id, label, marked) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(query_id, result_id) DO UPDATE SET label = excluded.label, "
            "marked = excluded.marked",
            (a, b, 1 if similar else -1, time.time()),
        )

    def marks(self) -> list[MarkRow]:
        rows = self.conn.execute(
            "SELECT query_id, result_id, label, marked FROM feedback ORDER BY query_id, result_id"
        ).fetchall()
        return [MarkRow(q, r, label > 0, t) for q, r, label, t in rows]

    def mark_counts(self) -> dict[str, int]:
        """{"similar": n, "not_similar": m}."""
        rows = dict(self.conn.execute("SELECT label, COUNT(*) FROM feedback GROUP BY label").fetchall())
        return {"similar": int(rows.get(1, 0)), "not_similar": int(rows.get(-1, 0))}
