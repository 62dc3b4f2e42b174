"""Library > Improve search for my photos…: fine-tune the hasher on this library, then Keep or
Roll back.

The dialog is modeless: the fine-tune runs as a job on the window's writer thread while searches
keep running on the reader, answered by the current version until the new one is complete (the
engine swaps versions in one transaction; see docs/ARCHITECTURE.md). It only schedules engine calls
and shows what they report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import (
    COMPARE_METHODS,
    DEFAULT_METHOD,
    FINETUNE_METHODS,
    SUPERVISED_METHODS,
    FinetunePlan,
    FinetuneProgress,
    FinetuneResult,
    ModelInfo,
    WordsFinetuneResult,
    WordsPlan,
)
from imagehash_app.gui.workers import EngineThread, Job

if TYPE_CHECKING:
    from imagehash_app.gui.main_window import MainWindow

PHASES = {
    "prepare": "Preparing",
    "train": "Learning from your photos",
    "evaluate": "Comparing the new version with the current one",
    "encode": "Re-encoding the library",
    "swap": "Switching versions",
    "done": "Done",
}
# The method choice's entry for search by words (core/words/crossmodal.py): offered only when
# enough photos carry words; its version is a second code per photo, used by the search box only.
WORDS_METHOD = "ugach"
COMPARE_CHOICE = "compare"  # the method choice's entry that compares the methods
ROWS = (
    ("rerank_10@10", "Top 10 found (as search shows them)"),
    ("rerank_10@100", "Top 10 within the first 100"),
    ("hamming_10@10", "Top 10 found by codes alone"),
    ("hamming_10@100", "Top 10 within the first 100, codes alone"),
)


def minutes(seconds: float) -> str:
    """'about 3 minutes' style wording for the estimate."""
    if seconds < 90:
        return "about a minute" if seconds > 40 else "less than a minute"
    return f"about {round(seconds / 60)} minutes"


def elapsed(seconds: float) -> str:
    """'1 min 10 s' style wording for a measured duration."""
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def event_text(event: FinetuneProgress) -> str:
    """One line for a `FinetuneProgress`: phase, count, loss and time left."""
    label = PHASES.get(event.phase, event.phase.capitalize())
    parts = [label]
    if event.phase == "train" and event.total:
        parts.append(f"epoch {event.done} of {event.total}")
        if event.loss is not None:
            parts.append(f"loss {event.loss:.3f}")
    elif event.phase == "encode" and event.total:
        parts.append(f"{event.done:,} of {event.total:,} photos")
    if event.eta_s is not None and event.done < event.total:
        parts.append(f"{minutes(event.eta_s).replace('about ', '')} left")
    return " · ".join(parts)


class FinetuneDialog(QDialog):
    """Plan → run (progress, cancel) → before/after figures → Keep / Roll back."""

    modelChanged = Signal(int)  # a version was activated or rolled back to: the window refreshes
    progressed = Signal(object)  # each FinetuneProgress (tests and the status bar follow it)
    finetuneFinished = Signal(object)  # the FinetuneResult, or None when cancelled or failed

    def __init__(self, writer: EngineThread, reader: EngineThread, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Improve search for my photos")
        self.setModal(False)
        self.writer, self.reader = writer, reader
        self.plan: FinetunePlan | None = None
        self.result: FinetuneResult | WordsFinetuneResult | None = None
        self.words_plan: WordsPlan | None = None
        self.job: Job | None = None

        self.intro = QLabel("Looking at your library…")
        self.intro.setWordWrap(True)
        self.force = QCheckBox("Switch to the new version even if it is not better")
        self.force.setToolTip("Normally a new version that does worse on the photos kept aside is not used.")
        # The hashing method: the unsupervised ones always; DSH, DPSH and DSDH once the person has
        # marked enough results ("More like this" / "Not similar") for them to learn from.
        self.method = QComboBox()
        self.method.setToolTip("URPH is the default; the others are the seed papers' methods.")
        self.method.hide()
        self.method.activated.connect(lambda _i: self._load_plan())
        self.progress_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.figures = QWidget()
        self.figures_grid = QGridLayout(self.figures)
        self.figures.hide()
        self.comparison = QWidget()  # per compared method: what it found, how long it took
        self.comparison_grid = QGridLayout(self.comparison)
        self.comparison.hide()
        self.outcome = QLabel("")
        self.outcome.setWordWrap(True)

        self.buttons = QDialogButtonBox()
        self.start_button = self._button("Start", self.start, default=True)
        self.cancel_button = self._button("Cancel", self.cancel)
        self.keep_button = self._button("Keep", self.keep, default=True)
        self.rollback_button = self._button("Roll back", self.roll_back)
        self.use_new_button = self._button("Use the new version anyway", self.use_new)
        self.close_button = self._button("Close", self.close)
        self._show_buttons(self.start_button, self.close_button)
        self.start_button.setEnabled(False)

        layout = QVBoxLayout(self)
        for widget in (self.intro, self.method, self.force, self.progress_label, self.progress_bar,
                       self.comparison, self.figures, self.outcome):
            layout.addWidget(widget)
        layout.addWidget(self.buttons)
        self.resize(520, 0)
        self._load_plan()

    def _button(self, text: str, slot: Callable[[], object], default: bool = False) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        button.setAutoDefault(default)
        self.buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        return button

    def _show_buttons(self, *visible: QPushButton) -> None:
        for button in self.buttons.buttons():
            button.setVisible(button in visible)
        if visible:
            visible[0].setDefault(True)

    # --- 1. what will happen --------------------------------------------------------------
    def _load_plan(self) -> None:
        method = self.chosen_method()
        if method == WORDS_METHOD:
            words = self.reader.call(lambda lib, _stop: lib.words_finetune_plan(), "words-plan")
            words.succeeded.connect(self._show_words_plan)
            words.failed.connect(self._fail)
            return
        compare = COMPARE_METHODS if method == COMPARE_CHOICE else ()
        job = self.reader.call(
            lambda lib, _stop: lib.finetune_plan(method=method if not compare else DEFAULT_METHOD,
                                                 compare=compare),
            "finetune-plan",
        )
        job.succeeded.connect(self._show_plan)
        job.failed.connect(self._fail)

    def chosen_method(self) -> str:
        return self.method.currentData() or DEFAULT_METHOD

    def _offer_methods(self, plan: FinetunePlan) -> None:
        """Fill the method choice once: the supervised methods only with enough marks."""
        if self.method.count():
            return
        for name in FINETUNE_METHODS:
            if name in SUPERVISED_METHODS and plan.supervised_problem:
                continue
            label = f"{name} (learns from your marks)" if name in SUPERVISED_METHODS else name
            self.method.addItem(label, name)
            if name == COMPARE_METHODS[-1]:  # after the unsupervised ones: all of them at once
                self.method.addItem("Compare these and keep the best (about 5 minutes)", COMPARE_CHOICE)
        if plan.supervised_problem:
            self.method.setToolTip(plan.supervised_problem)
        self.method.show()
        words = self.reader.call(lambda lib, _stop: lib.words_finetune_plan(), "words-plan")
        words.succeeded.connect(self._offer_words)

    @Slot(object)
    def _offer_words(self, plan: WordsPlan) -> None:
        """Add search by words to the choice when enough photos carry words (not offered otherwise)."""
        self.words_plan = plan
        if plan.offered and self.method.findData(WORDS_METHOD) < 0:
            self.method.addItem("Search by words (UGACH: learns from the photos' words)", WORDS_METHOD)

    @Slot(object)
    def _show_words_plan(self, plan: WordsPlan) -> None:
        self.intro.setText(
            f"{plan.reason} It learns a second code per photo, used only by the search box; "
            "search by example stays as it is. A fifth of the photos carrying words is kept aside "
            "to check the result."
        )
        self.force.hide()
        self.start_button.setEnabled(plan.offered)
        self.adjustSize()

    @Slot(object)
    def _show_plan(self, plan: FinetunePlan) -> None:
        self.plan = plan
        if not plan.resumable:
            self._offer_methods(plan)
        if plan.resumable:
            self.intro.setText(
                "An earlier improvement was interrupted while re-encoding the library. Start finishes "
                "it; searching keeps working with the current version meanwhile."
            )
            self.force.hide()
        elif plan.problem:
            self.intro.setText(plan.problem)
            self._show_buttons(self.close_button)
            return
        elif plan.compare:
            self.intro.setText(
                f"Each of {len(plan.compare)} methods ({', '.join(plan.compare)}) will learn from "
                f"{plan.train:,} of your photos, within {minutes(plan.budget_s).replace('about ', '')} "
                f"in all; the one that finds most of the closest matches of {plan.held_out:,} photos "
                f"kept aside is kept if it beats the current version. Then all {plan.photos:,} photos "
                f"get new codes. This takes {minutes(plan.estimated_s)} on this computer. Searching "
                "keeps working meanwhile; you can cancel at any time."
            )
        else:
            start = "the current version" if plan.warm_start else "scratch"
            self.intro.setText(
                f"The search will learn from {plan.train:,} of your photos, starting from {start}, "
                f"and keep {plan.held_out:,} aside to check that it really got better. Then all "
                f"{plan.photos:,} photos get new codes. This takes {minutes(plan.estimated_s)} on this "
                "computer. Searching keeps working meanwhile, with the current version until the new "
                "one is ready; you can cancel at any time."
            )
        self.start_button.setEnabled(True)
        self.adjustSize()

    # --- 2. running ------------------------------------------------------------------------
    def start(self) -> Job:
        """Run the fine-tune on the writer thread."""
        force, method = self.force.isChecked(), self.chosen_method()
        compare = COMPARE_METHODS if method == COMPARE_CHOICE else ()
        method = DEFAULT_METHOD if compare else method
        self.force.hide()
        self.method.setEnabled(False)
        if method == WORDS_METHOD:
            job = self.writer.call(lambda lib, stop: lib.finetune_words(should_stop=stop), "words-finetune")
            job.succeeded.connect(self._on_words_succeeded)
        else:
            job = self.writer.call(
                lambda lib, stop: lib.finetune(force=force, should_stop=stop, method=method, compare=compare),
                "finetune",
            )
            job.succeeded.connect(self._on_succeeded)
        job.progress.connect(self._on_progress)
        job.cancelled.connect(self._on_cancelled)
        job.failed.connect(self._fail)
        self.job = job
        self.progress_label.setText("Waiting for the library (indexing finishes first)…" if self.writer.busy() else "Starting…")
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self._show_buttons(self.cancel_button)
        self.adjustSize()
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.progress_label.setText("Stopping…")
            self.cancel_button.setEnabled(False)

    @Slot(object)
    def _on_progress(self, event: FinetuneProgress) -> None:
        self.progress_label.setText(event_text(event))
        if event.total and event.phase in ("train", "encode", "evaluate"):
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(min(event.done, event.total))
        elif event.phase not in ("done",):
            self.progress_bar.setRange(0, 0)
        self.progressed.emit(event)

    @Slot(object)
    def _on_succeeded(self, result: FinetuneResult) -> None:
        self.result = result
        self.progress_bar.hide()
        self.progress_label.setText(f"Finished in {elapsed(result.seconds)}.")
        self._show_figures(result)
        if result.comparison:
            self._show_comparison(result)
        if result.activated:
            self.outcome.setText(
                "Searches now use the new version. Keep it, or roll back to the previous one."
                if result.better else
                "The new version was not better on the photos kept aside, but it is in use as you asked."
            )
            self._show_buttons(self.keep_button, self.rollback_button)
            self.modelChanged.emit(result.new_model)
        else:
            self.outcome.setText(
                "The new version was not better on the photos kept aside, so searches keep using the "
                "current one."
            )
            self._show_buttons(self.close_button, self.use_new_button)
        self.adjustSize()
        self.finetuneFinished.emit(result)

    @Slot(object)
    def _on_words_succeeded(self, result: WordsFinetuneResult) -> None:
        """Use the new words version when it is better than the one before (Keep / Roll back),
        else keep the old one (Close / Use the new version anyway)."""
        self.result = result
        self.progress_bar.hide()
        self.progress_label.setText(f"Finished in {elapsed(result.seconds)}.")
        grid = self.figures_grid
        rows = [("Before", result.previous_metrics), ("After", result.metrics),
                ("The look of the photos carrying the word", result.baseline_metrics)]
        for row, (text, metrics) in enumerate(rows):
            grid.addWidget(QLabel(text), row, 0)
            cell = QLabel("–" if not metrics else f"{metrics['mAP']:.0%}")
            cell.setAlignment(Qt.AlignmentFlag.AlignRight)
            grid.addWidget(cell, row, 1)
        note = QLabel(f"Mean average precision of word queries on {result.held_out:,} photos kept aside.")
        note.setWordWrap(True)
        grid.addWidget(note, len(rows), 0, 1, 2)
        self.figures.show()
        if result.better:
            self.outcome.setText("The search box now uses the new version. Keep it, or roll back.")
            self._activate_words(result.model_id, then=(self.keep_button, self.rollback_button))
        else:
            self.outcome.setText("The new version was not better on the photos kept aside, so the "
                                 "search box keeps the current one.")
            self._show_buttons(self.close_button, self.use_new_button)
        self.adjustSize()
        self.finetuneFinished.emit(result)

    def _activate_words(self, model_id: int | None, then: tuple[QPushButton, ...] = ()) -> Job:
        self._show_buttons()
        job = self.writer.call(lambda lib, _stop: lib.activate_words_model(model_id), "activate-words")
        job.succeeded.connect(lambda _r: self._show_buttons(*then) if then else self.accept())
        job.failed.connect(self._fail)
        return job

    def _show_figures(self, result: FinetuneResult) -> None:
        grid = self.figures_grid
        for col, text in enumerate(("", "Before", "After")):
            header = QLabel(f"<b>{text}</b>")
            header.setAlignment(Qt.AlignmentFlag.AlignRight)
            grid.addWidget(header, 0, col)
        for row, (key, text) in enumerate(ROWS, start=1):
            grid.addWidget(QLabel(text), row, 0)
            for col, metrics in ((1, result.old_metrics), (2, result.new_metrics)):
                value = metrics.get(key)
                cell = QLabel("–" if value is None else f"{value:.0%}")
                cell.setAlignment(Qt.AlignmentFlag.AlignRight)
                grid.addWidget(cell, row, col)
        note = QLabel(f"Share of each photo's 10 closest matches that search finds, on {result.held_out:,} photos kept aside.")
        note.setWordWrap(True)
        grid.addWidget(note, len(ROWS) + 1, 0, 1, 3)
        self.figures.show()

    def _show_comparison(self, result: FinetuneResult) -> None:
        """One row per compared method: what it found on the photos kept aside, how long it
        trained, or why it did not finish; the chosen one marked."""
        grid = self.comparison_grid
        for col, text in enumerate(("Method", "Top 10 found", "Training")):
            header = QLabel(f"<b>{text}</b>")
            header.setAlignment(Qt.AlignmentFlag.AlignRight if col else Qt.AlignmentFlag.AlignLeft)
            grid.addWidget(header, 0, col)
        for row, c in enumerate(result.comparison, start=1):
            chosen = c["method"] == result.method and c["status"] == "done"
            name = QLabel(f"<b>{c['method']}</b> (chosen)" if chosen else c["method"])
            grid.addWidget(name, row, 0)
            found = (f"{c['metrics'].get('rerank_10@10', 0.0):.0%}" if c["status"] == "done"
                     else ("not finished in time" if c["status"] == "out of time" else "no time left"))
            cells = (found, elapsed(c["fit_s"]) if c.get("fit_s") else "–")
            for col, text in enumerate(cells, start=1):
                cell = QLabel(text)
                cell.setAlignment(Qt.AlignmentFlag.AlignRight)
                grid.addWidget(cell, row, col)
        self.comparison.show()

    @Slot()
    def _on_cancelled(self) -> None:
        self.progress_bar.hide()
        self.progress_label.setText(
            "Stopped. Searches keep using the current version; an interrupted re-encode resumes next time."
        )
        self._show_buttons(self.close_button)
        self.finetuneFinished.emit(None)

    @Slot(object)
    def _fail(self, exc: object) -> None:
        from imagehash_app.gui.messages import describe

        self.progress_bar.hide()
        error = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        self.progress_label.setText(describe(error, "improve the search"))
        self._show_buttons(self.close_button)
        self.finetuneFinished.emit(None)

    # --- 3. keep or roll back ----------------------------------------------------------------
    def keep(self) -> None:
        self.accept()

    def roll_back(self) -> Job | None:
        """Make the previous version answer again (instant: its codes were kept)."""
        if isinstance(self.result, WordsFinetuneResult):
            return self._activate_words(self.result.previous_model)
        return self._activate(self.result.old_model) if self.result else None

    def use_new(self) -> Job | None:
        if isinstance(self.result, WordsFinetuneResult):
            return self._activate_words(self.result.model_id)
        return self._activate(self.result.new_model) if self.result else None

    def _activate(self, model_id: int) -> Job:
        self._show_buttons()
        job = self.writer.call(lambda lib, _stop: lib.activate_model(model_id), "activate")
        job.succeeded.connect(self._on_activated)
        job.failed.connect(self._fail)
        return job

    @Slot(object)
    def _on_activated(self, info: ModelInfo) -> None:
        self.modelChanged.emit(info.id)
        self.accept()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        """Closing while it runs cancels (a re-encode already under way resumes next time)."""
        if self.job is not None and not self.job.done:
            self.job.cancel()
        super().closeEvent(event)


def open_finetune_dialog(window: MainWindow) -> FinetuneDialog | None:
    """Open the dialog over a MainWindow and wire it: a version change refreshes the status line and
    re-runs the current query. Returns None when the library is open read-only elsewhere."""
    if getattr(window, "read_only", False):
        from imagehash_app.gui.messages import Level

        window.show_message(
            "This library is open in another program; improving the search waits until it is closed.",
            Level.WARNING,
        )
        return None
    dialog = FinetuneDialog(window.writer, window.reader, window)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.modelChanged.connect(lambda _id: (window.refresh(), window.requery()))
    dialog.show()
    window.finetune_dialog = dialog
    return dialog
