"""The first-run page: what the app does, the two steps to get going, and what it needs first (its
photo model, downloaded once, or a model file the person already has), with the download's
progress and, when it fails, the ways on in plain words."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QIcon
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class WelcomePage(QWidget):
    """Shown while the library has no folders: 1. add a folder, 2. drop a photo."""

    addFolderRequested = Signal()
    chooseModelRequested = Signal()  # "Choose a model file on this computer…"
    retryDownloadRequested = Signal()
    cancelDownloadRequested = Signal()

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
        column.addSpacing(12)
        column.addWidget(self._build_model_panel())
        column.addStretch(3)
        outer = QGridLayout(self)
        outer.addLayout(column, 0, 1)
        outer.setColumnStretch(0, 1)
        outer.setColumnStretch(1, 3)
        outer.setColumnStretch(2, 1)

    # --- the photo model: what is needed, the download, what to do when it fails ------------------
    def _build_model_panel(self) -> QFrame:
        self.model_panel = QFrame()
        self.model_panel.setFrameShape(QFrame.Shape.StyledPanel)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.model_label.setTextFormat(Qt.TextFormat.RichText)
        self.download_bar = QProgressBar()
        self.download_bar.setTextVisible(False)
        self.download_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancelDownloadRequested)
        self.retry_button = QPushButton("Try again")
        self.retry_button.clicked.connect(self.retryDownloadRequested)
        self.choose_button = QPushButton("Choose a model file on this computer…")
        self.choose_button.setToolTip(
            "A MobileNetV2 model file (.pth) copied from another computer or a USB stick"
        )
        self.choose_button.clicked.connect(self.chooseModelRequested)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.cancel_button, self.retry_button, self.choose_button):
            buttons.addWidget(button)
        box = QVBoxLayout(self.model_panel)
        box.setContentsMargins(24, 14, 24, 14)
        box.addWidget(self.model_label)
        box.addWidget(self.download_bar)
        box.addLayout(buttons)
        self.model_panel.setVisible(False)
        return self.model_panel

    def show_model_needed(self, size_text: str | None) -> None:
        """Say before anything is tried what the app needs (None: nothing, the panel hides)."""
        self.model_panel.setVisible(size_text is not None)
        if size_text is None:
            return
        self._buttons(cancel=False, retry=False)
        self.download_bar.setVisible(False)
        self.model_label.setText(
            f"<b>First, Imagehash needs its photo model</b> (about {size_text}). It is downloaded "
            "once from the internet when you add your first folder; after that everything works "
            "without a connection. No internet on this computer? Use a model file you already have."
        )

    def show_download(self, done: int, total: int | None) -> None:
        """"Downloading the photo model… 3.2 MB of 13.6 MB", with a bar that moves with the bytes."""
        self.model_panel.setVisible(True)
        self._buttons(cancel=True, retry=False)
        self.download_bar.setVisible(True)
        of = f"{done / 1e6:.1f} MB of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        self.model_label.setText(f"<b>Downloading the photo model…</b> {of}")
        if total:
            self.download_bar.setRange(0, 1000)
            self.download_bar.setValue(int(1000 * min(done, total) / total))
        else:
            self.download_bar.setRange(0, 0)  # busy: the server did not say how much

    def show_download_failed(self, text: str) -> None:
        """The download stopped: say why and offer to try again or to use a file."""
        self.model_panel.setVisible(True)
        self._buttons(cancel=False, retry=True)
        self.download_bar.setVisible(False)
        self.model_label.setText(f"<b>The photo model is not here yet.</b> {_escape(text)}")

    def _buttons(self, *, cancel: bool, retry: bool) -> None:
        self.cancel_button.setVisible(cancel)
        self.retry_button.setVisible(retry)
        self.choose_button.setVisible(not cancel)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
