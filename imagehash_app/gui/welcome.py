"""The first-run page: what the app does and the two steps to get going."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QIcon
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget


class WelcomePage(QWidget):
    """Shown while the library has no folders: 1. add a folder, 2. drop a photo."""

    addFolderRequested = Signal()

    def __init__(self, icon: QIcon, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        logo = QLabel()
        logo.setPixmap(icon.pixmap(96, 96))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = QLabel("Find similar photos in your own folders")
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        subtitle = QLabel("Everything happens on this computer; nothing is uploaded.")
        subtitle.setAlignment(Qt.AlignmentFlag.AlignCenter)
        subtitle.setEnabled(False)  # the palette's disabled text: a quieter colour in light and dark themes

        self.add_button = QPushButton("Add a folder…")
        self.add_button.setDefault(True)
        self.add_button.clicked.connect(self.addFolderRequested)

        steps = QFrame()
        steps.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(steps)
        grid.setContentsMargins(24, 20, 24, 20)
        grid.setHorizontalSpacing(18)
        grid.setVerticalSpacing(14)
        rows = [
            (
                "1",
                "Add a folder of photos",
                "Imagehash looks at every photo once, in the background, and keeps a short "
                "code for each. You can also drop a folder on this window.",
            ),
            (
                "2",
                "Drop a photo on this window",
                "The photos that look most like it appear, best first. Double-click one to open "
                "it; right-click for more. Paste (Ctrl+V) and File ▸ Open… work too.",
            ),
        ]
        for row, (number, head, body) in enumerate(rows):
            badge = QLabel(number)
            badge_font = QFont(font)
            badge_font.setPointSizeF(font.pointSizeF() * 1.2)
            badge.setFont(badge_font)
            badge.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
            text = QLabel(f"<b>{head}</b><br>{body}")
            text.setWordWrap(True)
            grid.addWidget(badge, row, 0)
            grid.addWidget(text, row, 1)
        grid.addWidget(self.add_button, 0, 2, Qt.AlignmentFlag.AlignVCenter)
        grid.setColumnStretch(1, 1)

        column = QVBoxLayout()
        column.addStretch(2)
        column.addWidget(logo)
        column.addSpacing(8)
        column.addWidget(title)
        column.addWidget(subtitle)
        column.addSpacing(24)
        column.addWidget(steps)
        column.addStretch(3)
        outer = QGridLayout(self)
        outer.addLayout(column, 0, 1)
        outer.setColumnStretch(0, 1)
        outer.setColumnStretch(1, 3)
        outer.setColumnStretch(2, 1)
