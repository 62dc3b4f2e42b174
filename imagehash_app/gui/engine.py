"""The engine calls the window makes, as plain functions of a `Library` (run on worker threads).

Kept free of widgets so that tests can call them directly and so that the window's slots only ever
receive finished, immutable values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagehash_app.core.library import (
    FolderInfo,
    Library,
    LibrarySettings,
    LibraryStatus,
    PhotoDetails,
    QueryFailure,
    SearchAnswer,
    SearchResult,
)


@dataclass(frozen=True)
class Snapshot:
    """What the window shows about the library, read in one go."""

    status: LibraryStatus
    folders: list[FolderInfo]
    settings: LibrarySettings


@dataclass(frozen=True)
class QueryOutcome:
    """What the window shows for one query (one or more photos): the engine's answer (it keeps
    the features for a cheap change of result count) and its results merged into one list."""

    answer: SearchAnswer
    results: list[SearchResult]
    elapsed_s: float = 0.0
    details: dict[Path, PhotoDetails] = field(default_factory=dict, compare=False)
    searched: int = field(default=0, compare=False)  # photos the search ranked (indexed so far)

    @property
    def queries(self) -> list[Path]:
        return [r.query for r in self.answer.responses]

    @property
    def failures(self) -> list[QueryFailure]:
        return self.answer.failures

    @property
    def per_query(self) -> list[list[SearchResult]]:
        """Each query's own results, best first (the window shows one list per query)."""
        return [list(r.results) for r in self.answer.responses]


def snapshot(library: Library) -> Snapshot:
    """Status, folders and settings."""
    return Snapshot(status=library.status(), folders=list(library.folders()), settings=library.settings)


def merge(per_query: Sequence[Sequence[SearchResult]], top_k: int) -> list[SearchResult]:
    """One list from several queries' hits: each photo once, with its best score, best first."""
    if len(per_query) == 1:  # the engine's order (own photo first), as is
        return list(per_query[0][:top_k])
    best: dict[Path, SearchResult] = {}
    for hits in per_query:
        for hit in hits:
            old = best.get(hit.path)
            if old is None or hit.score > old.score:
                best[hit.path] = hit
    ordered = sorted(best.values(), key=lambda it: (-it.score, it.hamming, str(it.path)))
    return ordered[:top_k]


def run_query(library: Library, paths: Sequence[Path], top_k: int) -> QueryOutcome:
    """Search for `paths`. The queries that cannot be searched are the outcome's `failures`
    (shown beside the others' results); when none can be, the first one's error is raised."""
    start = time.perf_counter()
    answer = library.search(paths, top_k)
    if not answer.responses and answer.failures:
        raise answer.failures[0].error()
    return _outcome(library, answer, top_k, start)


def _outcome(library: Library, answer: SearchAnswer, top_k: int, start: float) -> QueryOutcome:
    """The answer with its merged list and the details shown under each result."""
    merged = merge([r.results for r in answer], top_k)
    elapsed = time.perf_counter() - start  # the search itself, as the caption says
    details = library.details([hit.path for r in answer for hit in r.results])
    return QueryOutcome(answer, merged, elapsed, details, library.searched_photos())


def requery(library: Library, previous: QueryOutcome, top_k: int) -> QueryOutcome:
    """The same query at another result count, from the kept features (no image decode, no backbone)."""
    start = time.perf_counter()
    answer = library.requery(previous.answer, top_k)
    return _outcome(library, answer, top_k, start)


def status_line(status: LibraryStatus) -> str:
    """e.g. "4,317 photos · urph 64-bit · 8 B code, 1.2 KB on disk per photo" from `LibraryStatus`."""
    indexed = int(getattr(status, "indexed", 0) or 0)
    parts = [f"{indexed:,} photo{'s' if indexed != 1 else ''}"]
    model = getattr(status, "model", None) or {}
    bits = model.get("bits") or getattr(status, "bits", None)
    parts.append(f"{model['method']} {bits}-bit" if model.get("method") else f"no hasher yet ({bits}-bit)")
    per_image = getattr(status, "bytes_per_image", None) or {}
    if isinstance(per_image, dict) and per_image:
        code = per_image.get("code")
        disk = per_image.get("on_disk")
        bits_txt = [f"{_human_bytes(float(code))} code" if code else "", f"{_human_bytes(float(disk))} on disk" if disk else ""]
        text = ", ".join(t for t in bits_txt if t)
        if text:
            parts.append(f"{text} per photo")
    return " · ".join(parts)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
