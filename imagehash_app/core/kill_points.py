"""Named points where kill -9 tests stop the process: a promise ("a kill never changes the
answers") is only as good as the points it was tested at. Inert unless the test variable is set.

`IMAGEHASH_APP_TEST_KILL_AT=POINT` (or `POINT:N`) kills the process with SIGKILL the first (Nth)
time it passes POINT. Points: see `tests/core/test_resume.py` and `benchmarks/sweep_kill.py`.
"""

from __future__ import annotations

import os
import signal

TEST_KILL_ENV = "IMAGEHASH_APP_TEST_KILL_AT"
_passes: dict[str, int] = {}


def kill_point(point: str) -> None:
    """Kill this process here when a test asked for it; nothing otherwise."""
    wanted = os.environ.get(TEST_KILL_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] >= int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
