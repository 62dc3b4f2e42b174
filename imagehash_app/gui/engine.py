"""The engine calls the window makes, as plain functions of a `Library` (run on worker threads).

Kept free of widgets so that tests can call them directly and so that the window's slots only ever
receive finished, immutable values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagehash_app.core.errors import ImageDecodeError
from imagehash_app.gui.results_view import ResultItem


@dataclass(frozen=True)
class Snapshot:
    """What the window shows about the library, read in one go."""

    status: Any
    folders: list[Any]
    settings: Any


@dataclass(frozen=True)
class QueryOutcome:
    """Results of one query (one or more photos), with the features kept for cheap re-queries."""

    queries: list[Path]
    results: list[ResultItem]
    features: np.ndarray | None = None
    elapsed_s: float = 0.0
    failures: list[tuple[Path, str]] = field(default_factory=list)


def snapshot(library: Any) -> Snapshot:
    """Status, folders and settings."""
    return Snapshot(status=library.status(), folders=list(library.folders()), settings=library.settings)


def merge(per_query: Sequence[Sequence[Any]], top_k: int) -> list[ResultItem]:
    """One list from several queries' hits: each photo once, with its best score, best first."""
    if len(per_query) == 1:  # the engine's order (own photo first), as is
        return [ResultItem(Path(h.path), float(h.score), int(h.hamming)) for h in per_query[0][:top_k]]
    best: dict[Path, ResultItem] = {}
    for hits in per_query:
        for hit in hits:
            item = ResultItem(Path(hit.path), float(hit.score), int(hit.hamming))
            old = best.get(item.path)
            if old is None or item.score > old.score:
                best[item.path] = item
    ordered = sorted(best.values(), key=lambda it: (-it.score, it.hamming, str(it.path)))
    return ordered[:top_k]


def run_query(library: Any, paths: Sequence[Path], top_k: int) -> QueryOutcome:
    """Search for `paths`; keeps the query features so a new result count needs no backbone run.

    Raises `ImageDecodeError` when none of the photos can be read.
    """
    start = time.perf_counter()
    resolved = [Path(p).expanduser().resolve() for p in paths]
    features, ok, failures = library.embed(resolved)
    if not ok:
        path, reason = failures[0] if failures else (resolved[0], "not an image")
        raise ImageDecodeError(reason, path)
    per_query = library.search_features(features, top_k=top_k, query_paths=ok)
    return QueryOutcome(
        queries=ok,
        results=merge(per_query, top_k),
        features=features,
        elapsed_s=time.perf_counter() - start,
        failures=failures,
    )


def requery(library: Any, previous: QueryOutcome, top_k: int) -> QueryOutcome:
    """The same query at another result count, from the kept features (no image decode, no backbone)."""
    if previous.features is None:
        return run_query(library, previous.queries, top_k)
    start = time.perf_counter()
    per_query = library.search_features(previous.features, top_k=top_k, query_paths=previous.queries)
    return QueryOutcome(
        queries=previous.queries,
        results=merge(per_query, top_k),
        features=previous.features,
        elapsed_s=time.perf_counter() - start,
        failures=previous.failures,
    )


def status_line(status: Any) -> str:
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
