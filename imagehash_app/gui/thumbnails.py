"""Thumbnails made off the GUI thread and cached on disk in <library>/thumbs.

Decoding a photo takes milliseconds to a second, so the results grid asks for thumbnails lazily (only
for the cells it paints) and a small `QThreadPool` makes them with `core.images.make_thumbnail`. The
cache key includes the file's size and mtime, so an edited photo gets a fresh thumbnail; the cache is
rebuildable and may be deleted at any time. `make_thumbnail` decodes JPEGs reduced (draft mode) and
holds every decode in the engine's pixel budget (`core.decode_budget`), shared with indexing and
search: a grid of huge PNGs cannot add its own gigabytes beside an index run. `QImage` (not `QPixmap`) crosses threads, as Qt requires.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from imagehash_app.core.library import make_thumbnail
from imagehash_app.gui.workers import Mailbox

THUMB_SIZE = 256


class ThumbnailCache:
    """Where a photo's thumbnail lives on disk, and how to make it."""

    def __init__(self, directory: Path | None, size: int = THUMB_SIZE) -> None:
        self.directory = directory
        self.size = size

    def cache_file(self, path: Path) -> Path | None:
        """The cache file for `path` at its current size and mtime (None when uncached or gone)."""
        if self.directory is None:
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        # The path's own bytes: a name that is not UTF-8 cannot be str.encode()d.
        key = os.fsencode(path) + f"|{st.st_size}|{st.st_mtime_ns}|{self.size}".encode()
        digest = hashlib.sha1(key, usedforsecurity=False).hexdigest()
        return self.directory / digest[:2] / f"{digest}.jpg"

    def load(self, path: Path) -> QImage:
        """Return the thumbnail, making and caching it if needed (call off the GUI thread).

        Raises `ImageDecodeError` when the photo cannot be decoded.
        """
        cached = self.cache_file(path)
        if cached is not None and cached.exists():
            image = QImage(str(cached))
            if not image.isNull():
                return image
        thumb = make_thumbnail(path, self.size)
        if cached is not None:
            # A full disk or read-only library only costs us the cache, never the thumbnail.
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                thumb.save(tmp, "JPEG", quality=85)
                os.replace(tmp, cached)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()  # no half-written file left behind
        data = thumb.tobytes("raw", "RGB")
        image = QImage(data, thumb.width, thumb.height, 3 * thumb.width, QImage.Format.Format_RGB888)
        return image.copy()  # own the pixels: `data` dies with this frame


class _ThumbTask(QRunnable):
    def __init__(self, loader: ThumbnailLoader, path: Path, generation: int) -> None:
        super().__init__()
        self._loader = loader
        self._path = path
        self._generation = generation

    def run(self) -> None:
        try:
            image = self._loader.cache.load(self._path)
        except Exception as exc:  # any failure just leaves the placeholder and a reason in the tooltip
            self._loader.mailbox.put((str(self._path), self._generation, None, str(getattr(exc, "reason", exc))))
        else:
            self._loader.mailbox.put((str(self._path), self._generation, image, ""))


class ThumbnailLoader(QObject):
    """Schedules thumbnails on its own pool; `ready` / `failed` fire on the GUI thread."""

    ready = Signal(str, QImage)
    failed = Signal(str, str)

    def __init__(self, cache: ThumbnailCache, threads: int = 2, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, threads))
        self._requested: set[str] = set()
        self._generation = 0
        self.mailbox = Mailbox(self._deliver, self)

    def request(self, path: Path, priority: int = 0) -> None:
        """Ask for a thumbnail once; later calls for the same path are free."""
        key = str(path)
        if key in self._requested:
            return
        self._requested.add(key)
        self.pool.start(_ThumbTask(self, path, self._generation), priority)

    def forget(self, path: Path) -> None:
        """Let `path` be asked for again (its earlier thumbnail went to a view showing another)."""
        self._requested.discard(str(path))

    def clear(self) -> None:
        """Forget queued requests (e.g. a new query replaced the results)."""
        self.pool.clear()
        self._generation += 1
        self._requested.clear()

    def shutdown(self) -> None:
        """Drop queued work and wait for the running thumbnails: no thread outlives the window."""
        self.clear()
        self.pool.waitForDone()

    def _deliver(self, message: tuple[str, int, object, str]) -> None:
        path, generation, image, error = message
        if generation != self._generation:
            return
        if isinstance(image, QImage):
            self.ready.emit(path, image)
        else:
            self.failed.emit(path, error)
