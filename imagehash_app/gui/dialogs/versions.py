"""Library ▸ Versions…: the kept hasher versions, and a switch between them.

The window's way back after "Use the new version anyway" (or any fine-tune): the same list and
the same switch as `imagehash-app models list` / `models activate`, read on the reader thread and
switched on the writer (instant: every kept version keeps its codes).
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import ModelInfo
from imagehash_app.gui.workers import EngineThread, Job

COLUMNS = ("Version", "Method", "Created", "Trained on", "Held-out recall 10@10", "Note")


def held_out(info: ModelInfo) -> str:
    """The held-out figure a fine-tune recorded for this version (re-ranked kNN recall 10@10)."""
    figures = (info.metrics or {}).get("finetune", {}).get("new", {})
    value = figures.get("rerank_10@10")
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


def row_texts(info: ModelInfo) -> list[str]:
    """One table row: what `models list` prints for the version."""
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created)) if info.created else "–"
    note = info.note + ("" if info.complete else " (codes incomplete)")
    version = f"v{info.id}" + (" (in use)" if info.active else "")
    return [version, f"{info.method} {info.bits}-bit", created, f"{info.train_size:,}", held_out(info), note]


class VersionsDialog(QDialog):
    """Lists the versions; "Use this version" makes the selected one answer searches."""

    modelChanged = Signal(int)
    loaded = Signal()

    def __init__(self, writer: EngineThread, reader: EngineThread, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hasher versions")
        self.writer, self.reader = writer, reader
        self.versions: list[ModelInfo] = []
        self.intro = QLabel(
            "Each fine-tune keeps the earlier versions of the hasher. Switching is instant and "
            "changes which photos a search finds."
        )
        self.intro.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_button)
        self.table.doubleClicked.connect(lambda _i: self.use_selected())
        self.status = QLabel("Reading the versions…")
        self.status.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.use_button = QPushButton("Use this version")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self.use_selected)
        buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(760, 320)
        self.reload()

    def reload(self) -> Job:
        """Read the kept versions (on the reader)."""
        job = self.reader.call(lambda lib, _stop: lib.models(), "models")
        job.succeeded.connect(self._show)
        job.failed.connect(lambda exc: self.status.setText(f"Could not read the versions: {exc}"))
        return job

    @Slot(object)
    def _show(self, versions: list[ModelInfo]) -> None:
        self.versions = list(versions)
        self.table.setRowCount(len(self.versions))
        for row, info in enumerate(self.versions):
            for col, text in enumerate(row_texts(info)):
                item = QTableWidgetItem(text)
                if info.active:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                item.setData(Qt.ItemDataRole.UserRole, info.id)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        active = next((i for i in self.versions if i.active), None)
        self.status.setText(
            "No hasher yet: index some photos first." if not self.versions
            else f"Version {active.id} answers searches." if active else "No version is in use."
        )
        self._update_button()
        self.loaded.emit()

    def selected(self) -> ModelInfo | None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        return self.versions[min(rows)] if rows else None

    def _update_button(self) -> None:
        chosen = self.selected()
        self.use_button.setEnabled(chosen is not None and not chosen.active and chosen.complete)

    def use_selected(self) -> Job | None:
        """Make the selected version answer searches (on the writer)."""
        chosen = self.selected()
        if chosen is None or chosen.active:
            return None
        model_id = chosen.id
        self.use_button.setEnabled(False)
        self.status.setText(f"Switching to version {model_id}…")
        job = self.writer.call(lambda lib, _stop: lib.activate_model(model_id), "activate")
        job.succeeded.connect(self._on_activated)
        job.failed.connect(lambda exc: (self.status.setText(f"Could not switch: {exc}"), self._update_button()))
        return job

    @Slot(object)
    def _on_activated(self, info: ModelInfo) -> None:
        self.modelChanged.emit(info.id)
        self.reload()
