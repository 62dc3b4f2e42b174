"""Show a file selected in the system's file manager ("Open containing folder").

macOS: `open -R`; Windows: `explorer /select,`; Linux and the BSDs: the freedesktop
FileManager1 D-Bus interface (Nautilus, Dolphin, Nemo, Caja, Thunar…). Where none answers the
caller opens the folder instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QProcess, QUrl

FILE_MANAGER = ("org.freedesktop.FileManager1", "/org/freedesktop/FileManager1",
                "org.freedesktop.FileManager1")


def reveal_command(path: Path, platform: str = sys.platform) -> list[str] | None:
    """The command that shows `path` selected, where one is standard for `platform`."""
    if platform == "darwin":
        return ["open", "-R", str(path)]
    if platform.startswith("win"):
        return ["explorer", f"/select,{path}"]
    return None


def reveal(path: Path) -> bool:
    """Show `path` selected in the file manager; False when nothing could (open the folder then)."""
    command = reveal_command(path)
    if command is not None:
        return bool(QProcess.startDetached(command[0], command[1:]))
    try:
        from PySide6.QtDBus import QDBusConnection, QDBusInterface
    except ImportError:  # a Qt build without D-Bus
        return False
    bus = QDBusConnection.sessionBus()
    if not bus.isConnected():
        return False
    manager = QDBusInterface(*FILE_MANAGER, bus)
    if not manager.isValid():  # no file manager offers the interface
        return False
    reply = manager.call("ShowItems", [QUrl.fromLocalFile(str(path)).toString()], "")
    return not reply.errorMessage()
