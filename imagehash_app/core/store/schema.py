"""The catalogue's schema: its migrations and version.

The schema version lives in `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i + 1. A
migration, once released, is never edited: libraries made by every earlier version replay them.
"""

from __future__ import annotations

import sqlite3

from imagehash_app.core.errors import ImagehashError

MIGRATIONS: list[str] = [
    """
    CREATE TABLE folders(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        added REAL NOT NULL
    );
    CREATE TABLE images(
        id INTEGER PRIMARY KEY,
        folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        rel_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        fingerprint TEXT,
        width INTEGER,
        height INTEGER,
        status TEXT NOT NULL CHECK (status IN ('indexed', 'pending', 'skipped', 'offline')),
        reason TEXT,
        indexed_at REAL,
        UNIQUE(folder_id, rel_path)
    );
    CREATE INDEX images_status ON images(status);
    CREATE TABLE models(
        id INTEGER PRIMARY KEY,
        method TEXT NOT NULL,
        bits INTEGER NOT NULL,
        backbone TEXT NOT NULL,
        weights_id TEXT NOT NULL,
        created REAL NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        dir TEXT NOT NULL,
        train_size INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE codes(
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        code BLOB NOT NULL,
        PRIMARY KEY(image_id, model_id)
    ) WITHOUT ROWID;
    CREATE INDEX codes_model ON codes(model_id, image_id);
    CREATE TABLE reservoir(
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        slot INTEGER NOT NULL UNIQUE,
        feature BLOB NOT NULL
    );
    CREATE TABLE meta(
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: counting the embedded photos (the sampler and the training policy do, every batch) reads
    # this small index instead of the whole images table: 1.2 ms instead of 11 at 100 000 photos.
    """
    CREATE INDEX images_embedded ON images(indexed_at) WHERE indexed_at IS NOT NULL;
    """,
    # 3: folders the last scan could not list (permission denied, I/O error), so that `status`
    # names them instead of their photos silently going missing; `rel_path` '' is the folder
    # itself. Here as in folders.path and images.rel_path, a name that is not valid UTF-8 is
    # stored as a BLOB of its bytes (core/stored_paths.py); older libraries hold only TEXT.
    """
    CREATE TABLE unreadable_dirs(
        folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
        rel_path TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY(folder_id, rel_path)
    );
    """,
    # 4: the person's marks on results ("More like this" +1, "Not similar" -1), the labels of the
    # supervised fine-tunes; both ends are library photos, the pair stored in id order.
    """
    CREATE TABLE feedback(
        query_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        result_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        label INTEGER NOT NULL CHECK (label IN (-1, 1)),
        marked REAL NOT NULL,
        PRIMARY KEY(query_id, result_id)
    ) WITHOUT ROWID;
    """,
    # 5: duplicates (issue 15). Each photo's copy signature (core/duplicates/signature.py: a
    # 32x32 grey thumbnail and colour moments, made from the pixels the indexer decodes anyway);
    # what the keeper rule reads of its header (format, EXIF taken date, JPEG quality estimate);
    # pairs a person said are "not duplicates" (id order); and the files moved to the trash
    # from the duplicates view, with the copy kept in their place. Photos indexed before this
    # migration get their signature from the next index/update run (Indexer.fill_signatures).
    """
    ALTER TABLE images ADD COLUMN format TEXT;
    ALTER TABLE images ADD COLUMN taken REAL;
    ALTER TABLE images ADD COLUMN quality REAL;
    CREATE TABLE signatures(
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        signature BLOB NOT NULL
    );
    CREATE TABLE not_duplicates(
        a INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        b INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        marked REAL NOT NULL,
        PRIMARY KEY(a, b)
    ) WITHOUT ROWID;
    CREATE TABLE trashed(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        keeper TEXT,
        bytes INTEGER NOT NULL,
        trashed REAL NOT NULL
    );
    """,
    # 6: the words photos carry (folder and file names, embedded keywords, titles, captions),
    # which photos have been read for words (and at which path and mtime, so that a move or an
    # edit reads them again), and the cross-modal (UGACH) versions with their image-side codes,
    # a second code per photo used only by text queries.
    """
    CREATE TABLE words(
        id INTEGER PRIMARY KEY,
        word TEXT NOT NULL UNIQUE
    );
    CREATE TABLE photo_words(
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        word_id INTEGER NOT NULL REFERENCES words(id),
        source TEXT NOT NULL,
        PRIMARY KEY(image_id, word_id, source)
    ) WITHOUT ROWID;
    CREATE INDEX photo_words_word ON photo_words(word_id);
    CREATE TABLE words_read(
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        folder_id INTEGER NOT NULL,
        rel_path TEXT NOT NULL,
        mtime_ns INTEGER NOT NULL
    );
    CREATE TABLE word_models(
        id INTEGER PRIMARY KEY,
        dir TEXT NOT NULL,
        bits INTEGER NOT NULL,
        created REAL NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE word_codes(
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES word_models(id) ON DELETE CASCADE,
        code BLOB NOT NULL,
        PRIMARY KEY(image_id, model_id)
    ) WITHOUT ROWID;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version a database file is at."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen yet, each in its own transaction."""
    migrations, latest = MIGRATIONS, SCHEMA_VERSION  # read here: tests add a migration
    version = user_version(conn)
    if version > latest:
        raise ImagehashError(
            f"This library was written by a newer imagehash-app (schema {version}, "
            f"this version knows {latest}). Update imagehash-app to open it."
        )
    for target in range(version + 1, latest + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return latest


def _statements(script: str) -> list[str]:
    """Split a migration script (no semicolons inside statements) so it runs inside our transaction."""
    return [s.strip() for s in script.split(";") if s.strip()]
