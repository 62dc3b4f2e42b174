"""`imagehash-app` with no sub-command opens the window: the one place where the command line
hands over to the window, so that neither imports the other (tests/test_layers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from imagehash_app.failures import EXIT_ERROR


def open_window(library: Path | None) -> int:
    """Run the window on `library` (default: the user's); say so when it cannot be shown."""
    try:
        from imagehash_app.gui.app import run
    except ImportError as exc:
        print(
            f"imagehash-app: the window is not available ({exc}). "
            "Use a sub-command instead: imagehash-app --help",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return run(Path(library) if library else None)
