"""A crash in native code leaves a log (faulthandler, in the user log directory), and the window's
next start says so once (issue 14, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from imagehash_app import failures
from imagehash_app.gui.app import announce_last_crash

WAIT_MS = 60_000

SEGFAULT = """
import faulthandler, sys, threading
from imagehash_app import failures
print(failures.enable_crash_log(sys.argv[1]), flush=True)
t = threading.Thread(target=faulthandler._sigsegv, name="imagehash-reader")
t.start(); t.join()
"""

CLEAN = """
import sys
from imagehash_app import failures
print(failures.enable_crash_log(sys.argv[1]), flush=True)
"""


def _run(code: str, face: str, log_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGEHASH_APP_LOG_DIR": str(log_dir)}
    return subprocess.run([sys.executable, "-c", code, face], capture_output=True, text=True,
                          env=env, timeout=60)


def test_a_segfault_leaves_every_threads_stack_and_a_clean_exit_leaves_nothing(_log_dir: Path) -> None:
    clean = _run(CLEAN, "cli", _log_dir)
    assert clean.returncode == 0 and clean.stdout.strip().endswith(".log")
    assert list((_log_dir / "faults").iterdir()) == []  # removed at a normal exit
    crashed = _run(SEGFAULT, "window", _log_dir)
    assert crashed.returncode == -11  # SIGSEGV
    left = Path(crashed.stdout.strip())
    assert left.parent == _log_dir / "faults" and left.name.startswith("window-")
    text = left.read_text()
    assert "Fatal Python error: Segmentation fault" in text and "Current thread 0x" in text and "\nThread 0x" in text  # every thread
    found = failures.crash_from_last_time()
    assert found is not None and found.parent == _log_dir and found.name.startswith("crash-")
    assert found.name.endswith("-window.log") and found.read_text() == text
    assert failures.crash_from_last_time() is None  # each crash is told once


def test_the_next_start_says_so_once(qtbot, make_window, tiny_library: Path, _log_dir: Path) -> None:
    faults = _log_dir / "faults"
    faults.mkdir(parents=True)
    # A faked crash of an earlier window (a pid that is not running), and a leftover with no stack
    # (a process killed with SIGKILL), which is only removed.
    (faults / "window-999999999.log").write_text(
        "imagehash-app window, pid 999999999\nFatal Python error: Segmentation fault\n\n"
        'Thread 0x01 (most recent call first):\n  File "search.py", line 1 in candidates\n'
    )
    (faults / "window-999999998.log").write_text("imagehash-app window, pid 999999998\n")
    window = make_window(tiny_library)
    shown: list[str] = []
    window.messageShown.connect(shown.append)
    kept = announce_last_crash(window)
    assert kept is not None and kept.is_file() and "Segmentation fault" in kept.read_text()
    assert shown == [f"The app closed unexpectedly last time; details are in {kept}."]
    assert window.messages.isVisible()
    assert list(faults.iterdir()) == []
    assert announce_last_crash(window) is None and len(shown) == 1  # once
