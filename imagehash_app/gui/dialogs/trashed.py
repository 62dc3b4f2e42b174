"""What this library moved to the system trash, and from where (restoring is the trash's job)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import TrashedRow, display

COLUMNS = ("When", "Photo", "From folder", "Size", "Kept instead")


def record_texts(record: TrashedRow) -> list[str]:
    """One row of `Library.trashed()`: when, the file's name, its folder, its size, the copy kept."""
    return [
        time.strftime("%Y-%m-%d %H:%M", time.localtime(record.trashed)) if record.trashed else "–",
        display(record.path.name),
        display(record.path.parent),
        f"{record.bytes / 1000:,.0f} KB" if record.bytes else "–",
        display(record.keeper) if record.keeper is not None else "–",
    ]


class TrashedDialog(QDialog):
    """A read-only table, oldest first as the library lists them."""

    def __init__(self, records: Sequence[TrashedRow], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Photos moved to the trash")
        n = len(records)
        intro = QLabel(
            f"{n} photo{'s' if n != 1 else ''} moved to the system trash from this library. "
            "To put one back, restore it from the system trash; the next index finds it again."
            if n else "Nothing has been moved to the trash from this library.")
        intro.setWordWrap(True)
        self.table = QTableWidget(n, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        for row, record in enumerate(records):
            for col, text in enumerate(record_texts(record)):
                item = QTableWidgetItem(text)
                item.setToolTip(display(record.path))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(760, 420)
