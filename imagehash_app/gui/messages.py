"""Errors turned into sentences for a person, and the inline bar that shows them.

The window never shows a traceback. Engine errors (`ImagehashError`) already carry a message written
for a person; the few OS-level failures a desktop user meets (full disk, vanished folder, permission)
are translated here. The bar is inline rather than a modal dialog so that background work can report
without stealing focus, and so tests can read it.
"""

from __future__ import annotations

import errno
import sqlite3
from enum import Enum

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStyle, QToolButton, QWidget

from imagehash_app.core.errors import (
    ImageDecodeError,
    ImagehashError,
    LibraryLockedError,
    WeightsUnavailableError,
)


class Level(Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC and SQLite's "database or disk is full"."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def describe(exc: BaseException, doing: str = "") -> str:
    """One or two sentences saying what happened and what to do."""
    prefix = f"Could not {doing}: " if doing else ""
    if is_disk_full(exc):
        return (
            f"{prefix}the disk is full. Free some space, then re-scan (Library ▸ Re-scan all); "
            "work done so far is kept."
        )
    if isinstance(exc, ImageDecodeError):
        where = f"{exc.path}" if exc.path is not None else "The file"
        return f"{where} cannot be searched: {exc.reason}."
    if isinstance(exc, LibraryLockedError | WeightsUnavailableError | ImagehashError):
        return f"{prefix}{exc}"
    if isinstance(exc, FileNotFoundError):
        return f"{prefix}{exc.filename or 'a file'} disappeared (moved, deleted or on an unplugged drive)."
    if isinstance(exc, PermissionError):
        return f"{prefix}permission denied for {exc.filename or 'a file'}."
    if isinstance(exc, OSError):
        return f"{prefix}{exc.strerror or exc}."
    return f"{prefix}an unexpected error happened ({type(exc).__name__}: {exc})."


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
