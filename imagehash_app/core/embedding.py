"""The decode -> embed pipeline: workers decode and crop photos while the backbone runs.

Each photo is opened once: the worker that decodes it also reads what the catalogue stores of it
(`PhotoFacts`). Workers hand back uint8 crops; the backbone normalises a whole batch at once (on the
GPU when it runs there: a quarter of the bytes to copy). Work is submitted a bounded number of
batches ahead (memory stays flat) and results come back in input order.

Workers are threads when the backbone runs on the CPU: Pillow's decoders and ONNX Runtime release
the GIL, and the two share the cores (the pipeline measured at 91-103% of 1/(1/B + 1/D) on 2
cores). With a GPU they are processes: the main thread must dispatch the network and write the
catalogue, and beside 16 decoding threads, which hold the GIL for Pillow's Python parts, it got
too little of it (a batch's forward pass took 181 ms instead of 12.5); processes measured 8-14%
faster there, and with 8 photos per task (fewer, larger messages for the one parent thread that
receives them) the pipeline reached 90% of D (docs/results-indexing.md).

Threads and processes decode under one pixel budget (`decode_budget`): a photo's decoded pixels
are held from the full decode until its crop is made, so however many workers run, the pixels
decoded at once stay under `DECODE_BUDGET_PIXELS`. Processes get the parent's budget when they
start; a pool replaced after a crash gets a fresh one.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagehash_app.core import decode_budget
from imagehash_app.core.child_process import exit_with_parent, spawn_context
from imagehash_app.core.decode_budget import PixelBudget
from imagehash_app.core.duplicates.signature import HeaderFacts, header_facts, thumbnail_of
from imagehash_app.core.errors import ImageDecodeError
from imagehash_app.core.files import fingerprint_of_file
from imagehash_app.core.images import decoding, reason_for_os_error
from imagehash_app.core.preprocess import Preprocessing

PREFETCH_BATCHES = 2  # batches decoded ahead of the one being embedded
# Photos per task for decode processes: every result crosses a pipe that one GIL-bound thread of
# the parent drains; 8 per message measured +27% over 1 on a GPU (docs/results-indexing.md).
PROCESS_CHUNK = 8
CRASHED = "could not decode (the decoder crashed)"
# Decode processes run at a lower priority: on a GPU they fill every core, while the app's own
# process (feeding the GPU, writing the catalogue) and a hasher fit beside the run are each one
# busy thread that the run waits for; and the user's desktop stays responsive.
DECODE_NICENESS = 10


@dataclass(frozen=True)
class PhotoFacts:
    """What the catalogue keeps of a photo besides its code, read while decoding it."""

    fingerprint: str
    width: int
    height: int
    signature: bytes = b""  # the copy signature (core/duplicates/signature.py)
    format: str = ""
    taken: float | None = None  # EXIF date taken
    quality: float | None = None  # JPEG quality estimate


@dataclass
class EmbeddedBatch:
    """One batch: `features[i]` and `facts[i]` belong to `paths[i]`; files that failed are in
    `failures`."""

    paths: list[Path]
    features: np.ndarray
    failures: list[tuple[Path, str]] = field(default_factory=list)
    facts: list[PhotoFacts] = field(default_factory=list)


def decode_for(path: Path, backbone) -> np.ndarray:
    """Decode one file (draft mode at the backbone's size) and preprocess it to float (3, H, W)."""
    with decoding(Path(path), backbone.min_side) as (img, _):
        return backbone.preprocess(img)


def decode_pixels(path: Path, prep: Preprocessing, min_side: int) -> tuple[np.ndarray, PhotoFacts]:
    """The backbone's uint8 crop (H, W, 3) of one photo and its facts, from one open of the file."""
    header: list[HeaderFacts] = []
    try:
        with open(path, "rb") as fh:
            fp = fingerprint_of_file(fh)
            with decoding(
                path, min_side, fh, on_open=lambda im: header.append(header_facts(im))
            ) as (img, (width, height)):
                crop = prep.crop_uint8(img)  # inside: the full pixels count until reduced
                signature = thumbnail_of(img)  # the same decoded pixels: no second decode
    except OSError as exc:  # opening or hashing (the decoder maps its own errors)
        raise ImageDecodeError(reason_for_os_error(exc), path) from exc
    h = header[0]
    return crop, PhotoFacts(fp, width, height, signature, h.format, h.taken, h.quality)


def _decode_task(
    path: Path, prep: Preprocessing, min_side: int
) -> tuple[np.ndarray, PhotoFacts] | str:
    """`decode_pixels`, or the short reason the file was skipped (never raises)."""
    try:
        return decode_pixels(path, prep, min_side)
    except ImageDecodeError as exc:
        return exc.reason
    except MemoryError:
        return "too large (out of memory)"
    except Exception as exc:  # a decoder bug on one file must not stop the others
        return f"could not decode ({type(exc).__name__})"


def _decode_chunk(
    paths: Sequence[Path], prep: Preprocessing, min_side: int
) -> list[tuple[np.ndarray, PhotoFacts] | str]:
    """`_decode_task` for each path: one task, one message back (module-level, so that a worker
    process can run it)."""
    return [_decode_task(p, prep, min_side) for p in paths]


def default_workers(backbone) -> int:
    """Decode workers: one per core (on CPU, inference threads and decoders share the cores)."""
    return max(2, os.cpu_count() or 2)


def wants_processes(backbone) -> bool:
    """Decode in processes when the network runs on a GPU (see the module docstring)."""
    return backbone.device != "cpu"


def _decode_process_start(budget: PixelBudget) -> None:
    exit_with_parent()
    decode_budget.use(budget)  # the parent's: one budget for all the decoders
    if hasattr(os, "nice"):  # not on Windows; raising one's own niceness is always allowed
        os.nice(DECODE_NICENESS)


def _spawn_pool(workers: int, budget: PixelBudget) -> ProcessPoolExecutor:
    """A pool of decode processes that share `budget`."""
    return ProcessPoolExecutor(
        workers, mp_context=spawn_context(), initializer=_decode_process_start,
        initargs=(budget,),
    )


class _ProcessPools:
    """One pool of decode processes per process, started on first use and kept: starting Python
    in each worker costs a second or more, which a library's second run should not pay again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._size = 0
        atexit.register(self.shutdown)

    def get(self, workers: int, *, fresh: bool = False) -> ProcessPoolExecutor:
        """The pool of `workers` processes; `fresh` replaces one that a crashed worker broke."""
        with self._lock:
            if self._pool is None or fresh or self._size != workers:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                # After a crash, a fresh budget: a process killed holding pixels never returns them.
                budget = decode_budget.renew() if fresh else decode_budget.budget()
                self._pool = _spawn_pool(workers, budget)
                self._size = workers
            return self._pool

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


PROCESS_POOLS = _ProcessPools()


class DecodeWorkers:
    """Decode tasks on threads or processes, one interface. A photo whose decoder crashes its
    process (a segfault in a codec library) is found by decoding the affected photos one at a time
    in a fresh pool, and skipped with a reason; the others are decoded again."""

    def __init__(self, workers: int, *, processes: bool) -> None:
        self.workers = max(1, workers)
        self._threads = None if processes else ThreadPoolExecutor(self.workers, "decode")
        self._isolation: ProcessPoolExecutor | None = None  # after a crash: one photo at a time

    def _executor(self, fresh: bool = False) -> Executor:
        if self._threads is not None:
            return self._threads
        return PROCESS_POOLS.get(self.workers, fresh=fresh)

    def submit(self, paths: Sequence[Path], prep: Preprocessing, min_side: int) -> Future:
        """Decode `paths` as one task; its result is one entry per path."""
        try:
            return self._executor().submit(_decode_chunk, paths, prep, min_side)
        except BrokenProcessPool:
            return self._executor(fresh=True).submit(_decode_chunk, paths, prep, min_side)

    def results(
        self, future: Future, paths: Sequence[Path], prep: Preprocessing, min_side: int
    ) -> list[tuple[np.ndarray, PhotoFacts] | str]:
        try:
            return future.result()
        except BrokenProcessPool:
            return [self._alone(p, prep, min_side) for p in paths]

    def _alone(self, path: Path, prep: Preprocessing, min_side: int):
        """Decode `path` by itself in a one-process pool: if that breaks, this photo is the cause."""
        if self._isolation is None:
            # Its own budget, so that a crash here leaks nothing from the shared one; the one
            # photo it decodes may come on top of the shared budget while the pool runs.
            self._isolation = _spawn_pool(1, PixelBudget(decode_budget.budget().total))
        try:
            return self._isolation.submit(_decode_task, path, prep, min_side).result()
        except BrokenProcessPool:
            self._isolation.shutdown(wait=False)
            self._isolation = None
            return CRASHED

    def close(self, pending: Sequence[Future] = ()) -> None:
        """Drop queued work; threads are joined, the shared processes stay for the next run."""
        for future in pending:
            future.cancel()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
        if self._isolation is not None:
            self._isolation.shutdown(wait=True)
            self._isolation = None


def iter_embeddings(
    paths: Sequence[Path],
    backbone,
    *,
    batch_size: int = 32,
    workers: int | None = None,
    processes: bool | None = None,
    chunk: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[EmbeddedBatch]:
    """Yield EmbeddedBatch for consecutive slices of `paths`, in order.

    `processes`: decode in worker processes (None: when the backbone runs on a GPU). `chunk`:
    photos per decode task (None: `PROCESS_CHUNK` with processes, 1 with threads). Every decode
    failure is reported per path with its reason. Stops cleanly between batches when
    `should_stop()` is true or the generator is closed (pending decodes are cancelled).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return
    batch_size = max(1, int(batch_size))
    starts = range(0, len(paths), batch_size)
    use_processes = wants_processes(backbone) if processes is None else processes
    if chunk is None:
        chunk = PROCESS_CHUNK if use_processes else 1
    chunk = max(1, min(int(chunk), batch_size))
    pool = DecodeWorkers(workers or default_workers(backbone), processes=use_processes)
    # Keep about two tasks per worker queued, whatever the chunk size.
    ahead = max(PREFETCH_BATCHES, -(-2 * pool.workers * chunk // batch_size))
    prep, min_side = backbone.prep, backbone.min_side
    pending: deque[list[tuple[list[Path], Future]]] = deque()
    next_batch = iter(starts)

    def submit_next() -> None:
        start = next(next_batch, None)
        if start is not None:
            batch = paths[start : start + batch_size]
            parts = [batch[i : i + chunk] for i in range(0, len(batch), chunk)]
            pending.append([(part, pool.submit(part, prep, min_side)) for part in parts])

    try:
        for _ in range(ahead + 1):
            submit_next()
        for _ in starts:
            if should_stop is not None and should_stop():
                return
            tasks = pending.popleft()
            ok_paths: list[Path] = []
            crops: list[np.ndarray] = []
            facts: list[PhotoFacts] = []
            failures: list[tuple[Path, str]] = []
            for part, fut in tasks:
                for path, result in zip(
                    part, pool.results(fut, part, prep, min_side), strict=True
                ):
                    if isinstance(result, str):
                        failures.append((path, result))
                    else:
                        ok_paths.append(path)
                        crops.append(result[0])
                        facts.append(result[1])
            submit_next()  # keep the decoders busy while this batch runs through the backbone
            if crops:
                features = backbone.embed_pixels(np.stack(crops))
            else:
                features = np.zeros((0, backbone.feature_dim), np.float32)
            yield EmbeddedBatch(ok_paths, features, failures, facts)
    finally:
        pool.close([fut for tasks in pending for _, fut in tasks])
