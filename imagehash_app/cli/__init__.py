"""Command-line face of the engine: argparse sub-commands over `core.library`, no logic of its own.

Every failure becomes one sentence on stderr and an exit code (failures.py: 1 bad input, 2 usage,
3 damaged library, 4 disk full, 130 interrupted), its details in the log file; never a traceback.
With no sub-command the window opens, through `imagehash_app.launcher` (the command line never
imports the window's modules itself).

Modules: `commands` (index, search, status, folders, repair and the parser), `models` (finetune,
models list/activate), `eval` (the research harness), `progress` (the progress bar).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence

from imagehash_app import failures
from imagehash_app.cli.commands import build_parser, library_path
from imagehash_app.cli.progress import ProgressPrinter
from imagehash_app.failures import EXIT_ERROR, EXIT_INTERRUPTED

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "ProgressPrinter", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure reaches the person as one sentence and an exit code."""
    multiprocessing.freeze_support()  # decode workers in a frozen (PyInstaller) build
    failures.log_warnings()
    if argv is None:  # the real program (not a test calling main in-process)
        failures.enable_crash_log("cli")
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse's message and exit status 2
    func = getattr(args, "func", None)
    try:
        if func is None:
            from imagehash_app.launcher import open_window

            return open_window(args.library)
        return func(args)
    except BrokenPipeError:
        return 0
    except (Exception, KeyboardInterrupt) as exc:
        try:
            library = library_path(args)
        except Exception:  # noqa: BLE001
            library = None
        message, code = failures.report(exc, library)
        print(f"imagehash-app: {message}", file=sys.stderr)
        return code
