"""Preferences: the library's settings, edited in a form and saved with the library.

Backbone, weights and code length decide what a stored code means. The engine fixes them once
photos are indexed (codes made with other ones would not compare), so the dialog offers them only
before the first index and otherwise says why they are greyed out and what to do instead. The dialog
only computes the changes; the window hands them to `Library.update_settings` on the writer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import IDENTITY_FIELDS, LibrarySettings

BITS = (16, 32, 64, 128)
DEVICES = ("auto", "cpu", "cuda", "mps")


# Asks the engine how many photos some patterns leave out; the answer comes back through
# `show_excluded` (the window runs it on its reader thread).
ExcludedCounter = Callable[[list[str], Callable[[object], None]], None]

EXCLUDE_HELP = (
    "One pattern per line, as in .gitignore: daisy/ leaves out every folder named daisy, "
    "*.gif every GIF, /raw/ the raw folder at the top of a folder, !keep.jpg brings one back."
)


class PreferencesDialog(QDialog):
    """A form over `LibrarySettings`; `changes()` returns only what the person changed.

    With a `count_excluded`, the dialog says live (a moment after typing stops) how many
    photos the exclude patterns leave out."""

    excludedCounted = Signal(str)

    def __init__(
        self,
        settings: LibrarySettings,
        backbones: list[str],
        identity_locked: bool,
        parent: QWidget | None = None,
        count_excluded: ExcludedCounter | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self._original = settings

        self.backbone = QComboBox()
        names = list(backbones)
        if settings.backbone not in names:
            names.insert(0, settings.backbone)
        self.backbone.addItems(names)
        self.backbone.setCurrentText(settings.backbone)

        self.weights = QComboBox()
        self.weights.setEditable(True)
        self.weights.addItems(["auto"])
        self.weights.setCurrentText(str(settings.weights))
        self.weights.setToolTip('"auto" downloads the pretrained weights once; or choose a local weights file')
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_weights)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights, 1)
        weights_row.addWidget(browse)

        self.bits = QComboBox()
        self.bits.addItems([str(b) for b in BITS])
        self.bits.setCurrentText(str(settings.bits))

        self.rerank = QSpinBox()
        self.rerank.setRange(1, 100_000)
        self.rerank.setValue(settings.rerank_depth)
        self.rerank.setToolTip("How many Hamming candidates are re-ranked with the decoded features (R)")

        self.exclude = QPlainTextEdit("\n".join(settings.exclude_patterns))
        self.exclude.setPlaceholderText("One pattern per line, e.g. Screenshots/ or *.gif")
        self.exclude.setToolTip(EXCLUDE_HELP)
        self.exclude.setFixedHeight(80)
        self.excluded_label = QLabel(EXCLUDE_HELP)
        self.excluded_label.setWordWrap(True)
        self._count_excluded = count_excluded
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(300)
        self._count_timer.timeout.connect(self._recount)
        self._asked = 0  # only the answer to the latest patterns is shown
        if count_excluded is not None:
            self.exclude.textChanged.connect(self._count_timer.start)
            self._count_timer.start()

        self.threads = QSpinBox()
        self.threads.setRange(0, 64)
        self.threads.setSpecialValueText("automatic")
        self.threads.setValue(settings.threads or 0)

        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.setCurrentText(settings.device)

        form = QFormLayout()
        form.addRow("Backbone", self.backbone)
        form.addRow("Weights", weights_row)
        form.addRow("Code length (bits)", self.bits)
        form.addRow("Re-rank depth R", self.rerank)
        form.addRow("Excluded patterns", self.exclude)
        form.addRow("", self.excluded_label)
        form.addRow("Decoding threads", self.threads)
        form.addRow("Device", self.device)

        self.note = QLabel(
            "Backbone, weights and code length are fixed once photos are indexed: codes made "
            "with other ones would not compare. To try others, start a new library "
            "(imagehash-app --library OTHER_DIR)."
            if identity_locked
            else "Backbone, weights and code length can be changed until the first photos are "
            "indexed; after that they stay as they are."
        )
        self.note.setWordWrap(True)
        self.note.setEnabled(False)  # quieter text, from the palette
        for widget in (self.backbone, self.weights, browse, self.bits):
            widget.setEnabled(not identity_locked)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addWidget(buttons)

    def patterns(self) -> list[str]:
        """The exclude patterns as typed, one a line."""
        return [ln.strip() for ln in self.exclude.toPlainText().splitlines() if ln.strip()]

    def _recount(self) -> None:
        if self._count_excluded is None:
            return
        self._asked += 1
        asked = self._asked
        self.excluded_label.setText("Counting the photos these patterns leave out…")
        self._count_excluded(self.patterns(), lambda answer: self.show_excluded(answer, asked))

    def show_excluded(self, answer: object, asked: int | None = None) -> None:
        """The engine's count (`(left out, in all)`) or its error, for the patterns last typed."""
        if asked is not None and asked != self._asked:
            return
        if isinstance(answer, tuple):
            left_out, total = answer
            text = (
                "No patterns: every photo in the folders is indexed." if not self.patterns()
                else f"These patterns leave out {left_out:,} of {total:,} photos in the library's folders."
            )
        else:
            text = str(answer)
        self.excluded_label.setText(text)
        self.excludedCounted.emit(text)

    def changes(self) -> dict[str, Any]:
        """The settings that differ from the library's, as keyword arguments for `update_settings`."""
        wanted: dict[str, Any] = {
            "backbone": self.backbone.currentText(),
            "weights": self.weights.currentText().strip() or "auto",
            "bits": int(self.bits.currentText()),
            "rerank_depth": self.rerank.value(),
            "exclude_patterns": self.patterns(),
            "threads": self.threads.value() or None,
            "device": self.device.currentText(),
        }
        return {k: v for k, v in wanted.items() if getattr(self._original, k) != v}

    def changes_identity(self) -> bool:
        """True when backbone, weights or code length change (the reader must reload its backbone)."""
        return any(k in IDENTITY_FIELDS for k in self.changes())

    def _choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose backbone weights", str(Path.home()), "PyTorch weights (*.pth *.pt *.safetensors);;All files (*)"
        )
        if path:
            self.weights.setCurrentText(path)
