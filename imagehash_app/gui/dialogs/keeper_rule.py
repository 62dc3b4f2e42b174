"""Which copy of a group to keep: the keeper rule's order, and the reference folders.

The small preferences control of the duplicates view: the criteria of `KeeperRule` in the order
they are compared (move them up and down, leave some out) and the library folders whose photos
are always kept and never touched. The rule in words updates as it changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import KeeperRule, display

_NAMES = {
    "pixels": "More pixels",
    "compression": "Less compression",
    "format": "Original formats first (RAW, HEIC/TIFF, JPEG, WebP, PNG)",
    "date": "Older photo",
}
_CRITERIA = tuple(KeeperRule().order) + tuple(c for c in _NAMES if c not in KeeperRule().order)


class KeeperRuleDialog(QDialog):
    """Reorder and tick the criteria; tick the reference folders."""

    def __init__(
        self,
        rule: KeeperRule,
        folders: Sequence[Path],
        references: Sequence[Path],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Which copy to keep")
        self.criteria = QListWidget()
        ordered = list(rule.order) + [c for c in _CRITERIA if c not in rule.order]
        for name in ordered:
            item = QListWidgetItem(_NAMES.get(name, name))
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in rule.order else Qt.CheckState.Unchecked)
            self.criteria.addItem(item)
        self.criteria.setCurrentRow(0)
        self.criteria.itemChanged.connect(lambda _i: self._update())
        up, down = QPushButton("Move &up"), QPushButton("Move &down")
        up.clicked.connect(lambda: self._move(-1))
        down.clicked.connect(lambda: self._move(1))
        moves = QVBoxLayout()
        moves.addWidget(up)
        moves.addWidget(down)
        moves.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.criteria, 1)
        row.addLayout(moves)
        self.words = QLabel()
        self.words.setWordWrap(True)

        self.folders = QListWidget()
        wanted = {Path(p) for p in references}
        for folder in folders:
            item = QListWidgetItem(display(folder))
            item.setData(Qt.ItemDataRole.UserRole, str(folder))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if Path(folder) in wanted else Qt.CheckState.Unchecked)
            self.folders.addItem(item)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Keep the copy that wins the first criterion that differs:"))
        layout.addLayout(row)
        layout.addWidget(self.words)
        layout.addWidget(QLabel("Reference folders: their photos are always kept and never moved to the trash."))
        layout.addWidget(self.folders)
        layout.addWidget(self.buttons)
        self._update()

    def _move(self, step: int) -> None:
        row = self.criteria.currentRow()
        target = row + step
        if row < 0 or not 0 <= target < self.criteria.count():
            return
        item = self.criteria.takeItem(row)
        self.criteria.insertItem(target, item)
        self.criteria.setCurrentRow(target)
        self._update()

    def _order(self) -> tuple[str, ...]:
        items = [self.criteria.item(i) for i in range(self.criteria.count())]
        return tuple(str(i.data(Qt.ItemDataRole.UserRole)) for i in items
                     if i.checkState() == Qt.CheckState.Checked)

    def _update(self) -> None:
        order = self._order()
        ok = bool(order)
        self.words.setText(KeeperRule(order).describe() if ok else "Tick at least one criterion.")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def rule(self) -> KeeperRule:
        """The rule as ticked and ordered."""
        return KeeperRule(self._order())

    def references(self) -> list[Path]:
        """The ticked reference folders."""
        items = [self.folders.item(i) for i in range(self.folders.count())]
        return [Path(str(i.data(Qt.ItemDataRole.UserRole))) for i in items
                if i.checkState() == Qt.CheckState.Checked]
