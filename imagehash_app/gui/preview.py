"""A larger preview of one result (space bar), as file managers offer: no viewer to start.

Qt reads the photo itself (EXIF orientation applied), scaled to most of the screen; space or
Escape closes it, Left/Right step through the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImageReader, QKeyEvent, QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from imagehash_app.core.library import display


def read_scaled(path: Path, box: QSize) -> tuple[QPixmap, str]:
    """The photo scaled into `box` (decoded at that size where the format allows), or why not."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > box.width() or size.height() > box.height()):
        reader.setScaledSize(size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        return QPixmap(), reader.errorString() or "cannot be shown"
    return QPixmap.fromImage(image), ""


class PreviewDialog(QDialog):
    """One photo large; Left/Right move through `paths`, space or Escape close."""

    def __init__(self, paths: Sequence[Path], current: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paths = list(paths)
        self.current = current
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption = QLabel()
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.caption)
        screen = (parent.screen() if parent is not None else self.screen()).availableGeometry()
        self.box = QSize(int(screen.width() * 0.8), int(screen.height() * 0.8))
        self.show_photo(current)

    def show_photo(self, index: int) -> None:
        """Show `paths[index]`."""
        self.current = max(0, min(index, len(self.paths) - 1))
        path = self.paths[self.current]
        pixmap, problem = read_scaled(path, self.box)
        self.picture.setPixmap(pixmap)
        if problem:
            self.picture.setText(f"{display(path.name)} cannot be shown here: {problem}.")
        self.caption.setText(f"{display(path)}  ·  {self.current + 1} of {len(self.paths)}")
        self.setWindowTitle(display(path.name))
        self.adjustSize()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        key = event.key()
        if key in (Qt.Key.Key_Space, Qt.Key.Key_Escape):
            self.accept()
        elif key == Qt.Key.Key_Right:
            self.show_photo(self.current + 1)
        elif key == Qt.Key.Key_Left:
            self.show_photo(self.current - 1)
        else:
            super().keyPressEvent(event)
