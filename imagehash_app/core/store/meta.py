"""The `meta` table: settings, counters and small records as text or JSON under a key."""

from __future__ import annotations

import json
from typing import Any

from imagehash_app.core.store.base import Queries


class MetaQueries(Queries):
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_meta(self, key: str) -> None:
        self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def get_json(self, key: str, default: Any = None) -> Any:
        raw = self.get_meta(key)
        return default if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any) -> None:
        self.set_meta(key, json.dumps(value, sort_keys=True))

    def get_int(self, key: str, default: int = 0) -> int:
        raw = self.get_meta(key)
        return default if raw is None else int(raw)
