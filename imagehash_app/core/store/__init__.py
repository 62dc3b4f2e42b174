"""The one place that speaks SQL: the catalogue's schema, its connection and every query.

The rest of the engine calls operations on a `Catalog` (`pending_paths()`, `put_codes()`,
`missing_codes()`, …) and gets typed rows back; no SQL text lives outside this package.
"""

from imagehash_app.core.store.catalog import BUSY_TIMEOUT_MS, CATALOG_FILE, Catalog
from imagehash_app.core.store.codes import CODE_DTYPE
from imagehash_app.core.store.reservoir import FEATURE_DTYPE
from imagehash_app.core.store.rows import STATUSES, FolderRow, ImageRow, ModelRow, join
from imagehash_app.core.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "BUSY_TIMEOUT_MS", "CATALOG_FILE", "CODE_DTYPE", "FEATURE_DTYPE", "MIGRATIONS",
    "SCHEMA_VERSION", "STATUSES", "Catalog", "FolderRow", "ImageRow", "ModelRow", "join",
]
