"""Start the desktop app: `imagehash-app-gui` (`main`), or `imagehash-app` with no sub-command
(through `imagehash_app.launcher`, which calls `run(library_path)`). Imports no command-line code."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QStyleFactory

from imagehash_app import failures
from imagehash_app.core.library import default_library_dir
from imagehash_app.gui import drop_hook
from imagehash_app.gui.icons import app_icon
from imagehash_app.gui.messages import Level, install_excepthook

ORG = "imagehash_app"
APP = "imagehash-app"


def _follow_system_theme(app: QApplication) -> None:
    """Keep the platform style (it follows the system's light/dark scheme on Linux, macOS and
    Windows 11); only the legacy "windows" style cannot draw a dark palette, so use Fusion there."""
    scheme = QGuiApplication.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark and app.style().name().lower() == "windows":
        app.setStyle(QStyleFactory.create("Fusion"))


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with the names QSettings and the desktop use (reused when one exists)."""
    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(APP)
    QGuiApplication.setDesktopFileName(APP)
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationDisplayName("Imagehash")
    app.setWindowIcon(app_icon())
    _follow_system_theme(app)
    return app


def announce_last_crash(window) -> Path | None:  # noqa: ANN001 (a MainWindow)
    """Say once that the app crashed last time, and where the details are (failures.py keeps
    the crashed process's faulthandler log); the log's path, or None when there was no crash."""
    crashed = failures.crash_from_last_time()
    if crashed is not None:
        window.show_message(failures.crash_message(crashed), Level.WARNING)
    return crashed


def run(library_path: Path | None = None, open_paths: list[Path] | None = None) -> int:
    """Open the window on `library_path` (default: the user's library) and run until it closes.

    `open_paths` (e.g. from a file manager's "Open with") are searched for at once, or added when
    they are folders.
    """
    from imagehash_app.gui.drop_zone import classify
    from imagehash_app.gui.main_window import MainWindow

    failures.enable_crash_log("window")  # a native crash leaves every thread's stack in a file
    app = create_application()
    window = MainWindow(Path(library_path) if library_path else default_library_dir())
    install_excepthook(lambda text: window.show_message(text, Level.ERROR))
    failures.log_warnings()
    announce_last_crash(window)
    window.show()
    drop_hook.install(window)  # only when IMAGEHASH_APP_DROP is set (benchmarks/cycle_launch.py)
    if open_paths:
        QTimer.singleShot(0, lambda: window.handle_payload(classify([Path(p) for p in open_paths])))
    try:
        return app.exec()
    finally:
        window.shutdown()


def main(argv: list[str] | None = None) -> int:
    """The windowed entry point (`imagehash-app-gui`, desktop entry `Exec=imagehash-app-gui %F`).

    Qt takes its own options (`-style fusion`, `-platform ...`); `--library DIR` names the library;
    the other arguments are photos or folders ("Open with"), searched for or added, or named in a
    message when they cannot be.
    """
    multiprocessing.freeze_support()  # decode workers in a frozen (PyInstaller) build
    args = list(sys.argv[1:] if argv is None else argv)
    app = create_application([sys.argv[0] if sys.argv else "imagehash-app-gui", *args])
    rest = app.arguments()[1:]  # what Qt left: its own options are removed
    parser = argparse.ArgumentParser(prog="imagehash-app-gui", add_help=False)
    parser.add_argument("--library", type=Path, default=None)
    known, paths = parser.parse_known_args(rest)
    return run(known.library, open_paths=[Path(p) for p in paths] or None)
