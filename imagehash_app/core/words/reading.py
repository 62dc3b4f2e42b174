"""The indexing step that reads each photo's words, and reads them again after a move or an edit.

Runs after embedding, in batches of one transaction each, so that photos indexed before this
step existed get their words on the next update, and a kill loses at most one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from imagehash_app.core.store import Catalog
from imagehash_app.core.stored_paths import from_db
from imagehash_app.core.words.embedded import embedded_texts
from imagehash_app.core.words.tokens import path_words, words

BATCH = 200


def photo_words(folder: Path, rel_path: str) -> list[tuple[str, str]]:
    """[(word, source)] of one photo: its folders, its file name and what it embeds."""
    out: list[tuple[str, str]] = []
    for source, found in path_words(rel_path).items():
        out += [(w, source) for w in found]
    for source, texts in embedded_texts(folder / rel_path).items():
        seen: list[str] = []
        for text in texts:
            seen += [w for w in words(text) if w not in seen]
        out += [(w, source) for w in seen]
    return out


def read_words(
    cat: Catalog, should_stop: Callable[[], bool] | None = None
) -> Iterator[tuple[int, int, float]]:
    """Read the words of every indexed photo not read at its current path and mtime; yields
    (done, total, seconds elapsed) after each batch."""
    pending = cat.words_unread()
    folders = {f.id: f.path for f in cat.folders()}
    started, done = time.perf_counter(), 0
    for start in range(0, len(pending), BATCH):
        if should_stop is not None and should_stop():
            return
        rows = pending[start : start + BATCH]
        found = [
            (iid, fid, rel, mtime, photo_words(folders[fid], from_db(rel)))
            for iid, fid, rel, mtime in rows if fid in folders
        ]
        with cat.transaction():
            for iid, fid, rel, mtime, pairs in found:
                cat.put_words(iid, fid, rel, mtime, pairs)
        done += len(rows)
        yield done, len(pending), time.perf_counter() - started
