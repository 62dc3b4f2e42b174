"""The widgets of one group of copies in the duplicates view: a card per photo, a box per group.

A card shows the photo at its size relative to the group's largest, what it is (pixel size,
format, file size, date, folder, how it differs from the kept one) and whether it stays; keys
pressed on a card are handed to the view as actions, so the whole view works from the keyboard.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFocusEvent, QKeyEvent, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import CopyGroup, CopyPhoto, display
from imagehash_app.gui.duplicates_text import badge_text, card_lines, human_size

PICTURE = 220  # px: the side of a photo's square on its card

# One style sheet for the whole view, chosen by each card's "kind" property: a style sheet per
# card made a page of 40 groups take a second to build.
STYLE = """
QFrame#card { border: 2px solid palette(mid); border-radius: 4px; }
QFrame#card[kind="keep"] { border-color: #2e7d32; }
QFrame#card[kind="reference"] { border-color: #1565c0; }
QFrame#card:focus { border: 3px solid palette(highlight); }
QLabel#badge { color: white; border-radius: 3px; padding: 1px 6px; background: #b3261e; }
QLabel#badge[kind="keep"] { background: #2e7d32; }
QLabel#badge[kind="reference"] { background: #1565c0; }
"""


class PhotoCard(QFrame):
    """One photo of a group: its picture, what it is, whether it stays, and "Keep this one"."""

    keepRequested = Signal(Path)
    keyAction = Signal(str, Path)  # "suggested", "not", "trash", "preview", and arrows "left"...
    focused = Signal(Path)

    def __init__(self, photo: CopyPhoto, chosen: bool, scale: float = 1.0, parent: QWidget | None = None) -> None:
        """`scale`: display pixels per photo pixel, the same for the whole group."""
        super().__init__(parent)
        self.photo = photo
        self.scale = scale if scale > 0 else 1.0
        self.setObjectName("card")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        kind = "keep" if photo.keep else "reference" if photo.reference else "trash"
        self.setProperty("kind", kind)
        self.badge = QLabel(badge_text(photo, chosen))
        self.badge.setObjectName("badge")
        self.badge.setProperty("kind", kind)
        self.picture = QLabel("…")
        self.picture.setFixedSize(QSize(PICTURE, PICTURE))
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.lines = [QLabel(text) for text in card_lines(photo)]
        self.keep_button = QPushButton("Keep this one")
        self.keep_button.setEnabled(not photo.keep)
        self.keep_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # K on the card does it
        self.keep_button.clicked.connect(lambda: self.keepRequested.emit(photo.path))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(2)
        layout.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.picture)
        for label in self.lines:
            label.setMaximumWidth(PICTURE)
            layout.addWidget(label)
        layout.addStretch(1)
        layout.addWidget(self.keep_button)
        self.setToolTip(f"{display(photo.path)}\n" + "\n".join(card_lines(photo)))
        self.setAccessibleName(f"{display(photo.path.name)}: {self.badge.text()}")

    def set_picture(self, pixmap: QPixmap) -> None:
        """Drawn at the photo's size relative to the group's largest (`scale`), so that a
        smaller copy looks smaller beside its original."""
        box = QSize(max(24, min(PICTURE, round(self.photo.width * self.scale))),
                    max(24, min(PICTURE, round(self.photo.height * self.scale))))
        self.picture.setPixmap(pixmap.scaled(box, Qt.AspectRatioMode.KeepAspectRatio,
                                             Qt.TransformationMode.SmoothTransformation))

    def set_unreadable(self, reason: str) -> None:
        self.picture.setText("cannot show it")
        self.picture.setToolTip(reason)

    def focusInEvent(self, event: QFocusEvent) -> None:  # noqa: N802 (Qt override)
        super().focusInEvent(event)
        self.focused.emit(self.photo.path)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        key = event.key()
        actions = {
            Qt.Key.Key_S: "suggested", Qt.Key.Key_N: "not", Qt.Key.Key_Delete: "trash",
            Qt.Key.Key_Space: "preview", Qt.Key.Key_Left: "left", Qt.Key.Key_Right: "right",
            Qt.Key.Key_Up: "up", Qt.Key.Key_Down: "down",
        }
        if key in (Qt.Key.Key_K, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.keepRequested.emit(self.photo.path)
        elif key in actions:
            self.keyAction.emit(actions[key], self.photo.path)
        else:
            super().keyPressEvent(event)
            return
        event.accept()


class GroupBox(QFrame):
    """A group of copies: a header, the photos side by side (keeper first) and the group's buttons."""

    keepRequested = Signal(Path)
    suggestedRequested = Signal(object)  # CopyGroup
    notDuplicatesRequested = Signal(object)
    trashRequested = Signal(object)

    def __init__(self, number: int, group: CopyGroup, chosen: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.group = group
        self.chosen = chosen
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.header = QLabel()
        self.set_number(number)
        self.cards: list[PhotoCard] = []
        row = QHBoxLayout()
        row.setSpacing(8)
        scale = PICTURE / max(1, *(max(p.width, p.height) for p in group.photos))
        for photo in sorted(group.photos, key=lambda p: not p.keep):
            card = PhotoCard(photo, chosen and photo.keep, scale)
            card.keepRequested.connect(self.keepRequested)
            self.cards.append(card)
            row.addWidget(card)
        row.addStretch(1)
        strip = QWidget()
        strip.setLayout(row)
        scroller = QScrollArea()
        scroller.setWidget(strip)
        scroller.setWidgetResizable(True)
        scroller.setFrameShape(QFrame.Shape.NoFrame)
        scroller.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroller.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        scroller.setMinimumHeight(strip.sizeHint().height() + 18)
        scroller.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.suggested_button = QPushButton("Keep suggested")
        self.suggested_button.setEnabled(chosen)
        self.suggested_button.clicked.connect(lambda: self.suggestedRequested.emit(group))
        self.not_button = QPushButton("Not duplicates")
        self.not_button.setToolTip("These are different photos: never show this group again")
        self.not_button.clicked.connect(lambda: self.notDuplicatesRequested.emit(group))
        removable = len(group.removable)
        self.trash_button = QPushButton(f"Move the other{'s' if removable != 1 else ''} to the trash…")
        self.trash_button.setEnabled(removable > 0)
        self.trash_button.clicked.connect(lambda: self.trashRequested.emit(group))
        buttons = QHBoxLayout()
        buttons.addWidget(self.header, 1)
        for button in (self.suggested_button, self.not_button, self.trash_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 6)
        layout.addLayout(buttons)
        layout.addWidget(scroller)

    def set_number(self, number: int) -> None:
        group = self.group
        free = human_size(group.reclaimable_bytes)
        self.header.setText(f"<b>Group {number}</b> · {len(group.photos)} photos · {free} to free")
