"""One budget of pixels for every photo being decoded at once, across threads and processes.

Pillow's decompression-bomb guard is per image: 16 decode threads each inside an 81 MP PNG (a few
KB on disk when the image is plain) held 9.4 GB. Before a full decode the caller reads the header
(cheap), asks for the image's decoded pixel count here, and gives it back once the pixels are
reduced to what it keeps (the backbone's crop, a thumbnail).

The budget is `DECODE_BUDGET_PIXELS`: twice Pillow's largest accepted image (2 x ~89.5 MP =
~179 MP). So the largest photo we accept always decodes, and ordinary photos never wait (fifteen
12 MP PNGs at once; JPEGs are decoded reduced, a 12 MP one costs 0.2 MP at the backbone's size),
while the decoded buffers stay under ~179 MP x 4 bytes (Pillow keeps RGB and RGBA in 4 bytes a
pixel) = 0.7 GB, up to twice that at the moment a transparent image is flattened onto white.
Larger images are refused before decoding ("too large (N MP)", images.py), so a request larger than
the whole budget only comes when Pillow's limit was raised at run time: it waits until nothing else
is held and goes alone. Only JPEG can be reduced while decoding (draft mode); other formats decode
at full size and count in full.

The decode processes of a GPU run share the parent's budget: its counter lives in shared memory
(`multiprocessing.Value` under a `multiprocessing.Condition`) and is handed to each process when it
starts. A process that crashes while holding pixels would leak them, so after a crash the pool and
the budget are both replaced (`renew`); photos already decoding under the old one finish under it.

A budget only bounds memory if freed pixels leave the process. glibc gives each decode thread a
malloc arena of its own and, once a large buffer has been freed, keeps later ones of that size in
the arenas instead of mapping them: 16 threads taking turns on 16 MP PNGs under a 32 MP budget
grew RSS by 1.07 GB, as much as with no budget. So the first decode fixes glibc's mmap threshold at
4 MiB (`mallopt`): larger buffers (Pillow's image blocks) are mapped and unmapped, and the same run
grew by 0.16 GB (tests/core/test_memory_bounds.py measures it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import threading
from collections.abc import Iterator

from imagehash_app.core.child_process import spawn_context

# 2 x Pillow's default MAX_IMAGE_PIXELS (1024**3 // 4 // 3 = 89 478 485).
DECODE_BUDGET_PIXELS = 2 * (1024 * 1024 * 1024 // 4 // 3)
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


@functools.cache
def return_large_buffers() -> None:
    """glibc: map buffers of 4 MiB and more, so that freeing one returns it to the system (see the
    module docstring). Elsewhere nothing to do: other allocators map large buffers already."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # musl or another libc: no mallopt
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


class PixelBudget:
    """At most `total` pixels held at once by every holder of this object (threads, and processes
    it was handed to when they started). Requests are served in turn: a large photo waiting for
    room is not overtaken forever by a stream of small ones."""

    def __init__(self, total: int = DECODE_BUDGET_PIXELS) -> None:
        if total < 1:
            raise ValueError(f"a pixel budget must be positive, got {total}")
        self.total = int(total)
        try:
            ctx = spawn_context()
            self._turn = ctx.Lock()  # the one waiter that may take pixels next
            self._cond = ctx.Condition(ctx.Lock())
            self._free = ctx.Value("q", self.total, lock=False)
            self._peak = ctx.Value("q", 0, lock=False)  # most held at once (tests, reports)
        except OSError:  # no shared memory or semaphores (some sandboxes): this process only
            self._turn = threading.Lock()
            self._cond = threading.Condition()
            self._free, self._peak = _Count(self.total), _Count(0)

    @property
    def held(self) -> int:
        """Pixels held right now."""
        with self._cond:
            return self.total - self._free.value

    @property
    def peak(self) -> int:
        """The most pixels held at once since this budget was made (or `reset_peak`)."""
        with self._cond:
            return self._peak.value

    def reset_peak(self) -> None:
        with self._cond:
            self._peak.value = self.total - self._free.value

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[int]:
        """Hold `pixels` (at most the whole budget) for the duration of the block; yields the
        amount held."""
        need = max(1, min(int(pixels), self.total))
        with self._turn, self._cond:
            while self._free.value < need:
                self._cond.wait()
            self._free.value -= need
            held = self.total - self._free.value
            if held > self._peak.value:
                self._peak.value = held
        try:
            yield need
        finally:
            with self._cond:
                self._free.value += need
                self._cond.notify_all()


class _Count:
    """A counter with `multiprocessing.Value`'s interface, for a budget of one process."""

    def __init__(self, value: int) -> None:
        self.value = value


_lock = threading.Lock()
_budget: PixelBudget | None = None


def budget() -> PixelBudget:
    """This process's budget: made on first use, or the one its parent handed it."""
    global _budget
    return_large_buffers()
    with _lock:
        if _budget is None:
            _budget = PixelBudget()
        return _budget


def use(new: PixelBudget) -> None:
    """Make `new` this process's budget (a decode process, given its parent's at start)."""
    global _budget
    return_large_buffers()
    with _lock:
        _budget = new


def renew() -> PixelBudget:
    """Replace the budget with a fresh one (after a decode process crashed holding pixels)."""
    fresh = PixelBudget(budget().total)
    use(fresh)
    return fresh
