"""Watch the library's folders while the window is open; report bursts of changes once, debounced.

watchdog watches whole trees (Qt's QFileSystemWatcher does one directory at a time and runs out of
inotify handles on big photo trees). Its callbacks run on watchdog's own thread, so they only post a
queued signal; the debounce timer and everything after it live on the GUI thread. Copying 500 photos
into a folder therefore becomes one re-scan of that folder, a couple of seconds after the copy ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from imagehash_app.core.library import IMAGE_SUFFIXES


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher, root: Path) -> None:
        self._watcher = watcher
        self._root = root

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [Path(str(p)) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if any(self._watcher.ignored(p) for p in paths):
            return
        relevant = event.is_directory or any(p.suffix.lower() in IMAGE_SUFFIXES for p in paths)
        if relevant:
            self._watcher._post.emit(str(self._root))


class FolderWatcher(QObject):
    """Emits `changed(list[Path])` with the folders that changed, at most once per `delay_ms` burst."""

    changed = Signal(list)
    _post = Signal(str)

    def __init__(self, delay_ms: int = 2000, ignore: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # The library's own folder (thumbnail cache, catalogue) may sit inside a watched folder.
        self._ignore = ignore.resolve() if ignore is not None else None
        self._observer: Observer | None = None
        self._roots: set[Path] = set()
        self._dirty: set[Path] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._flush)
        self._post.connect(self._on_event, Qt.ConnectionType.QueuedConnection)

    def watch(self, folders: Iterable[Path]) -> None:
        """Watch exactly these folders (missing ones are skipped until they come back)."""
        roots = {Path(f) for f in folders if Path(f).is_dir()}
        if roots == self._roots and self._observer is not None:
            return
        self.stop()
        self._roots = roots
        if not roots:
            return
        observer = Observer()
        observer.daemon = True
        for root in sorted(roots):
            with contextlib.suppress(OSError):  # vanished between the check and here, or no permission
                observer.schedule(_Handler(self, root), str(root), recursive=True)
        observer.start()
        self._observer = observer

    def ignored(self, path: Path) -> bool:
        """True for paths inside the library folder (called on watchdog's thread; read-only)."""
        return self._ignore is not None and path.is_relative_to(self._ignore)

    def watched(self) -> set[Path]:
        """The folders being watched now."""
        return set(self._roots)

    def stop(self) -> None:
        """Stop watchdog's threads and wait for them (no thread outlives the window)."""
        self._timer.stop()
        self._dirty.clear()
        observer, self._observer = self._observer, None
        self._roots = set()
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    @Slot(str)
    def _on_event(self, root: str) -> None:
        if Path(root) in self._roots:
            self._dirty.add(Path(root))
            self._timer.start()  # restart: wait for the burst to end

    @Slot()
    def _flush(self) -> None:
        dirty, self._dirty = sorted(self._dirty), set()
        if dirty:
            self.changed.emit(dirty)
