"""One error boundary for both faces: any failure becomes one sentence and an exit code for a
person, and its details (the traceback) go to a log file in the user log directory.

Exit codes (README, "Exit codes"): 0 done, 1 bad input or a refusal, 2 usage (argparse's own),
3 the library is damaged, 4 the disk is full, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sqlite3
import sys
import traceback
import warnings
from pathlib import Path

import platformdirs

from imagehash_app.core.errors import (
    DiskFullError,
    ImagehashError,
    LibraryDamagedError,
    disk_full,
    is_disk_full,
)
from imagehash_app.core.settings import APP_NAME

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 3
EXIT_DISK_FULL = 4
EXIT_INTERRUPTED = 130

LOG_ENV = "IMAGEHASH_APP_LOG_DIR"  # tests and portable installs point the log elsewhere
LOG_FILE = "imagehash-app.log"
LOG_MAX_BYTES = 1_000_000  # then the log is moved to imagehash-app.log.1 (one old log kept)


def log_path() -> Path:
    """Where details of failures are written."""
    folder = os.environ.get(LOG_ENV) or platformdirs.user_log_dir(APP_NAME, appauthor=False)
    return Path(folder) / LOG_FILE


def record(exc: BaseException, context: str = "") -> Path | None:
    """Append `exc` with its traceback to the log; the log's path, or None when it could not be
    written (a full disk must not turn into a second error)."""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size > LOG_MAX_BYTES:
            os.replace(path, path.with_name(LOG_FILE + ".1"))
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(f"--- {stamp} pid {os.getpid()} {context}\n{text}\n")
    except Exception:  # noqa: BLE001 (the log is best effort; the person still gets the sentence)
        return None
    return path


def log_warnings() -> None:
    """Send Python warnings (Pillow's "possibly corrupt EXIF data", its decompression-bomb notes,
    a library's deprecations) to the log instead of the person's terminal: they are details.
    Idempotent; called by both faces at start."""
    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    path = log_path()
    # A warning that cannot be logged is dropped, never shown on the terminal.
    with contextlib.suppress(Exception):
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(f"--- {stamp} pid {os.getpid()} warning {category.__name__}: {message} "
                     f"({filename}:{lineno})\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _translate_raw(exc: BaseException, library: Path | None) -> ImagehashError | None:
    """Name a low-level error the engine did not: a full disk where the file was (an export, a
    cache), else as the library's when it concerns the library (SQLite, a file inside it)."""
    from imagehash_app.core.health import translate

    where = getattr(exc, "filename", None) if isinstance(exc, OSError) else None
    if is_disk_full(exc):
        if where:
            return disk_full(Path(str(where)).parent, exc)
        if library is None or not isinstance(exc, (OSError, sqlite3.Error)):
            return DiskFullError(
                "The disk is full; free some space and try again (work finished so far is kept)."
            )
    if library is None or not isinstance(exc, Exception):
        return None
    if isinstance(exc, OSError) and where and not _inside(Path(str(where)), library):
        return None
    try:
        return translate(exc, library)
    except Exception:  # noqa: BLE001 (explaining must never fail)
        return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):
        return False


def explain(exc: BaseException, library: Path | None = None) -> tuple[str, int]:
    """(one sentence, exit code) for `exc`; low-level errors are named through the engine's
    `health.translate` when they concern the library."""
    from imagehash_app.core.health import first_line

    if isinstance(exc, KeyboardInterrupt):
        return ("interrupted; the library is consistent, run the command again to continue.",
                EXIT_INTERRUPTED)
    err: BaseException = exc
    if not isinstance(exc, ImagehashError):
        err = _translate_raw(exc, library) or exc
    if isinstance(err, DiskFullError) or (isinstance(err, ImagehashError) and is_disk_full(err)):
        return _one_line(str(err)), EXIT_DISK_FULL
    if isinstance(err, LibraryDamagedError):
        return _one_line(str(err)), EXIT_DAMAGED
    if isinstance(err, ImagehashError):
        return _one_line(str(err)), EXIT_ERROR
    return f"imagehash-app failed unexpectedly: {type(exc).__name__}: {first_line(exc)}", EXIT_ERROR


def report(exc: BaseException, library: Path | None = None, context: str = "") -> tuple[str, int]:
    """Log `exc` and give the sentence to show (with the log's path when details matter)."""
    message, code = explain(exc, library)
    if code == EXIT_INTERRUPTED:
        return message, code
    log = record(exc, context or " ".join(sys.argv))
    plain_input = code == EXIT_ERROR and isinstance(exc, ImagehashError)
    if log is not None and not plain_input:
        message = f"{message.rstrip('.')}; details in {log}."
    return message, code


# --- crashes: a fault in native code (a segfault) kills the process before any `except` runs ------
CRASH_DIR = "faults"  # in the log directory: one file per running process, <face>-<pid>.log
CRASH_PREFIX = "crash-"  # a crash found at the next start is kept as crash-<time>-<face>.log

_fault_file = None  # the open file faulthandler writes into (kept open for the process's life)


def enable_crash_log(face: str) -> Path | None:
    """Make a fatal signal (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) leave every thread's Python
    stack in `<log dir>/faults/<face>-<pid>.log`; the file is removed at a normal exit, so what
    stays after the process is gone is a crash (`crash_from_last_time` finds it). Idempotent; the
    path, or None when the log directory cannot be written (the app runs on without)."""
    import atexit
    import faulthandler

    global _fault_file
    if _fault_file is not None:
        return Path(_fault_file.name)
    folder = log_path().parent / CRASH_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{face}-{os.getpid()}.log"
        fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 (open for the process's whole life)
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        fh.write(f"imagehash-app {face}, pid {os.getpid()}, started {stamp}: {' '.join(sys.argv)}\n")
        fh.flush()
        faulthandler.enable(fh, all_threads=True)
    except Exception:  # noqa: BLE001 (a crash log is a help, never a reason not to start)
        return None
    _fault_file = fh
    atexit.register(_clean_exit, path)
    return path


def _clean_exit(path: Path) -> None:
    """A normal exit (also by an exception the boundary reported): nothing to show next time."""
    import faulthandler

    global _fault_file
    with contextlib.suppress(Exception):
        faulthandler.disable()
        if _fault_file is not None:
            _fault_file.close()
        _fault_file = None
        path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def crash_from_last_time() -> Path | None:
    """The crash log left by a process of this user that died on a fatal signal since the last
    call (kept as `crash-<time>-<face>.log` beside the main log), or None. Each crash is returned
    once: its file is renamed. A leftover without a stack (a process killed with SIGKILL, a power
    cut) is removed, since there is nothing in it to show."""
    folder = log_path().parent / CRASH_DIR
    found: list[Path] = []
    try:
        leftovers = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    for path in leftovers:
        face, _, pid = path.stem.rpartition("-")
        if not pid.isdigit() or int(pid) == os.getpid() or _running(int(pid)):
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            if "Fatal Python error" not in text:
                path.unlink()
                continue
            stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
            kept = path.parent.parent / f"{CRASH_PREFIX}{stamp}-{face or 'app'}.log"
            os.replace(path, kept)
        except OSError:
            continue
        found.append(kept)
    return found[-1] if found else None


def crash_message(path: Path) -> str:
    """What the window says once after a crash."""
    return f"The app closed unexpectedly last time; details are in {path}."
