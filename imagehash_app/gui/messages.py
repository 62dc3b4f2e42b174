"""Errors turned into sentences for a person, and the inline bar that shows them.

The window never shows a traceback. Engine errors (`ImagehashError`) already carry a message written
for a person; other failures get the same sentence as on the command line (imagehash_app/failures.py)
with their details in the same log file, and an exception no slot caught reaches the excepthook. The bar is inline rather than a modal dialog so that background work can report
without stealing focus, and so tests can read it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStyle, QToolButton, QWidget

from imagehash_app import failures
from imagehash_app.core.errors import (
    ImageDecodeError,
    LibraryLockedError,
    WeightsUnavailableError,
    is_disk_full,
)

__all__ = ["Level", "MessageBar", "describe", "install_excepthook", "is_disk_full"]


class Level(Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def describe(exc: BaseException, doing: str = "", library: Path | None = None) -> str:
    """One sentence saying what happened and what to do: the command line's sentence (see
    imagehash_app/failures.py), its details logged to the same log file."""
    prefix = f"Could not {doing}: " if doing else ""
    if isinstance(exc, ImageDecodeError):
        where = f"{exc.path}" if exc.path is not None else "The file"
        return f"{where} cannot be searched: {exc.reason}."
    if isinstance(exc, LibraryLockedError | WeightsUnavailableError):
        return f"{prefix}{exc}"
    if not is_disk_full(exc) and library is None:
        if isinstance(exc, FileNotFoundError):
            return f"{prefix}{exc.filename or 'a file'} disappeared (moved, deleted or on an unplugged drive)."
        if isinstance(exc, PermissionError):
            return f"{prefix}permission denied for {exc.filename or 'a file'}."
    message, _code = failures.report(exc, library, context=f"window: {doing}")
    if prefix and message[1:2].islower():  # "Could not index: the disk ..."
        message = message[:1].lower() + message[1:]
    return f"{prefix}{message}"


class MessageBar(QFrame):
    """A dismissible, tinted strip above the content with an optional action button."""

    actionTriggered = Signal(str)

    _TINTS = {Level.INFO: QColor(59, 130, 246), Level.WARNING: QColor(234, 179, 8), Level.ERROR: QColor(239, 68, 68)}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = Level.INFO
        self._action_id = ""
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action = QPushButton()
        self.action.clicked.connect(lambda: self.actionTriggered.emit(self._action_id))
        close = QToolButton()
        close.setAutoRaise(True)
        close.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarCloseButton))
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.icon)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.action)
        layout.addWidget(close)
        self.hide()

    def show_message(self, text: str, level: Level = Level.INFO, action: str = "", action_id: str = "") -> None:
        """Show `text`; with `action`, a button that emits `actionTriggered(action_id)`."""
        self.level = level
        self._action_id = action_id
        icons = {
            Level.INFO: QStyle.StandardPixmap.SP_MessageBoxInformation,
            Level.WARNING: QStyle.StandardPixmap.SP_MessageBoxWarning,
            Level.ERROR: QStyle.StandardPixmap.SP_MessageBoxCritical,
        }
        self.icon.setPixmap(self.style().standardIcon(icons[level]).pixmap(22, 22))
        self.text.setText(text)
        self.action.setText(action)
        self.action.setVisible(bool(action))
        self.show()
        self.update()

    def dismiss(self) -> None:
        """Hide the bar."""
        self.text.setText("")
        self.hide()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        # A translucent tint over the window colour reads well on light and dark palettes alike.
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        tint = QColor(self._TINTS[self.level])
        tint.setAlpha(48)
        border = QColor(self._TINTS[self.level])
        border.setAlpha(140)
        painter.setPen(border)
        painter.setBrush(tint)
        painter.drawRoundedRect(self.rect().adjusted(1, 1, -1, -1), 6, 6)
        painter.end()
        super().paintEvent(event)

    def sizeHint(self):  # noqa: D102, N802
        hint = super().sizeHint()
        return hint.expandedTo(self.minimumSizeHint())


def palette_is_dark(palette: QPalette) -> bool:
    """Whether the active palette is a dark one (window darker than its text)."""
    return palette.color(QPalette.ColorRole.Window).lightness() < palette.color(QPalette.ColorRole.WindowText).lightness()


def install_excepthook(show: Callable[[str], None]) -> None:
    """Route exceptions that escape Qt slots and threads to `show` as one sentence (details to the
    log) instead of a traceback on stderr."""

    def hook(exc_type, exc, tb) -> None:
        if exc is None:
            exc = exc_type()
        if tb is not None and exc.__traceback__ is None:
            exc = exc.with_traceback(tb)
        if isinstance(exc, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        try:
            show(describe(exc))
        except Exception:  # noqa: BLE001 (the window may be gone; never recurse)
            message, _ = failures.explain(exc)
            print(f"imagehash-app: {message}", file=sys.stderr)

    sys.excepthook = hook
    threading.excepthook = lambda args: hook(args.exc_type, args.exc_value, args.exc_traceback)
