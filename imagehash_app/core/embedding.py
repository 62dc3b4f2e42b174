"""The decode -> embed pipeline: worker threads decode and preprocess while the backbone runs.

Pillow's decoders and ONNX Runtime / PyTorch release the GIL, so threads are enough to keep the
decode side and inference side busy at the same time. Work is submitted a bounded number of
batches ahead (memory stays flat) and results come back in input order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagehash_app.core.errors import ImageDecodeError
from imagehash_app.core.images import load_rgb

PREFETCH_BATCHES = 2  # batches decoded ahead of the one being embedded


@dataclass
class EmbeddedBatch:
    """One batch: `features[i]` belongs to `paths[i]`; files that failed are in `failures`."""

    paths: list[Path]
    features: np.ndarray
    failures: list[tuple[Path, str]] = field(default_factory=list)


def decode_for(path: Path, backbone) -> np.ndarray:
    """Decode one file (draft mode at the backbone's size) and preprocess it to (3, H, W)."""
    img = load_rgb(path, min_side=backbone.min_side)
    return backbone.preprocess(img)


def _decode_safely(path: Path, backbone) -> np.ndarray | str:
    """The preprocessed array, or the short reason the file was skipped (never raises)."""
    try:
        return decode_for(path, backbone)
    except ImageDecodeError as exc:
        return exc.reason
    except MemoryError:
        return "too large (out of memory)"
    except Exception as exc:  # a decoder bug on one file must not stop the others
        return f"could not decode ({type(exc).__name__})"


def default_workers(backbone) -> int:
    """Decode workers: one per core (on CPU, inference threads and decoders share the cores)."""
    return max(2, os.cpu_count() or 2)


def decode_pool(workers: int) -> ThreadPoolExecutor:
    """Decode threads. A spawned process pool was measured slower on a 16-core GPU machine
    (pipeline 57% of min(B, D) against 90% with threads: docs/results-indexing.md)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")


def iter_embeddings(
    paths: Sequence[Path],
    backbone,
    *,
    batch_size: int = 32,
    workers: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[EmbeddedBatch]:
    """Yield EmbeddedBatch for consecutive slices of `paths`, in order.

    Every decode failure is reported per path with its reason. Stops cleanly between batches when
    `should_stop()` is true or the generator is closed (pending decodes are cancelled).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return
    batch_size = max(1, int(batch_size))
    starts = range(0, len(paths), batch_size)
    n_workers = workers or default_workers(backbone)
    pool = decode_pool(n_workers)
    pending: deque[list[Future]] = deque()
    next_batch = iter(starts)

    def submit_next() -> None:
        start = next(next_batch, None)
        if start is not None:
            chunk = paths[start : start + batch_size]
            pending.append([pool.submit(_decode_safely, p, backbone) for p in chunk])

    try:
        for _ in range(PREFETCH_BATCHES + 1):
            submit_next()
        for start in starts:
            if should_stop is not None and should_stop():
                return
            futures = pending.popleft()
            chunk = paths[start : start + len(futures)]
            ok_paths: list[Path] = []
            arrays: list[np.ndarray] = []
            failures: list[tuple[Path, str]] = []
            for path, fut in zip(chunk, futures, strict=True):
                result = fut.result()
                if isinstance(result, str):
                    failures.append((path, result))
                else:
                    ok_paths.append(path)
                    arrays.append(result)
            submit_next()  # keep the decoders busy while this batch runs through the backbone
            if arrays:
                features = backbone.embed(np.stack(arrays))
            else:
                features = np.zeros((0, backbone.feature_dim), np.float32)
            yield EmbeddedBatch(ok_paths, features, failures)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
