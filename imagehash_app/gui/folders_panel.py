"""The folders side panel: the library's folders with their counts, and the skipped-files list.

The panel only shows what it is given and emits what the person asked for; the window runs the
engine calls on the writer thread. Counts come from `Library.folders()` (`FolderInfo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import FolderInfo, display


def counts_text(folder: FolderInfo) -> str:
    """e.g. "1,204 indexed · 3 pending · 2 skipped" (zero counts other than indexed are left out)."""
    parts = [f"{folder.indexed:,} indexed"]
    if folder.pending:
        parts.append(f"{folder.pending:,} pending")
    if folder.skipped:
        parts.append(f"{folder.skipped:,} skipped")
    if not folder.online:
        parts.append("offline — folder not found")
    return " · ".join(parts)


class FoldersPanel(QWidget):
    """A list of folders with Add / Remove / Re-scan and a link to the skipped files."""

    addRequested = Signal()
    removeRequested = Signal(Path)
    rescanRequested = Signal(object)  # a Path, or None for every folder
    skippedRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(False)
        self.tree.setWordWrap(True)
        self._count = 0
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.add_button = QPushButton("Add…")
        self.add_button.setToolTip("Add a folder of photos (or drop a folder on the window)")
        self.add_button.clicked.connect(self.addRequested)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Forget this folder's photos (the files are not touched)")
        self.remove_button.clicked.connect(self._remove)
        self.rescan_button = QPushButton("Re-scan")
        self.rescan_button.setToolTip("Look for new, changed and deleted photos now")
        self.rescan_button.clicked.connect(self._rescan)
        self.skipped_label = QLabel()
        self.skipped_label.setTextFormat(Qt.TextFormat.RichText)
        self.skipped_label.linkActivated.connect(lambda _link: self.skippedRequested.emit())
        buttons = QHBoxLayout()
        for b in (self.add_button, self.remove_button, self.rescan_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.skipped_label)
        layout.addLayout(buttons)
        self._update_buttons()

    def set_folders(self, folders: Sequence[FolderInfo]) -> None:
        """Show `FolderInfo`s, keeping the selection where possible."""
        selected = self.selected_path()
        self._count = len(folders)
        self.tree.clear()
        folder_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_DirIcon)
        warn_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        for folder in folders:
            path = Path(folder.path)
            item = QTreeWidgetItem([f"{display(path.name or path)}\n{counts_text(folder)}"])
            item.setData(0, Qt.ItemDataRole.UserRole, path)
            item.setToolTip(0, display(path))
            item.setIcon(0, folder_icon if folder.online else warn_icon)
            self.tree.addTopLevelItem(item)
            if path == selected:
                item.setSelected(True)
        if not folders:
            hint = QTreeWidgetItem(["No folders yet.\nAdd one, or drop a folder\non the window."])
            hint.setFlags(Qt.ItemFlag.NoItemFlags)  # greyed out, not selectable
            self.tree.addTopLevelItem(hint)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        skipped = sum(f.skipped for f in folders)
        self.skipped_label.setText(
            f'<a href="#skipped">{skipped:,} skipped file{"s" if skipped != 1 else ""}…</a>' if skipped else ""
        )
        self.skipped_label.setVisible(bool(skipped))
        self._update_buttons()

    def selected_path(self) -> Path | None:
        """The folder selected in the list."""
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    def _update_buttons(self) -> None:
        has = self.selected_path() is not None
        self.remove_button.setEnabled(has)
        self.rescan_button.setText("Re-scan" if has else "Re-scan all")
        self.rescan_button.setEnabled(self._count > 0)

    def _remove(self) -> None:
        path = self.selected_path()
        if path is not None:
            self.removeRequested.emit(path)

    def _rescan(self) -> None:
        self.rescanRequested.emit(self.selected_path())


class SkippedDialog(QDialog):
    """Every skipped file with its reason (not an image, corrupt, permission denied, …)."""

    def __init__(self, skipped: Sequence[tuple[Path, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Skipped files")
        self.resize(760, 420)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["File", "Reason"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSortingEnabled(True)
        for path, reason in skipped:
            item = QTreeWidgetItem([display(path), reason])
            item.setToolTip(0, display(path))
            self.tree.addTopLevelItem(item)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        note = QLabel(
            f"{len(skipped):,} file{'s' if len(skipped) != 1 else ''} could not be indexed. "
            "They are tried again when they change."
        )
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.tree, 1)
        layout.addWidget(buttons)
