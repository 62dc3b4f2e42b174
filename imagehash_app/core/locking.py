"""One writing process per library: an OS file lock (released by the kernel if the process dies).

The lock file itself is truncated by every attempt to take it, so the owner's pid is written to a
sidecar file `lock.owner` for the message a second writer gets.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import filelock

from imagehash_app.core.errors import LibraryLockedError

LOCK_FILE = "lock"
OWNER_FILE = "lock.owner"


class WriterLock:
    """Held while a library is open for writing; `acquire` fails at once if someone else holds it."""

    def __init__(self, library: Path) -> None:
        self.library = Path(library)
        self._lock = filelock.FileLock(self.library / LOCK_FILE, timeout=0)

    def acquire(self) -> None:
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise LibraryLockedError(self._locked_message()) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        (self.library / OWNER_FILE).write_text(json.dumps(owner))

    def release(self) -> None:
        if self._lock.is_locked:
            (self.library / OWNER_FILE).unlink(missing_ok=True)
            self._lock.release(force=True)

    def _locked_message(self) -> str:
        try:
            owner = json.loads((self.library / OWNER_FILE).read_text())
            who = f" (pid {owner['pid']} on {owner['host']})"
        except (OSError, ValueError, KeyError):
            who = ""
        return (
            f"The library at {self.library} is in use by another imagehash-app process{who}. "
            "Wait for it to finish or close it, then try again; searching works meanwhile."
        )
