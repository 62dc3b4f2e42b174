"""Process-wide settings made once happen on the main thread, before other threads run: glibc's
mallopt (decode_budget.return_large_buffers) is MT-Unsafe, and was first called at the first decode,
i.e. during the first search after a launch, beside the window's other threads (issue 14, item 3)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import ctypes, threading
calls = []
real = ctypes.CDLL
class Probe:
    def __init__(self, lib):
        self._lib = lib
    def __getattr__(self, name):
        fn = getattr(self._lib, name)
        if name != "mallopt":
            return fn
        def mallopt(*args):
            calls.append((threading.current_thread() is threading.main_thread(), threading.active_count()))
            return fn(*args)
        return mallopt
ctypes.CDLL = lambda *a, **k: Probe(real(*a, **k))
import imagehash_app.core.library  # what both faces import at start
from imagehash_app.core import decode_budget
# The first decode, as in the first search: on the reader thread, beside others.
t = threading.Thread(target=decode_budget.budget, name="imagehash-reader")
t.start(); t.join()
print(calls)
"""


def test_the_mmap_threshold_is_set_on_the_main_thread_when_the_engine_is_imported() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    calls = eval(out)  # noqa: S307 (our own probe's list of tuples)
    assert len(calls) == 1
    on_main, threads = calls[0]
    assert on_main and threads == 1
