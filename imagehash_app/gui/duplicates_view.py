"""Library ▸ Find duplicates…: the groups of copies side by side, which one to keep, and the trash.

The search runs on the window's reader thread (with progress and Cancel); what changes the
library ("Not duplicates", the trash) runs on its writer. Moving the threshold slider or changing
the keeper rule regroups from the scored pairs the search kept (`DuplicateReport.at`), at once.
A person's "keep this one" is remembered by path, so it survives regrouping.

Keys: arrows move between photos (Up/Down between groups), K or Enter keeps the focused photo,
S keeps the suggested one, N marks the group "not duplicates", Delete moves the others to the
trash (after the summary), Space shows the photo large.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.library import (
    CopyGroup,
    DuplicateReport,
    KeeperRule,
    LibrarySettings,
    TrashOutcome,
    display,
)
from imagehash_app.gui.copy_groups import STYLE, GroupBox, PhotoCard
from imagehash_app.gui.duplicates_text import (
    apply_choices,
    human_size,
    outcome_text,
    trash_summary,
    with_not_duplicates,
    without,
)
from imagehash_app.gui.messages import Level, MessageBar, describe
from imagehash_app.gui.thumbnails import ThumbnailCache, ThumbnailLoader
from imagehash_app.gui.workers import EngineThread, Job

PAGE = 20  # groups built as widgets at once (about three fit the window); "Show more" adds more
SLIDER_STEPS = 100  # the slider moves in steps of 0.01 of copy score
# Above this many scored pairs a regroup takes longer than a slider drag can wait (about 1 s at
# 50 000 pairs here, benchmarks/bench_duplicates_view.py): regroup when the slider is let go.
LIVE_PAIRS = 20_000


def trash_outcome_parts(outcome: TrashOutcome) -> tuple[list[Path], Path | None, str]:
    """(trashed paths, the path it stopped at or None, why) of `Library.trash`'s outcome."""
    failed, reason = outcome.failed if outcome.failed is not None else (None, "")
    return list(outcome.trashed), failed, reason


