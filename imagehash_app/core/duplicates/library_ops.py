"""The duplicates operations of a library, on its catalogue: what `Library.duplicates`,
`mark_not_duplicates`, `trash` and `trashed` do (library.py only holds the lock and the settings).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from imagehash_app.core.duplicates import engine
from imagehash_app.core.duplicates import score as score_mod
from imagehash_app.core.duplicates.report import CopyPhoto, DuplicateReport, KeeperRule, ScoredPair
from imagehash_app.core.duplicates.trash import TrashFn, TrashOutcome, system_trash
from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.reservoir import reservoir_remove
from imagehash_app.core.store import Catalog
from imagehash_app.core.store.duplicates import CopyRow
from imagehash_app.core.stored_paths import display


def _under(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or path.is_relative_to(f) for f in folders)


def _photo(row: CopyRow, reference: bool) -> CopyPhoto:
    return CopyPhoto(
        path=row.path, bytes=int(row.size or 0), width=int(row.width or 0),
        height=int(row.height or 0), format=row.format or row.path.suffix.lstrip(".").upper(),
        modified=(row.mtime_ns or 0) / 1e9, taken=row.taken, quality=row.quality,
        reference=reference,
    )


def find_duplicates(
    cat: Catalog,
    threshold: float,
    floor: float,
    *,
    folders: Sequence[Path] | None,
    reference_folders: Sequence[Path],
    rule: KeeperRule,
    lock: AbstractContextManager | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> DuplicateReport:
    started = time.perf_counter()
    with lock or contextlib.nullcontext():  # the catalogue is read under the library's lock; the search runs without it
        rows = cat.copy_rows()
        refused = cat.not_duplicate_pairs()
        unsigned = cat.unsigned_count()
    if folders is not None:
        rows = [r for r in rows if _under(r.path, folders)]
    found = engine.find_pairs([r.signature for r in rows], floor, progress=progress,
                              cancel=cancel)
    used: dict[int, int] = {}  # position in rows -> position in the report's photos
    pairs: list[ScoredPair] = []
    for a, b, s, t in zip(found.a, found.b, found.score, found.transform, strict=True):
        ia, ib = rows[int(a)].id, rows[int(b)].id
        if (min(ia, ib), max(ia, ib)) in refused:
            continue
        pa = used.setdefault(int(a), len(used))
        pb = used.setdefault(int(b), len(used))
        pairs.append(ScoredPair(pa, pb, round(float(s), 4), t))
    photos = [None] * len(used)
    for position, index in used.items():
        photos[index] = _photo(rows[position], _under(rows[position].path, reference_folders))
    return DuplicateReport.build(
        photos, pairs, threshold=threshold, floor=floor, rule=rule,
        seconds=time.perf_counter() - started, unsigned=unsigned,
        candidates=found.candidates, aligned=found.aligned, searched=len(rows),
    )


def mark_not_duplicates(cat: Catalog, paths: Sequence[Path]) -> None:
    ids = []
    for path in paths:
        image_id = cat.image_id_for(Path(path))
        if image_id is None:
            raise ImagehashError(f"{display(Path(path))} is not a photo of this library.")
        ids.append(image_id)
    if len(set(ids)) < 2:
        raise ImagehashError("Mark at least two photos as not duplicates of each other.")
    with cat.transaction():
        cat.put_not_duplicates([(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]])


def _changed_reason(row: CopyRow, cat: Catalog, keeper: Path | None) -> str | None:
    """Why the file at `row.path` must not be trashed now, or None. A file whose size or
    modification time changed since indexing is trashed only if it is still a copy of its
    keeper (its signature made again, scored against the keeper's stored one)."""
    try:
        st = os.stat(row.path)
    except FileNotFoundError:
        return "is gone already"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if st.st_size == row.size and st.st_mtime_ns == row.mtime_ns:
        return None
    keeper_row = cat.copy_row_for(keeper) if keeper is not None else None
    if keeper_row is None or not keeper_row.signature:
        return "changed since it was indexed"
    from imagehash_app.core.duplicates.signature import thumbnail_of
    from imagehash_app.core.errors import ImageDecodeError
    from imagehash_app.core.images import decoding

    try:
        with decoding(row.path, 64) as (img, _):
            now = thumbnail_of(img)
    except ImageDecodeError:
        return "changed since it was indexed and cannot be read now"
    score, _ = score_mod.copy_score(keeper_row.signature, now)
    if score < score_mod.DEFAULT_THRESHOLD:
        return "changed since it was indexed and is no longer a copy of the one kept"
    return None


def trash(
    cat: Catalog,
    paths: Sequence[Path],
    *,
    keepers: dict[Path, Path],
    reference_folders: Sequence[Path],
    trash_fn: TrashFn | None,
) -> TrashOutcome:
    """Move `paths` to the trash one by one, each recorded and removed from the catalogue in
    its own transaction right after it went; stop at the first failure."""
    trash_fn = trash_fn or system_trash
    kept = set(keepers.values())
    todo = [Path(p) for p in dict.fromkeys(Path(p) for p in paths)]
    done: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    freed = 0
    for i, path in enumerate(todo):
        row = cat.copy_row_for(path)
        if row is None:
            skipped.append((path, "is not a photo of this library"))
            continue
        if _under(path, reference_folders):
            skipped.append((path, "is in a reference folder (never touched)"))
            continue
        if path in kept:
            skipped.append((path, "is the copy kept"))
            continue
        keeper = keepers.get(path)
        reason = _changed_reason(row, cat, keeper)
        if reason is not None:
            skipped.append((path, reason))
            continue
        try:
            trash_fn(str(path))
        except Exception as exc:  # permission, read-only disk, no trash on this volume, ...
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return TrashOutcome(tuple(done), tuple(skipped), (path, why), tuple(todo[i + 1 :]),
                                freed)
        with cat.transaction():
            cat.record_trashed(path, keeper, row.size)
            reservoir_remove(cat, [row.id])
            cat.delete_images([row.id])
        done.append(path)
        freed += int(row.size or 0)
    return TrashOutcome(tuple(done), tuple(skipped), None, (), freed)
