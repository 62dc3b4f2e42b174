"""What every group of queries shares: the connection and chunked `IN (...)` lookups."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

ID_CHUNK = 500  # ids per query, under SQLite's bound-parameter limit


class Queries:
    """Base of the query groups that `Catalog` is made of; `conn` is the catalogue's connection."""

    conn: sqlite3.Connection

    def _rows_for_ids(
        self, sql: str, image_ids: Sequence[int], params: Sequence[Any] = ()
    ) -> Iterator[tuple]:
        """Rows of `sql` with its `{marks}` filled with the ids, ID_CHUNK ids per query."""
        ids = [int(i) for i in image_ids]
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            yield from self.conn.execute(
                sql.format(marks=",".join("?" * len(chunk))), [*params, *chunk]
            )
