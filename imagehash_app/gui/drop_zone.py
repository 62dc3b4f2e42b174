"""What a drop or a paste carries, and the query pane that shows the photo being searched for.

`read_payload` turns any `QMimeData` (file-manager drops, browser drops of local file URLs, pasted
paths or pasted image data) into photos to search for, folders to add and files that are not photos,
so the window, the paste action and the tests all use one rule.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QMimeData, QRect, QSize, Qt, QUrl
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from imagehash_app.core.library import IMAGE_SUFFIXES, display
from imagehash_app.gui.local_urls import path_of


@dataclass
class DropPayload:
    """Dropped or pasted things, sorted by what the window does with them."""

    images: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.images or self.folders or self.rejected)


def _local_path(url: QUrl) -> Path | None:
    return path_of(url)


def _paths_from_text(text: str) -> list[Path]:
    """Paths or file:// URLs pasted as text, one per line."""
    paths = []
    for line in text.splitlines():
        line = line.strip().strip('"')
        if not line:
            continue
        url = QUrl(line)
        if url.isLocalFile():
            paths.append(path_of(url))
        elif line.startswith(("/", "~")) or (len(line) > 2 and line[1] == ":"):
            paths.append(Path(line).expanduser())
    return paths


def classify(paths: list[Path]) -> DropPayload:
    """Photos by suffix, folders, and the rest with a reason (decoding errors come later, from the engine)."""
    payload = DropPayload()
    for path in paths:
        if path.is_dir():
            payload.folders.append(path)
        elif not path.exists():
            payload.rejected.append((path, "it does not exist (moved or deleted?)"))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            payload.images.append(path)
        else:
            payload.rejected.append((path, "not an image"))
    return payload


def read_payload(mime: QMimeData) -> DropPayload:
    """Sort a drop or paste: local file URLs, else pasted paths, else raw image data saved to a temp file."""
    paths = [p for p in (_local_path(u) for u in mime.urls()) if p is not None] if mime.hasUrls() else []
    if not paths and mime.hasText():
        paths = _paths_from_text(mime.text())
    if paths:
        return classify(paths)
    if mime.hasImage():
        image = mime.imageData()
        if isinstance(image, QImage) and not image.isNull():
            saved = _save_pasted(image)
            if saved is not None:
                return DropPayload(images=[saved])
    remote = [u.toString() for u in mime.urls() if not u.isLocalFile()] if mime.hasUrls() else []
    if remote:
        return DropPayload(rejected=[(Path(remote[0]), "only photos on this computer can be searched")])
    return DropPayload()


def can_accept(mime: QMimeData) -> bool:
    """Whether a drag is worth accepting (checked on drag-enter, before anything is read from disk)."""
    return mime.hasUrls() or mime.hasImage() or mime.hasText()


def _save_pasted(image: QImage) -> Path | None:
    """Pasted pixels become a PNG in the temp folder so the engine can read them like any photo."""
    fd, name = tempfile.mkstemp(prefix="imagehash-paste-", suffix=".png")
    os.close(fd)
    return Path(name) if image.save(name, "PNG") else None


class QueryPane(QWidget):
    """The left pane: the query photo and its name, or a dashed "drop a photo here" hint."""

    HINT = "Drop a photo here\nor paste one (Ctrl+V)\nor use File ▸ Open…"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self._pixmap: QPixmap | None = None
        self._image_area = QLabel(self)
        self._image_area.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._image_area.setMinimumSize(QSize(200, 200))
        self._image_area.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._caption = QLabel(self)
        self._caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._caption.setWordWrap(True)
        self._caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self._image_area, 1)
        layout.addWidget(self._caption)
        self.clear()

    def clear(self) -> None:
        """Back to the hint."""
        self.path = None
        self._pixmap = None
        self._image_area.setText(self.HINT)
        self._image_area.setPixmap(QPixmap())
        self._image_area.setText(self.HINT)
        self._caption.setText("")
        self.update()

    def show_query(self, path: Path, caption: str = "") -> None:
        """Show the query's name now; its picture follows via `set_picture` when the thumbnail is ready."""
        self.path = path
        self._pixmap = None
        self._image_area.setPixmap(QPixmap())
        self._image_area.setText("…")
        self._caption.setText(caption or display(path.name))
        self._caption.setToolTip(display(path))
        self.update()

    def set_caption(self, text: str) -> None:
        """Text under the photo (name, result count, timing)."""
        self._caption.setText(text)

    def set_picture(self, pixmap: QPixmap) -> None:
        """Show the query photo, scaled to the pane."""
        self._pixmap = pixmap
        self._rescale()

    def resizeEvent(self, event: object) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None or self._pixmap.isNull():
            return
        area = self._image_area.size() - QSize(16, 16)
        self._image_area.setPixmap(
            self._pixmap.scaled(area, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        )

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        super().paintEvent(event)
        if self.path is not None:
            return
        painter = QPainter(self)
        colour = QColor(self.palette().color(QPalette.ColorRole.WindowText))
        colour.setAlpha(90)
        pen = QPen(colour, 2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        r: QRect = self._image_area.geometry().adjusted(6, 6, -6, -6)
        painter.drawRoundedRect(r, 12, 12)
        painter.end()