class DuplicatesDialog(QDialog):
    """The duplicates view. Signals let tests (and the window) follow the background work."""

    searchFinished = Signal(object)  # the DuplicateReport, or None when cancelled or failed
    regrouped = Signal()
    notDuplicatesStored = Signal(object)  # the paths of the group
    trashFinished = Signal(object)  # the engine's TrashOutcome, or None when it failed
    libraryChanged = Signal()  # photos went to the trash: the window refreshes its counts
    settingsChanged = Signal()  # the keeper rule or reference folders were stored in the library

    def __init__(
        self,
        library_path: Path,
        writer: EngineThread,
        reader: EngineThread,
        *,
        folders: Sequence[Path] = (),
        settings: LibrarySettings | None = None,
        read_only: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        """`settings`: the library's, for its keeper rule and reference folders (kept there, so
        the command line's `duplicates` keeps the same copies)."""
        super().__init__(parent)
        self.setWindowTitle("Duplicates")
        self.setWindowFlag(Qt.WindowType.Window)
        self.library_path = Path(library_path)
        self.writer, self.reader = writer, reader
        self.folders = [Path(f) for f in folders]
        self.read_only = read_only
        self.rule = _rule_of(settings)
        self.reference_folders = [Path(p) for p in getattr(settings, "reference_folders", None) or []]
        # Replaceable in tests: the yes/no question before the trash, and the trash itself.
        self.confirm: Callable[[str, str], bool] = self._ask
        self.trash_fn: Callable[[str], None] | None = None
        self.report: DuplicateReport | None = None
        self.chosen: set[Path] = set()  # photos the person chose to keep ("Keep this one")
        self.shown = PAGE
        self.group_boxes: list[GroupBox] = []
        self._job: Job | None = None
        self._pixmaps: dict[str, QPixmap] = {}
        self._errors: dict[str, str] = {}
        self._cards_by_path: dict[str, list[PhotoCard]] = {}
        self._focus_path: Path | None = None  # the photo the keyboard was on, kept across regrouping
        self.thumbs = ThumbnailLoader(ThumbnailCache(self.library_path / "thumbs"), threads=2, parent=self)
        self.thumbs.ready.connect(self._on_thumbnail)
        self.thumbs.failed.connect(self._on_thumbnail_failed)
        self._regroup_timer = QTimer(self)
        self._regroup_timer.setSingleShot(True)
        self._regroup_timer.setInterval(60)
        self._regroup_timer.timeout.connect(self._regroup_now)
        self._build()
        self.resize(1240, 820)

    # --- construction -------------------------------------------------------------------------
    def _build(self) -> None:
        self.messages = MessageBar()
        self.rule_label = QLabel()
        self.rule_label.setWordWrap(True)
        self.rule_button = QPushButton("Change &rule…")
        self.rule_button.setToolTip("Which copy to keep, and folders whose photos are never touched")
        self.rule_button.clicked.connect(self.change_rule)
        top = QHBoxLayout()
        top.addWidget(self.rule_label, 1)
        top.addWidget(self.rule_button)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Higher: only near-identical copies; lower: looser copies too")
        self.slider.valueChanged.connect(self._on_slider)
        self.threshold_label = QLabel("Copy score ≥ –")
        self.threshold_label.setBuddy(self.slider)
        slider_row = QHBoxLayout()
        slider_row.addWidget(QLabel("&Threshold:", buddy=self.slider))
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.threshold_label)

        self.progress_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_label, 1)
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_box = QWidget()
        self.progress_box.setLayout(progress_row)

        self.groups_widget = QWidget()
        self.groups_widget.setStyleSheet(STYLE)
        self.groups_layout = QVBoxLayout(self.groups_widget)
        self.groups_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.groups_widget)
        self.empty_label = QLabel()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.more_button = QPushButton()
        self.more_button.clicked.connect(self.show_more)
        self.more_button.setVisible(False)

        self.summary = QLabel()
        self.keep_all_button = QPushButton("Keep &suggested in every group")
        self.keep_all_button.clicked.connect(self.keep_suggested_everywhere)
        self.trash_all_button = QPushButton("&Move the others to the trash (all groups)…")
        self.trash_all_button.clicked.connect(lambda: self.trash_groups(self.groups()))
        self.trashed_button = QPushButton("Trashed &photos…")
        self.trashed_button.setToolTip("What this library moved to the trash, and from where")
        self.trashed_button.clicked.connect(self.show_trashed)
        self.again_button = QPushButton("Search &again")
        self.again_button.clicked.connect(lambda: self.start())
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        bottom = QHBoxLayout()
        bottom.addWidget(self.summary, 1)
        for button in (self.keep_all_button, self.trash_all_button, self.trashed_button,
                       self.again_button, close):
            bottom.addWidget(button)

        keys = QLabel("Keys: arrows move between photos · K keep this one · S keep suggested · "
                      "N not duplicates · Delete move the others to the trash · Space view large")
        keys.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.messages)
        layout.addLayout(top)
        layout.addLayout(slider_row)
        layout.addWidget(self.progress_box)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.more_button)
        layout.addLayout(bottom)
        layout.addWidget(keys)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Refresh), self, activated=self.start)
        self._show_rule()
        self._set_busy(False)
        self._update_summary()

    def _show_rule(self) -> None:
        text = self.rule.describe()
        if self.reference_folders:
            names = ", ".join(display(p) for p in self.reference_folders)
            text += f" Photos in {names} (reference) are always kept."
        self.rule_label.setText(text)

    # --- the search -----------------------------------------------------------------------------
    def is_busy(self) -> bool:
        return self._job is not None and not self._job.done

    def start(self, threshold: float | None = None) -> Job:
        """Search the library for groups of copies (on the reader), with progress and Cancel."""
        if self._job is not None and not self._job.done:
            self._job.cancel()
        rule, references = self.rule, list(self.reference_folders)
        job: Job

        def run(lib, stop):
            return lib.duplicates(threshold, reference_folders=references, rule=rule,
                                  progress=lambda done, total: job.post_progress((done, total)),
                                  cancel=stop)

        job = Job(run, "duplicates")
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_report)
        job.cancelled.connect(self._on_cancelled)
        job.failed.connect(self._on_failed)
        self._job = job
        self.progress_label.setText("Looking for copies…")
        self.progress_bar.setRange(0, 0)
        self._set_busy(True)
        self.reader.submit(job)
        return job

    def cancel(self) -> None:
        """Stop the search at its next step (the groups shown before stay)."""
        if self._job is not None and not self._job.done:
            self._job.cancel()
            self.progress_label.setText("Stopping…")
            self.cancel_button.setEnabled(False)

    def _set_busy(self, busy: bool) -> None:
        self.progress_box.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.again_button.setEnabled(not busy)
        self.rule_button.setEnabled(not busy)

    @Slot(object)
    def _on_progress(self, event: object) -> None:
        done, total = _progress_counts(event)
        words = "Checking candidate pairs"
        if total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
            self.progress_label.setText(f"{words}: {done:,} / {total:,}")
        else:
            self.progress_bar.setRange(0, 0)
            self.progress_label.setText(f"{words}…")

    @Slot(object)
    def _on_report(self, report: DuplicateReport) -> None:
        self._set_busy(False)
        self.messages.dismiss()
        self.set_report(report)
        unsigned = int(getattr(report, "unsigned", 0) or 0)
        if unsigned:
            self.show_message(
                f"{unsigned:,} photo{'s were' if unsigned != 1 else ' was'} indexed before copies could be "
                "found and {} not compared; use Library ▸ Re-scan all folders, then Search again."
                .format("were" if unsigned != 1 else "was"), Level.WARNING)
        self.searchFinished.emit(report)

    @Slot()
    def _on_cancelled(self) -> None:
        self._set_busy(False)
        self.show_message("The search for duplicates was cancelled; press Search again to start over.",
                          Level.INFO)
        self._update_summary()
        self.searchFinished.emit(None)

    @Slot(object)
    def _on_failed(self, exc: object) -> None:
        self._set_busy(False)
        error = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        self.show_message(describe(error, "look for duplicates", self.library_path), Level.ERROR)
        self._update_summary()
        self.searchFinished.emit(None)

    def show_message(self, text: str, level: Level = Level.INFO) -> None:
        self.messages.show_message(text, level)

    # --- showing the groups -----------------------------------------------------------------------
    def set_report(self, report: DuplicateReport) -> None:
        """Show a report (the search's, or one built directly) and set the slider to its range."""
        self.report = report
        self.rule = report.rule
        self._show_rule()
        low = max(0, min(SLIDER_STEPS, round(report.floor * SLIDER_STEPS)))
        self.slider.blockSignals(True)
        self.slider.setRange(low, SLIDER_STEPS)
        self.slider.setValue(round(report.threshold * SLIDER_STEPS))
        self.slider.blockSignals(False)
        self.slider.setEnabled(low < SLIDER_STEPS)
        self.slider.setTracking(len(report.pairs) <= LIVE_PAIRS)
        self.shown = PAGE
        self._rebuild()

    def threshold(self) -> float:
        return self.slider.value() / SLIDER_STEPS

    @Slot(int)
    def _on_slider(self, _value: int) -> None:
        self.threshold_label.setText(f"Copy score ≥ {self.threshold():.2f}")
        self._regroup_timer.start()

    def regroup(self, threshold: float | None = None, rule: KeeperRule | None = None) -> None:
        """Regroup the report at `threshold` (default: the slider's) and with `rule`, at once."""
        if self.report is None:
            return
        if threshold is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(round(threshold * SLIDER_STEPS))
            self.slider.blockSignals(False)
        self._regroup_timer.stop()
        value = max(self.threshold(), self.report.floor)
        self.report = self.report.at(value, rule or self.rule)
        self._rebuild()
        self.regrouped.emit()

    @Slot()
    def _regroup_now(self) -> None:
        self.regroup()

    def groups(self) -> list[CopyGroup]:
        """Every group at the current threshold, with the person's choices of keeper applied."""
        if self.report is None:
            return []
        return [apply_choices(g, self.chosen, self.rule.sort_key)[0] for g in self.report.groups]

    def _rebuild(self) -> None:
        focused = self.focusWidget()
        on_card = isinstance(focused, PhotoCard) or focused is self.scroll
        # A slider step changes few groups: the boxes of unchanged ones are kept, not rebuilt.
        old = {(box.group, box.chosen): box for box in self.group_boxes}
        for box in self.group_boxes:
            self.groups_layout.removeWidget(box)
        self.group_boxes = []
        self._cards_by_path = {}
        report = self.report
        self.threshold_label.setText(f"Copy score ≥ {self.threshold():.2f}")
        groups = report.groups if report is not None else ()
        for number, raw in enumerate(groups[: self.shown], start=1):
            group, chosen = apply_choices(raw, self.chosen, self.rule.sort_key)
            box = old.pop((group, chosen), None)
            if box is None:
                box = self._group_box(number, group, chosen)
            else:
                box.set_number(number)
            for card in box.cards:
                self._cards_by_path.setdefault(str(card.photo.path), []).append(card)
            self.groups_layout.insertWidget(self.groups_layout.count() - 1, box)
            self.group_boxes.append(box)
        for box in old.values():
            if focused is not None and box.isAncestorOf(focused):
                self.scroll.setFocus()  # not the next button along: the keyboard stays on the photos
            box.hide()
            box.deleteLater()
        rest = len(groups) - self.shown
        self.more_button.setVisible(rest > 0)
        self.more_button.setText(f"Show {min(rest, PAGE)} more groups (of {len(groups)})")
        self._update_summary()
        if on_card and self._focus_path is not None:
            self.focus_photo(self._focus_path)

    def _group_box(self, number: int, group: CopyGroup, chosen: bool) -> GroupBox:
        box = GroupBox(number, group, chosen)
        box.keepRequested.connect(self.keep_this)
        box.suggestedRequested.connect(self.keep_suggested)
        box.notDuplicatesRequested.connect(self.not_duplicates)
        box.trashRequested.connect(lambda g: self.trash_groups([g]))
        box.not_button.setEnabled(not self.read_only)
        box.trash_button.setEnabled(box.trash_button.isEnabled() and not self.read_only)
        for card in box.cards:
            card.keyAction.connect(self._on_card_key)
            card.focused.connect(self._remember_focus)
            key = str(card.photo.path)
            if key in self._pixmaps:
                card.set_picture(self._pixmaps[key])
            elif key in self._errors:
                card.set_unreadable(self._errors[key])
            else:
                self.thumbs.request(card.photo.path)
        return box

    def show_more(self) -> None:
        self.shown += PAGE
        self._rebuild()

    def _update_summary(self) -> None:
        groups = self.groups()
        busy = self.is_busy()
        if self.report is None:
            self.summary.setText("")
            self.empty_label.setText("Looking for copies…" if busy else "No search yet.")
        elif not groups:
            self.summary.setText("")
            self.empty_label.setText(
                f"No copies at a copy score of {self.threshold():.2f} or more. Move the threshold "
                "left to see looser copies.")
        else:
            removable = sum(len(g.removable) for g in groups)
            size = human_size(sum(g.reclaimable_bytes for g in groups))
            seconds = f" · found in {self.report.seconds:.1f} s" if self.report.seconds else ""
            self.summary.setText(
                f"{len(groups)} group{'s' if len(groups) != 1 else ''} · {removable} "
                f"cop{'ies' if removable != 1 else 'y'} to remove · {size} to free{seconds}")
        self.empty_label.setVisible(not groups)
        self.scroll.setVisible(bool(groups))
        has = bool(groups) and not self.read_only
        self.trash_all_button.setEnabled(has and any(g.removable for g in groups))
        self.keep_all_button.setEnabled(bool(self.chosen))

    @Slot(str, QImage)
    def _on_thumbnail(self, path: str, image: QImage) -> None:
        pixmap = QPixmap.fromImage(image)
        self._pixmaps[path] = pixmap
        for card in self._cards_by_path.get(path, []):
            card.set_picture(pixmap)

    @Slot(str, str)
    def _on_thumbnail_failed(self, path: str, reason: str) -> None:
        self._errors[path] = reason
        for card in self._cards_by_path.get(path, []):
            card.set_unreadable(reason)

    # --- keyboard ------------------------------------------------------------------------------------
    def focus_photo(self, path: Path) -> bool:
        cards = self._cards_by_path.get(str(path))
        if not cards:
            return False
        cards[0].setFocus(Qt.FocusReason.OtherFocusReason)
        self.scroll.ensureWidgetVisible(cards[0])
        return True

    @Slot(Path)
    def _remember_focus(self, path: Path) -> None:
        self._focus_path = path

    def _position(self, path: Path) -> tuple[int, int] | None:
        for gi, box in enumerate(self.group_boxes):
            for ci, card in enumerate(box.cards):
                if card.photo.path == path:
                    return gi, ci
        return None

    @Slot(str, Path)
    def _on_card_key(self, action: str, path: Path) -> None:
        where = self._position(path)
        if where is None:
            return
        gi, ci = where
        box = self.group_boxes[gi]
        if action == "suggested":
            self.keep_suggested(box.group)
        elif action == "not":
            if box.not_button.isEnabled():
                self.not_duplicates(box.group)
        elif action == "trash":
            if box.trash_button.isEnabled():
                self.trash_groups([box.group])
        elif action == "preview":
            from imagehash_app.gui.preview import PreviewDialog

            dialog = PreviewDialog([c.photo.path for c in box.cards], ci, self)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.show()
        else:
            dg, dc = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[action]
            gi = max(0, min(len(self.group_boxes) - 1, gi + dg))
            cards = self.group_boxes[gi].cards
            ci = max(0, min(len(cards) - 1, ci + dc if dg == 0 else min(ci, len(cards) - 1)))
            self.focus_photo(cards[ci].photo.path)

    # --- choices -------------------------------------------------------------------------------------
    @Slot(Path)
    def keep_this(self, path: Path) -> None:
        """ "Keep this one": `path` stays and the rest of its group may go to the trash."""
        group = next((g for g in self.report.groups if path in g.paths), None) if self.report else None
        if group is None:
            return
        self.chosen -= group.paths
        if group.keeper.path != path:
            self.chosen.add(path)
        self._rebuild()
        self.focus_photo(path)

    def keep_suggested(self, group: CopyGroup) -> None:
        """Back to the keeper the rule suggests for this group."""
        self.chosen -= group.paths
        self._rebuild()
        now = next((g for g in self.report.groups if g.paths & group.paths), None) if self.report else None
        if now is not None:
            self.focus_photo(now.keeper.path)

    def keep_suggested_everywhere(self) -> None:
        """Forget every "keep this one": each group keeps the rule's suggestion."""
        self.chosen.clear()
        self._rebuild()

    def change_rule(self) -> None:
        """Which copy to keep and the reference folders (a small preferences dialog)."""
        from imagehash_app.gui.dialogs.keeper_rule import KeeperRuleDialog

        dialog = KeeperRuleDialog(self.rule, self.folders, self.reference_folders, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.apply_rule(dialog.rule(), dialog.references())

    def apply_rule(self, rule: KeeperRule, references: Sequence[Path] | None = None) -> Job | None:
        """Use `rule` (regroups at once) and keep it in the library's settings; new reference
        folders need a new search, which runs once they are stored."""
        self.rule = rule
        references_changed = references is not None and [Path(p) for p in references] != self.reference_folders
        if references is not None:
            self.reference_folders = [Path(p) for p in references]
        self._show_rule()
        job = None
        if not self.read_only:
            changes = {"duplicate_keep": str(rule), "reference_folders": [str(p) for p in self.reference_folders]}
            job = self.writer.call(lambda lib, _stop: lib.update_settings(**changes), "keeper rule")
            job.succeeded.connect(lambda _r: (self.reader.reset(), self.settingsChanged.emit()))
            job.failed.connect(lambda exc: self.show_message(
                describe(_as_error(exc), "keep the rule in the library", self.library_path), Level.ERROR))
        if references_changed:
            self.start(self.threshold() if self.report is not None else None)
        else:
            self.regroup(rule=rule)
        return job

    # --- changes to the library ---------------------------------------------------------------------
    def not_duplicates(self, group: CopyGroup) -> Job:
        """Remember in the library that these photos are not copies; the group disappears for good."""
        paths = sorted(group.paths)
        job = self.writer.call(lambda lib, _stop: lib.mark_not_duplicates(paths), "not duplicates")
        job.succeeded.connect(lambda _r: self._on_not_duplicates(paths))
        job.failed.connect(lambda exc: self.show_message(
            describe(_as_error(exc), "remember the choice", self.library_path), Level.ERROR))
        return job

    def _on_not_duplicates(self, paths: list[Path]) -> None:
        if self.report is not None:
            self.report = with_not_duplicates(self.report, paths)
        self.chosen -= set(paths)
        self._rebuild()
        names = ", ".join(display(p.name) for p in paths[:3]) + (" …" if len(paths) > 3 else "")
        self.show_message(f"{names}: marked as not duplicates; this group will not be shown again.")
        self.notDuplicatesStored.emit(paths)

    def trash_groups(self, groups: Sequence[CopyGroup]) -> Job | None:
        """Move every non-kept, non-reference photo of `groups` to the system trash, after a
        summary and a confirmation."""
        groups = [g for g in groups if g.removable]
        if not groups or self.read_only:
            return None
        paths = [p.path for g in groups for p in g.removable]
        # Each copy with the photo kept in its place: recorded with it, and the re-check of a
        # file changed since indexing compares it with that one.
        keepers = {p.path: g.keeper.path for g in groups for p in g.removable}
        if not self.confirm("Move to the trash", trash_summary(groups)):
            return None
        trash_fn, references = self.trash_fn, list(self.reference_folders)

        def run(lib, _stop):
            return lib.trash(paths, trash_fn=trash_fn, keepers=keepers, reference_folders=references)

        job = self.writer.call(run, "trash")
        job.succeeded.connect(lambda outcome: self._on_trashed(outcome, paths))
        job.failed.connect(lambda exc: self._on_trash_failed(exc))
        self.trash_all_button.setEnabled(False)
        return job

    def _on_trashed(self, outcome: TrashOutcome, asked: list[Path]) -> None:
        trashed, failed, reason = trash_outcome_parts(outcome)
        if self.report is not None:
            self.report = without(self.report, trashed)
        self.chosen -= set(trashed)
        self._rebuild()
        skipped = list(outcome.skipped)
        level = Level.ERROR if failed is not None else Level.WARNING if skipped else Level.INFO
        self.show_message(outcome_text(len(asked), trashed, failed, reason, skipped), level)
        self.trashFinished.emit(outcome)
        if trashed:
            self.libraryChanged.emit()

    def _on_trash_failed(self, exc: object) -> None:
        self.show_message(describe(_as_error(exc), "move the photos to the trash", self.library_path),
                          Level.ERROR)
        self._update_summary()
        self.trashFinished.emit(None)

    def show_trashed(self) -> Job:
        """List what this library moved to the trash, and from where (read on the reader)."""
        from imagehash_app.gui.dialogs.trashed import TrashedDialog

        job = self.reader.call(lambda lib, _stop: lib.trashed(), "trashed")

        def open_list(records: object) -> None:
            dialog = TrashedDialog(list(records or []), self)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.show()
            self.trashed_dialog = dialog

        job.succeeded.connect(open_list)
        job.failed.connect(lambda exc: self.show_message(
            describe(_as_error(exc), "list the trashed photos", self.library_path), Level.ERROR))
        return job

    def _ask(self, title: str, question: str) -> bool:
        answer = QMessageBox.question(self, title, question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    # --- closing -----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel the search and wait for the thumbnails: no thread outlives the dialog."""
        self._regroup_timer.stop()
        if self._job is not None:
            self._job.cancel()
        self.thumbs.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.cancel()
        self.thumbs.clear()
        super().closeEvent(event)


def _progress_counts(event: object) -> tuple[int, int]:
    """(done, total) as `Library.duplicates` reports them (the Job carries them as a pair)."""
    if isinstance(event, tuple) and len(event) == 2:
        return int(event[0] or 0), int(event[1] or 0)
    return 0, 0


def _rule_of(settings: LibrarySettings | None) -> KeeperRule:
    """The library's keeper rule (the default one when its setting cannot be read)."""
    try:
        return KeeperRule.parse(getattr(settings, "duplicate_keep", "") or str(KeeperRule()))
    except ValueError:
        return KeeperRule()


def _as_error(exc: object) -> BaseException:
    return exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
