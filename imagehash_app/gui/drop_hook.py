"""A test hook driven by the environment, so that a benchmark can drive the real program the way a
person does: drop a photo on the window as soon as it shows, then quit when the results are painted.

    IMAGEHASH_APP_DROP=photo.jpg[:more.jpg]   a real QDropEvent carrying the photos' file URLs is
                                              delivered to the window once the event loop runs
    IMAGEHASH_APP_QUIT_AFTER_RESULTS=1         quit once the first results (or error) are shown

One line goes to stderr: `drop-hook: results=N ms=T` (T: drop to results painted), or
`drop-hook: failed ...`. Unset (every normal start), `install` does nothing.
benchmarks/cycle_launch.py launches the window hundreds of times this way.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QMimeData, QPoint, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QWidget

DROP_ENV = "IMAGEHASH_APP_DROP"
QUIT_ENV = "IMAGEHASH_APP_QUIT_AFTER_RESULTS"


def install(window: QWidget) -> None:
    """Schedule the drop (and the quit) when the environment asks for them."""
    wanted = os.environ.get(DROP_ENV)
    if not wanted:
        return
    paths = [Path(p) for p in wanted.split(os.pathsep) if p]
    quit_after = os.environ.get(QUIT_ENV) == "1"
    state: dict[str, float] = {}

    def done(text: str) -> None:
        print(f"drop-hook: {text}", file=sys.stderr, flush=True)
        if quit_after:
            QTimer.singleShot(0, window.close)

    def on_results(outcome: object) -> None:
        window.repaint()  # painted, as a person would see it
        ms = (time.perf_counter() - state["t0"]) * 1000
        n = sum(len(hits) for hits in getattr(outcome, "per_query", []))
        done(f"results={n} ms={ms:.0f}")

    window.searchFinished.connect(on_results)
    window.messageShown.connect(lambda text: done(f"message {text}") if "search" in text.lower() else None)

    def drop() -> None:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(p.resolve())) for p in paths])
        state["mime"] = mime  # type: ignore[assignment]  # alive as long as the events are
        point = QPoint(window.width() // 2, window.height() // 2)
        action = Qt.DropAction.CopyAction
        buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        enter = QDragEnterEvent(point, action, mime, buttons, mods)
        QCoreApplication.sendEvent(window, enter)
        state["t0"] = time.perf_counter()
        QCoreApplication.sendEvent(window, QDropEvent(point, action, mime, buttons, mods))

    QTimer.singleShot(0, drop)
