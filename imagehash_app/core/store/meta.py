"""The `meta` table: settings, counters and small records as text or JSON under a key.

The keys, and the module that owns each record: `settings` and `weights_id` (here: the library's
settings and the backbone weights its features came from), `reservoir_seen`/`_c1`/`_c2` and
`changed_since_fit` (core/reservoir.py), `fit_pending` (core/indexer.py), `finetune_pending`,
`versions_started` and `set_aside_models` (core/versions.py).
"""

from __future__ import annotations

import json
from typing import Any

from imagehash_app.core.store.base import Queries

SETTINGS_KEY = "settings"  # JSON: the library's settings (core's LibrarySettings.to_dict())
WEIGHTS_ID_KEY = "weights_id"  # the backbone weights every stored feature and code came from


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

    # --- the library's settings and weights --------------------------------------------------
    def settings_doc(self) -> dict[str, Any] | None:
        """The stored settings (None: none stored yet)."""
        return self.get_json(SETTINGS_KEY)

    def has_settings(self) -> bool:
        return self.get_meta(SETTINGS_KEY) is not None

    def set_settings_doc(self, doc: dict[str, Any]) -> None:
        self.set_json(SETTINGS_KEY, doc)

    def weights_id(self) -> str | None:
        """The weights the library's features came from (None: nothing embedded yet)."""
        return self.get_meta(WEIGHTS_ID_KEY)

    def set_weights_id(self, weights_id: str) -> None:
        self.set_meta(WEIGHTS_ID_KEY, weights_id)

    def forget_weights_id(self) -> None:
        """Nothing is indexed: the next run may load other weights."""
        self.delete_meta(WEIGHTS_ID_KEY)
