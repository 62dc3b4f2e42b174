"""Helpers for tests that kill processes."""

from __future__ import annotations

from pathlib import Path


def running(pid: int) -> bool:
    """The process exists and has not exited (reads /proc: Linux only)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (nothing in a container may reap it)
