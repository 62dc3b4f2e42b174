"""The main window: drop a photo, see the similar ones; folders, indexing progress and settings.

A thin layer over `Library`: every engine call runs on one of two `EngineThread`s (a writer that
indexes and edits folders/settings, and a read-only reader that answers searches, so search keeps
working during an index). Slots here only touch widgets, on the GUI thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPixmap,
)
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTabBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imagehash_app.core.errors import LibraryLockedError, WeightsUnavailableError
from imagehash_app.core.library import (
    FinetuneProgress,
    IndexProgress,
    Library,
    SearchResult,
    backbone_names,
    display,
)
from imagehash_app.gui import engine
from imagehash_app.gui.dialogs.finetune import open_finetune_dialog
from imagehash_app.gui.drop_zone import DropPayload, QueryPane, can_accept, classify, read_payload
from imagehash_app.gui.folders_panel import FoldersPanel, SkippedDialog
from imagehash_app.gui.icons import app_icon
from imagehash_app.gui.messages import Level, MessageBar, describe
from imagehash_app.gui.model_download import ModelDownload, plain_weights_text
from imagehash_app.gui.results_view import ResultsModel, ResultsView
from imagehash_app.gui.text_search import TextSearchBox
from imagehash_app.gui.thumbnails import ThumbnailCache, ThumbnailLoader
from imagehash_app.gui.watcher import FolderWatcher
from imagehash_app.gui.welcome import WelcomePage
from imagehash_app.gui.workers import EngineThread, Job

if TYPE_CHECKING:
    from imagehash_app.gui.dialogs.preferences import PreferencesDialog

DEFAULT_RESULTS = 40
MAX_RESULTS = 1000
HISTORY = 50  # queries Alt+Left can go back through
PHASES = {"scan": "Scanning folders", "embed": "Indexing", "train": "Training the hasher", "encode": "Encoding",
          "signatures": "Preparing to find copies"}


def _eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s left"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s left"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min left"


def progress_text(event: IndexProgress | FinetuneProgress) -> str:
    """Status-bar text for an `IndexProgress`: phase, count, rate and ETA."""
    phase = getattr(event, "phase", "")
    label = PHASES.get(phase, str(phase).capitalize())
    done, total = int(getattr(event, "done", 0) or 0), int(getattr(event, "total", 0) or 0)
    parts = [f"{label}: {done:,}" + (f" / {total:,}" if total else "")]
    rate = getattr(event, "rate", None)
    unit = "epochs" if phase == "train" else "photos"
    if rate and phase != "train":
        parts.append(f"{rate:,.1f} {unit}/s" if rate < 10 else f"{rate:,.0f} {unit}/s")
    eta = _eta(getattr(event, "eta_s", None))
    if eta:
        parts.append(eta)
    return " · ".join(parts)


class MainWindow(QMainWindow):
    """The window. Signals let tests (and the status bar) follow the background work."""

    indexingStarted = Signal()
    indexingFinished = Signal(object)  # the last IndexProgress, or None when cancelled or failed
    searchFinished = Signal(object)  # engine.QueryOutcome
    snapshotChanged = Signal(object)  # engine.Snapshot
    messageShown = Signal(str)
    stoppingStarted = Signal()  # a close during indexing: "Stopping…" is shown, the close follows
    textSearchFinished = Signal(object)  # the library's TextAnswer
    keywordsSuggested = Signal(object)  # (photo, [(word, share)])

    def __init__(
        self,
        library_path: Path,
        *,
        qsettings: QSettings | None = None,
        watch: bool = True,
        rescan: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        """`watch`: follow the folders with a file watcher; `rescan`: bring them up to date at start."""
        super().__init__(parent)
        self.library_path = Path(library_path)
        self.qsettings = qsettings or QSettings()
        self.setWindowTitle("Imagehash")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        # Replaceable in tests: a yes/no question to the person.
        self.confirm: Callable[[str, str], bool] = self._ask

        path = self.library_path
        self.writer = EngineThread(lambda: Library.open(path), "imagehash-writer", self)
        self.reader = EngineThread(lambda: Library.open(path, read_only=True), "imagehash-reader", self)
        self.thumbs = ThumbnailLoader(ThumbnailCache(path / "thumbs"), threads=2, parent=self)
        self.thumbs.ready.connect(self._on_thumbnail)

        self.snapshot: engine.Snapshot | None = None
        self.read_only = False
        self.query: engine.QueryOutcome | None = None
        self._index_job: Job | None = None
        self._queued: set[Path] = set()  # folders to re-index once the running index ends
        self._queued_all = False
        self._search_job: Job | None = None
        self._last_progress: IndexProgress | None = None
        self._last_refresh = 0.0
        self._closed = False
        self._search_trouble = False  # the message bar shows a search's error or warning
        self._stop_timer: QTimer | None = None  # polls for the end of an index while closing
        self._history: list[engine.QueryOutcome] = []  # earlier queries, for Alt+Left
        self._going_back = False
        self._requery_pending = False  # the library changed while a search was in flight
        self._warmed = False  # warm_search runs once, when the window first shows

        self._build_ui()
        self._build_menus()
        self.model_download = ModelDownload(self)  # the first run's photo model (gui/model_download.py)
        self._restore_geometry()

        self.watcher: FolderWatcher | None = None
        if watch:
            self.watcher = FolderWatcher(ignore=self.library_path, parent=self)
            self.watcher.changed.connect(self._on_folders_changed)
        self._requery_timer = QTimer(self)
        self._requery_timer.setSingleShot(True)
        self._requery_timer.setInterval(150)
        self._requery_timer.timeout.connect(self.requery)

        self.refresh(rescan=rescan)

    # --- construction ---------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.messages = MessageBar()
        self.messages.actionTriggered.connect(self._on_message_action)

        self.welcome = WelcomePage(app_icon())
        self.welcome.addFolderRequested.connect(self.choose_folder)

        self.query_pane = QueryPane()
        self.results_model = ResultsModel(self.thumbs, self)
        self.results_view = ResultsView(self.results_model)
        self.results_view.findSimilar.connect(lambda p: self.search([p]))
        self.results_view.markSimilar.connect(self.mark_result)
        self.results_view.suggestKeywords.connect(self.suggest_keywords)
        self.text_box = TextSearchBox()
        self.text_box.searchRequested.connect(self.search_text)
        self._text_query: str | None = None
        self.results_view.message.connect(self.statusBar().showMessage)

        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, MAX_RESULTS)
        self.count_spin.setValue(int(self.qsettings.value("results/count", DEFAULT_RESULTS)))
        self.count_spin.setSuffix(" results")
        self.count_spin.setToolTip("How many similar photos to show (updates without re-reading the photo)")
        self.count_spin.valueChanged.connect(lambda _v: self._requery_timer.start())
        self.results_caption = QLabel("Drop a photo to search.")
        # One tab per query photo: several dropped photos each keep their own results.
        self.query_tabs = QTabBar()
        self.query_tabs.setDocumentMode(True)
        self.query_tabs.setExpanding(False)
        self.query_tabs.setVisible(False)
        self.query_tabs.currentChanged.connect(self._show_query_tab)
        # The words box and the result count on one row, the caption on its own below: a long
        # caption (several queries, the first index) never squeezes the box to a few letters.
        self.results_caption.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.text_box, 1)
        top.addWidget(QLabel("Show"))
        top.addWidget(self.count_spin)
        results_box = QWidget()
        results_layout = QVBoxLayout(results_box)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.addLayout(top)
        results_layout.addWidget(self.query_tabs)
        results_layout.addWidget(self.results_caption)
        results_layout.addWidget(self.results_view, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.query_pane)
        self.splitter.addWidget(results_box)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([300, 900])

        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.splitter)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.messages)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.folders_panel = FoldersPanel()
        self.folders_panel.addRequested.connect(self.choose_folder)
        self.folders_panel.removeRequested.connect(self.remove_folder)
        self.folders_panel.rescanRequested.connect(lambda p: self.start_index([p] if p else None))
        self.folders_panel.skippedRequested.connect(self.show_skipped)
        self.folders_dock = QDockWidget("Folders")
        self.folders_dock.setObjectName("folders")
        self.folders_dock.setWidget(self.folders_panel)
        self.folders_dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.folders_dock)

        bar = self.statusBar()
        self.progress_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop indexing (work done so far is kept)")
        self.cancel_button.clicked.connect(self.cancel_index)
        self.library_label = QLabel()
        bar.addWidget(self.progress_label)
        bar.addWidget(self.progress_bar)
        bar.addWidget(self.cancel_button)
        bar.addPermanentWidget(self.library_label)
        self._show_progress(False)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open photo…", self.choose_photos, QKeySequence.StandardKey.Open)
        self._action(file_menu, "&Paste photo or path", self.paste, QKeySequence.StandardKey.Paste)
        self.back_action = self._action(file_menu, "&Back to the previous query", self.go_back, "Alt+Left")
        self.back_action.setEnabled(False)
        file_menu.addSeparator()
        self._action(file_menu, "&Add folder…", self.choose_folder, "Ctrl+Shift+O")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        lib_menu = self.menuBar().addMenu("&Library")
        self._action(lib_menu, "&Re-scan all folders", lambda: self.start_index(None), QKeySequence.StandardKey.Refresh)
        self._action(lib_menu, "&Skipped files…", self.show_skipped)
        self._action(lib_menu, "&Improve search for my photos…", self.show_finetune)
        self._action(lib_menu, "&Versions…", self.show_versions)
        self._action(lib_menu, "Find &duplicates…", self.show_duplicates, "Ctrl+Shift+D")
        lib_menu.addSeparator()
        self._action(lib_menu, "&Preferences…", self.show_preferences, QKeySequence.StandardKey.Preferences)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.folders_dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&About Imagehash", self._about)

    def _action(
        self, menu: QMenu, text: str, slot: Callable[[], object],
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _restore_geometry(self) -> None:
        geometry = self.qsettings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = self.qsettings.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = self.qsettings.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """The first time the window shows: warm the search (see `warm_search`)."""
        super().showEvent(event)
        if not self._warmed:
            self._warmed = True
            QTimer.singleShot(0, self.warm_search)

    def warm_search(self) -> Job:
        """Load the search's structures on the reader thread (ONNX session, codes, graph,
        decoder) while the person looks at the window, so that the first drop answers at once;
        a drop meanwhile waits behind it, not for it twice. Failures are left to that search."""
        # Read when the job runs: unless the library turned out locked by another process, this
        # process holds its lock, and the graph the reader builds may be saved for next time.
        return self.reader.call(
            lambda lib, _stop: lib.warm_search(persist_graph=not self.read_only), "warm search"
        )

    # --- library state ---------------------------------------------------------------------
    def refresh(self, rescan: bool = False) -> Job:
        """Re-read status and folders (on the writer, or on the reader when the library is locked)."""
        thread = self.reader if self.read_only else self.writer
        job = thread.call(lambda lib, _stop: engine.snapshot(lib), "snapshot")
        job.succeeded.connect(self._apply_snapshot)
        job.failed.connect(lambda exc: self.report(exc, "open the library"))
        if rescan:
            job.succeeded.connect(lambda snap: self.start_index(None) if snap.folders and not self.read_only else None)
        return job

    @Slot(object)
    def _apply_snapshot(self, snap: engine.Snapshot) -> None:
        self.snapshot = snap
        self._last_refresh = time.monotonic()
        self.folders_panel.set_folders(snap.folders)
        self.library_label.setText(engine.status_line(snap.status))
        hasher = getattr(snap.status, "hasher", "")
        self.library_label.setToolTip(f"Library: {self.library_path}\nHasher: {hasher}")
        has_any = bool(snap.folders) or int(getattr(snap.status, "indexed", 0) or 0) > 0
        self.stack.setCurrentWidget(self.splitter if has_any else self.welcome)
        offline = [f for f in snap.folders if not f.online]
        if offline:
            names = ", ".join(str(f.path) for f in offline[:3])
            self.show_message(
                f"Folder not found: {names}. Its photos stay in the library and come back when the "
                "folder does (an unplugged drive?). Remove it from the Folders panel if it is gone for good.",
                Level.WARNING,
            )
        if self.watcher is not None and not self.read_only:
            self.watcher.watch(Path(f.path) for f in snap.folders if f.online)
        self.model_download.update_page()
        self._load_vocabulary()
        self.snapshotChanged.emit(snap)

    def _load_vocabulary(self) -> Job:
        """Give the search box the library's words to suggest (most carried first)."""
        job = self.reader.call(lambda lib, _stop: [w for w, _ in lib.vocabulary(5000)], "vocabulary")
        job.succeeded.connect(self.text_box.set_vocabulary)
        job.failed.connect(lambda exc: self.report(exc, "read the library's words"))
        return job

    def search_text(self, text: str, top_k: int | None = None) -> Job:
        """Photos for typed words, with and without those words (on the reader thread)."""
        top_k = top_k or self.count_spin.value()
        if self._search_job is not None:
            self._search_job.cancel()
        self.stack.setCurrentWidget(self.splitter)
        self._text_query = text
        self.results_caption.setText("Searching…")
        job = self.reader.call(lambda lib, _stop: _text_answer(lib, text, top_k), "text search")
        job.succeeded.connect(lambda pair: self._show_text_results(text, *pair))
        job.failed.connect(lambda exc: self.report(exc, "search by words"))
        self._search_job = job
        return job

    def _show_text_results(self, text: str, answer: Any, details: dict) -> None:
        hits = [SearchResult(r.path, r.score, r.hamming) for r in answer.results]
        self.query_tabs.setVisible(False)
        self.query_pane.set_caption(f"“{text}”")
        self.results_model.set_results(hits, details)
        self.results_view.scrollToTop()
        carrying = sum(r.has_words for r in answer.results)
        if hits:
            caption = (f"{len(hits)} photos for “{text}” ({carrying} carry the words, "
                       f"{len(hits) - carrying} look like them)")
        else:
            caption = answer.note or f"No photo for “{text}”."
        if answer.unknown and hits:
            caption += f" · no photo carries {', '.join(answer.unknown)}"
        self.results_caption.setText(caption)
        if answer.note and hits:
            self.statusBar().showMessage(answer.note, 8000)
        self.textSearchFinished.emit(answer)

    def suggest_keywords(self, path: Path) -> Job:
        """Words of the photo's neighbours in the words/photos space, shown in the message bar."""
        job = self.reader.call(lambda lib, _stop: lib.suggest_keywords(path), "suggest keywords")

        def show(pairs: list) -> None:
            if pairs:
                words = ", ".join(f"{w} ({share:.0%})" for w, share in pairs)
                self.show_message(f"Keywords suggested for {display(path.name)}: {words}.")
            else:
                self.show_message(
                    f"No keyword to suggest for {display(path.name)}: search by words learns once "
                    "enough photos carry words (Improve search…).")
            self.keywordsSuggested.emit((path, pairs))

        job.succeeded.connect(show)
        job.failed.connect(lambda exc: self.report(exc, "suggest keywords"))
        return job

    def show_message(self, text: str, level: Level = Level.INFO, action: str = "", action_id: str = "") -> None:
        """Show a message in the bar above the content (and announce it for tests)."""
        self.messages.show_message(text, level, action, action_id)
        self.messageShown.emit(text)

    def report(self, exc: object, doing: str = "") -> None:
        """An engine error as a message, with the follow-up action it calls for."""
        if not isinstance(exc, BaseException):
            exc = RuntimeError(str(exc))
        if isinstance(exc, LibraryLockedError):
            self._enter_read_only(exc)
        elif isinstance(exc, WeightsUnavailableError):
            self.show_message(plain_weights_text(exc), Level.ERROR, "Choose a model file on this computer…", "weights")
        else:
            self.show_message(describe(exc, doing, self.library_path), Level.ERROR)

    def _enter_read_only(self, exc: LibraryLockedError) -> None:
        first = not self.read_only
        self.read_only = True
        self.show_message(
            f"{exc} Searching still works; indexing and folder changes wait until the other program "
            "closes the library.",
            Level.WARNING,
            "Try again",
            "unlock",
        )
        if first:
            self.refresh()

    @Slot(str)
    def _on_message_action(self, action_id: str) -> None:
        self.messages.dismiss()
        if action_id == "weights":
            self.choose_weights()
        elif action_id == "unlock":
            self.read_only = False
            self.refresh(rescan=True)
        elif action_id == "finetune":
            self.show_finetune()

    # --- indexing --------------------------------------------------------------------------
    def is_indexing(self) -> bool:
        """True while an index job is queued or running."""
        return self._index_job is not None and not self._index_job.done

    def start_index(self, paths: Sequence[Path] | None = None) -> Job | None:
        """Bring the library up to date with `paths` (folders) or with every folder."""
        if self.read_only:
            self.show_message("This library is open in another program; indexing waits until it is closed.", Level.WARNING)
            return None
        wanted = None if paths is None else [Path(p) for p in paths]
        if self.is_indexing():
            # One index at a time: remember what to do next.
            if wanted is None:
                self._queued_all = True
            else:
                self._queued.update(wanted)
            return self._index_job
        waiting = self.model_download.before_index()  # the photo model first, when it is missing
        if waiting is not None:
            return waiting
        # The folders are the library's already (added once, by `add_folders`): update them.
        job = self.writer.call(lambda lib, stop: lib.update(wanted, should_stop=stop), "index")
        job.progress.connect(self._on_index_progress)
        job.succeeded.connect(self._on_index_succeeded)
        job.cancelled.connect(self._on_index_cancelled)
        job.failed.connect(self._on_index_failed)
        job.finished.connect(self._on_index_finished)
        self._index_job = job
        self._last_progress = None
        self.progress_label.setText("Scanning folders…")
        self.progress_bar.setRange(0, 0)
        self._show_progress(True)
        self.indexingStarted.emit()
        return job

    def cancel_index(self) -> None:
        """Stop the running index at its next batch; what was indexed stays indexed."""
        if self._index_job is not None:
            self._index_job.cancel()
            self._queued, self._queued_all = set(), False
            self.progress_label.setText("Stopping…")
            self.cancel_button.setEnabled(False)

    @Slot(object)
    def _on_index_progress(self, event: IndexProgress) -> None:
        self._last_progress = event
        if (getattr(event, "message", "") or "").startswith("Now searching with"):
            self._requery_after_index()  # a new hasher was switched in: rank by it
        self.progress_label.setText(progress_text(event))
        self.progress_label.setToolTip(getattr(event, "message", "") or "")
        total = int(getattr(event, "total", 0) or 0)
        if total > 0 and getattr(event, "phase", "") != "scan":
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(int(event.done), total))
        else:
            self.progress_bar.setRange(0, 0)
        if time.monotonic() - self._last_refresh > 3.0:
            # Counts in the folders panel follow the index; the reader sees every committed batch.
            self._last_refresh = time.monotonic()
            job = self.reader.call(lambda lib, _stop: engine.snapshot(lib), "snapshot")
            job.succeeded.connect(self._apply_snapshot)

    @Slot(object)
    def _on_index_succeeded(self, last: IndexProgress | None) -> None:
        self.statusBar().showMessage("Library up to date", 5000)
        self._requery_after_index()
        self.indexingFinished.emit(last)
        job = self.reader.call(lambda lib, _stop: lib.finetune_suggestion(), "suggestion")
        job.succeeded.connect(self._suggest_finetune)

    def _requery_after_index(self) -> None:
        """Photos the index added (a watched folder's new photo) show up in the current results:
        the current query runs again now, or as soon as the search in flight has answered."""
        if self.is_stopping():
            return
        if self.is_searching():
            self._requery_pending = True
        elif self.query is not None:
            self.requery()

    @Slot(object)
    def _suggest_finetune(self, text: object) -> None:
        """Unobtrusive: an info bar with a button, only when the library has changed enough."""
        if text:
            self.show_message(str(text), Level.INFO, "Improve…", "finetune")

    @Slot()
    def _on_index_cancelled(self) -> None:
        self.statusBar().showMessage("Indexing stopped; photos indexed so far are searchable", 8000)
        self._requery_after_index()
        self.indexingFinished.emit(None)

    @Slot(object)
    def _on_index_failed(self, exc: object) -> None:
        self.report(exc, "index")
        self.indexingFinished.emit(None)

    @Slot()
    def _on_index_finished(self) -> None:
        if self.is_stopping():
            return  # the window closes next
        self._show_progress(False)
        self.cancel_button.setEnabled(True)
        self.refresh()
        again, everything = self._queued, self._queued_all
        self._queued, self._queued_all = set(), False
        if everything:
            self.start_index(None)
        elif again:
            self.start_index(sorted(again))

    def _show_progress(self, on: bool) -> None:
        for widget in (self.progress_label, self.progress_bar, self.cancel_button):
            widget.setVisible(on)

    @Slot(list)
    def _on_folders_changed(self, folders: list[Path]) -> None:
        self.start_index(folders)

    # --- folders -----------------------------------------------------------------------------
    def choose_folder(self) -> None:
        """Ask for a folder and add it."""
        path = QFileDialog.getExistingDirectory(self, "Add a folder of photos", str(Path.home()))
        if path:
            self.add_folders([Path(path)])

    def add_folders(self, paths: Sequence[Path]) -> Job | None:
        """Add folders to the library and index them."""
        if self.read_only:
            self.show_message("This library is open in another program; adding folders waits until it is closed.", Level.WARNING)
            return None
        folders = [Path(p) for p in paths]
        waiting = self.model_download.before_folders(folders)  # the photo model first, when missing
        if waiting is not None:
            return waiting
        job = self.writer.call(lambda lib, _stop: [lib.add_folder(p) for p in folders], "add folders")
        job.succeeded.connect(
            lambda infos: (self.refresh(), self.start_index([info.path for info in infos]))
        )
        job.failed.connect(lambda exc: self.report(exc, "add the folder"))
        return job

    def remove_folder(self, path: Path) -> Job | None:
        """Forget a folder's photos after asking."""
        if not self.confirm("Remove folder", f"Remove {path} from the library?\nThe photos themselves are not touched."):
            return None
        job = self.writer.call(lambda lib, _stop: lib.remove_folder(path), "remove folder")
        job.succeeded.connect(lambda _r: self.refresh())
        job.failed.connect(lambda exc: self.report(exc, "remove the folder"))
        return job

    def mark_result(self, path: Path, similar: bool) -> Job | None:
        """Store the person's "More like this" / "Not similar" on a result of the current query
        (what a supervised fine-tune learns from), then show the new counts."""
        if self.query is None or not self.query.queries or self.read_only:
            self.show_message("Marks are stored only for a query of this library, when no other program has it open.", Level.WARNING)
            return None
        query = self.query.queries[0]
        job = self.writer.call(lambda lib, _stop: lib.mark_similar(query, path, similar), "mark")
        word = "like" if similar else "not like"
        job.succeeded.connect(lambda _r: (self.statusBar().showMessage(f"Marked {path.name} as {word} {query.name}"), self.refresh()))
        job.failed.connect(lambda exc: self.report(exc, "store the mark"))
        return job

    def show_skipped(self) -> None:
        """List the skipped files with their reasons."""
        job = self.reader.call(lambda lib, _stop: lib.skipped(), "skipped")
        job.succeeded.connect(self._open_skipped)
        job.failed.connect(lambda exc: self.report(exc, "list skipped files"))

    @Slot(object)
    def _open_skipped(self, skipped: list[tuple[Path, str]]) -> None:
        dialog = SkippedDialog(skipped, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def show_finetune(self) -> None:
        """Library ▸ Improve search for my photos…: fine-tune the hasher (modeless dialog)."""
        open_finetune_dialog(self)

    def show_versions(self) -> QDialog | None:
        """Library ▸ Versions…: the kept hasher versions; switch between them (modeless)."""
        from imagehash_app.gui.dialogs.versions import VersionsDialog

        if self.read_only:
            self.show_message(
                "This library is open in another program; switching versions waits until it is closed.",
                Level.WARNING,
            )
            return None
        dialog = VersionsDialog(self.writer, self.reader, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.modelChanged.connect(lambda _id: (self.refresh(), self.requery()))
        dialog.show()
        self.versions_dialog = dialog
        return dialog

    def show_duplicates(self) -> QDialog:
        """Library ▸ Find duplicates…: groups of copies, which to keep, the rest to the trash (modeless)."""
        from imagehash_app.gui.duplicates_view import DuplicatesDialog

        dialog = getattr(self, "duplicates_dialog", None)
        if isinstance(dialog, DuplicatesDialog):
            if not dialog.isVisible() and not dialog.is_busy():
                dialog.read_only = self.read_only
                dialog.start()  # closed and opened again: the library may have changed meanwhile
            dialog.show()
            dialog.raise_()
            dialog.activateWindow()
            return dialog
        snap = self.snapshot
        folders = [Path(f.path) for f in snap.folders] if snap else []
        dialog = DuplicatesDialog(self.library_path, self.writer, self.reader, folders=folders,
                                  settings=snap.settings if snap else None, read_only=self.read_only,
                                  parent=self)
        dialog.libraryChanged.connect(lambda: (self.refresh(), self.reader.reset()))
        dialog.settingsChanged.connect(self.refresh)
        dialog.show()
        dialog.start()
        self.duplicates_dialog = dialog
        return dialog

    # --- searching ---------------------------------------------------------------------------
    def handle_payload(self, payload: DropPayload) -> None:
        """Do what a drop or paste asks: search photos, add folders, explain the rest."""
        if payload.rejected:
            path, reason = payload.rejected[0]
            more = f" (and {len(payload.rejected) - 1} more)" if len(payload.rejected) > 1 else ""
            self.show_message(f"{display(path.name or path)} cannot be searched: {reason}{more}.", Level.WARNING)
        if payload.folders:
            self.add_folders(payload.folders)
        if payload.images:
            self.search(payload.images)

    def is_searching(self) -> bool:
        """True while a search or re-query is queued or running."""
        return self._search_job is not None and not self._search_job.done

    def search(self, paths: Sequence[Path], top_k: int | None = None) -> Job:
        """Find the photos most similar to `paths` (on the reader thread)."""
        paths = [Path(p) for p in paths]
        self._text_query = None
        top_k = top_k or self.count_spin.value()
        if self._search_job is not None:
            self._search_job.cancel()  # a newer query makes the older one pointless
        self.stack.setCurrentWidget(self.splitter)
        caption = display(paths[0].name) if len(paths) == 1 else f"{display(paths[0].name)} and {len(paths) - 1} more"
        self.query_pane.show_query(paths[0], caption)
        self.thumbs.clear()
        self.thumbs.request(paths[0], priority=100)
        self.results_caption.setText("Searching…")
        job = self.reader.call(lambda lib, _stop: engine.run_query(lib, paths, top_k), "search")
        # Only the newest search is shown: a replaced one that still answered is dropped.
        job.succeeded.connect(lambda out, job=job: self._show_results(out) if job is self._search_job else None)
        job.failed.connect(lambda exc, job=job: self._on_search_failed(exc, paths) if job is self._search_job else None)
        self._search_job = job
        return job

    def requery(self) -> Job | None:
        """Show a different number of results for the current query (or the photos an index
        added), from its kept features."""
        if self._text_query is not None:
            return self.search_text(self._text_query)
        previous = self.query
        if previous is None:
            return None
        if self.is_searching() and self._search_job is not None and self._search_job.name == "search":
            self._requery_pending = True  # a new query is on its way: bring *it* up to date after
            return self._search_job
        top_k = self.count_spin.value()
        job = self.reader.call(lambda lib, _stop: engine.requery(lib, previous, top_k), "requery")
        job.succeeded.connect(lambda out, job=job: self._show_results(out) if job is self._search_job else None)
        job.failed.connect(
            lambda exc, job=job: self._on_search_failed(exc, previous.queries) if job is self._search_job else None
        )
        self._search_job = job
        return job

    @Slot(object)
    def _show_results(self, outcome: engine.QueryOutcome) -> None:
        same_queries = self.query is not None and self.query.queries == outcome.queries
        keep_tab = self.query_tabs.currentIndex() if same_queries else 0
        if self.query is not None and not same_queries and not self._going_back:
            self._history = [*self._history[-(HISTORY - 1):], self.query]
        self.back_action.setEnabled(bool(self._history))
        self.query = outcome
        if self._search_trouble and not outcome.failures:
            self.messages.dismiss()  # the last search's error is over: this one answered
        self._search_trouble = False
        self.query_tabs.blockSignals(True)
        while self.query_tabs.count():
            self.query_tabs.removeTab(0)
        for query, hits in zip(outcome.queries, outcome.per_query, strict=True):
            self.query_tabs.addTab(f"{display(query.name)} ({len(hits)})")
            self.query_tabs.setTabToolTip(self.query_tabs.count() - 1, f"Results for {display(query)}")
        self.query_tabs.setCurrentIndex(max(0, min(keep_tab, self.query_tabs.count() - 1)))
        self.query_tabs.blockSignals(False)
        self.query_tabs.setVisible(len(outcome.queries) > 1)
        self._show_query_tab(self.query_tabs.currentIndex())
        for failure in outcome.failures:
            self.show_message(failure.message, Level.WARNING)
            self._search_trouble = True
        self.searchFinished.emit(outcome)
        if self._requery_pending and not self.is_searching():
            self._requery_pending = False
            self.requery()  # the library changed while this search ran: show it up to date

    def go_back(self) -> Job | None:
        """Alt+Left: show the previous query again (at once, then brought up to date)."""
        if not self._history:
            self.statusBar().showMessage("No earlier query to go back to.", 4000)
            return None
        previous = self._history.pop()
        if self._search_job is not None:
            self._search_job.cancel()
        self._going_back = True
        try:
            self.query_pane.path = None
            self._show_results(previous)
        finally:
            self._going_back = False
        return self.requery()

    @Slot(int)
    def _show_query_tab(self, index: int) -> None:
        """Show one query's photo in the pane and its own results in the grid."""
        outcome = self.query
        if outcome is None or not outcome.queries:
            self.results_model.set_results([])
            self.results_caption.setText(self._no_results_text())
            return
        index = max(0, min(index, len(outcome.queries) - 1))
        query = outcome.queries[index]
        hits = outcome.per_query[index]
        if self.query_pane.path is None or self.query_pane.path.resolve() != query:
            self.query_pane.show_query(query)
            known = self.results_model.thumbnail(query)
            if known is not None:
                self.query_pane.set_picture(known)
            else:  # asked for again even when an earlier request went to another query's pane
                self.thumbs.forget(query)
                self.thumbs.request(query, priority=100)
        in_library = getattr(outcome.answer.responses[index], "query_in_library", None)
        # not "… and 1 more": this tab's photo, and whether it is one of the library's own
        self.query_pane.set_caption(display(query.name) + (" · in this library" if in_library else ""))
        self.results_model.set_results(hits, outcome.details, query_in_library=in_library)
        self.results_view.scrollToTop()
        n = len(hits)
        whose = f" to {display(query.name)}" if len(outcome.queries) > 1 else ""
        self.results_caption.setText(
            f"{n} similar photo{'s' if n != 1 else ''}{whose} · {outcome.elapsed_s * 1000:.0f} ms"
            + (f" · query {index + 1} of {len(outcome.queries)}, one tab each" if len(outcome.queries) > 1 else "")
            + self._indexing_note()
            if n
            else self._no_results_text()
        )

    def _indexed_count(self) -> int:
        return int(getattr(self.snapshot.status, "indexed", 0) or 0) if self.snapshot else 0

    def _no_results_text(self) -> str:
        indexed = self._indexed_count()
        if self.is_indexing() and not indexed:
            return "No photos indexed yet: indexing is running, and the results appear here when it ends."
        if not indexed:
            return "No photos indexed yet: add a folder, then search again."
        return "No similar photos found."

    def _indexing_note(self) -> str:
        """Said under results while an index runs: they come from the photos indexed so far."""
        if not self.is_indexing():
            return ""
        indexed = (self.query.searched if self.query else 0) or self._indexed_count()  # what it ranked
        so_far = f"{indexed:,} photos" if indexed else "the photos"
        return f" · from {so_far} indexed so far; they refresh when indexing ends"

    def _on_search_failed(self, exc: object, paths: Sequence[Path] = ()) -> None:
        """Report the error, and show again the last query that answered (pane and grid agree)."""
        self._search_trouble = True
        self.report(exc, "search")
        failed = display(Path(paths[0]).name) if paths else "the photo"
        if self.query is not None and self.query.queries:
            index = self.query_tabs.currentIndex()
            self.query_pane.path = None  # force the pane back to the shown query
            self._show_query_tab(index)
            shown = display(self.query.queries[max(0, index)].name)
            self.results_caption.setText(f"Search for {failed} failed; still showing the results for {shown}.")
        else:
            self.query_pane.clear()
            self.results_model.set_results([])
            self.results_caption.setText(f"Search for {failed} failed.")
        if self._requery_pending and self.query is not None:
            self._requery_pending = False
            self.requery()

    @Slot(str, QImage)
    def _on_thumbnail(self, path: str, image: QImage) -> None:
        if self.query_pane.path is not None and str(self.query_pane.path) == path:
            self.query_pane.set_picture(QPixmap.fromImage(image))

    def choose_photos(self) -> None:
        """File ▸ Open…: pick photos to search for."""
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Find photos similar to…", str(Path.home()), "Images (*.jpg *.jpeg *.png *.webp *.tif *.tiff *.bmp *.gif *.heic *.heif);;All files (*)"
        )
        if paths:
            self.handle_payload(classify([Path(p) for p in paths]))

    def paste(self) -> None:
        """Edit ▸ Paste: an image, a path or a file URL from the clipboard."""
        payload = read_payload(QGuiApplication.clipboard().mimeData())
        if payload:
            self.handle_payload(payload)
        else:
            self.show_message("The clipboard holds no photo or path to search for.", Level.INFO)

    # --- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if can_accept(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 (Qt override)
        if can_accept(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt override)
        payload = read_payload(event.mimeData())
        if not payload:
            event.ignore()
            return
        event.acceptProposedAction()
        self.handle_payload(payload)

    # --- settings ------------------------------------------------------------------------------
    def show_preferences(self) -> None:
        """Edit the library's settings; identity changes ask before re-indexing."""
        dialog = self.preferences_dialog()
        if dialog is None or dialog.exec() != dialog.DialogCode.Accepted:
            return
        changes = dialog.changes()
        if changes:
            self.apply_settings(changes, reindex="exclude_patterns" in changes)

    def preferences_dialog(self) -> PreferencesDialog | None:
        """The Preferences dialog over the current settings, its exclude count answered by the reader."""
        from imagehash_app.gui.dialogs.preferences import PreferencesDialog

        if self.snapshot is None:
            return None
        status = self.snapshot.status
        locked = int(getattr(status, "indexed", 0) or 0) > 0 or getattr(status, "model", None) is not None

        def count(patterns: list[str], answer: Callable[[object], None]) -> None:
            job = self.reader.call(lambda lib, _stop: lib.count_excluded(patterns), "count excluded")
            job.succeeded.connect(answer)
            job.failed.connect(lambda exc: answer(str(exc)))

        return PreferencesDialog(self.snapshot.settings, backbone_names(), locked, self, count_excluded=count)

    def apply_settings(self, changes: dict[str, Any], reindex: bool = False) -> Job:
        """Store settings with the library (then re-index, e.g. after new weights or exclusions)."""
        job = self.writer.call(lambda lib, _stop: lib.update_settings(**changes), "settings")
        job.succeeded.connect(lambda _r: (self.refresh(), self.reader.reset(), self.start_index(None) if reindex else None))
        job.failed.connect(lambda exc: self.report(exc, "save the preferences"))
        return job

    def choose_weights(self) -> None:
        """Use a model file already on this computer (when the download cannot be made)."""
        self.model_download.choose_file()

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About Imagehash",
            "<b>Imagehash</b><br>Find similar photos in your own folders, privately.<br>"
            f"Library: {self.library_path}",
        )

    def _ask(self, title: str, question: str) -> bool:
        answer = QMessageBox.question(self, title, question)
        return answer == QMessageBox.StandardButton.Yes

    # --- shutdown ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop watching, cancel jobs and join every thread this window started (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._requery_timer.stop()
        if self.watcher is not None:
            self.watcher.stop()
        dialog = getattr(self, "duplicates_dialog", None)
        if dialog is not None:
            dialog.shutdown()
        self.writer.shutdown()
        self.reader.shutdown()
        self.thumbs.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        """Closing during an index says "Stopping…" at once, keeps the window responsive, and
        closes it as soon as the index has stopped (at its next step; what was indexed is kept)."""
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.setValue("window/state", self.saveState())
        self.qsettings.setValue("window/splitter", self.splitter.saveState())
        self.qsettings.setValue("results/count", self.count_spin.value())
        self.qsettings.sync()
        if not self._closed and self.is_indexing():
            event.ignore()
            self._stop_then_close()
            return
        self.shutdown()
        super().closeEvent(event)

    def is_stopping(self) -> bool:
        """True between a close during indexing and the window closing."""
        return self._stop_timer is not None

    def _stop_then_close(self) -> None:
        if self._stop_timer is not None:
            return
        self.stoppingStarted.emit()
        self._queued, self._queued_all = set(), False
        self.writer.cancel_all()
        self.reader.cancel_all()
        self._requery_timer.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.progress_label.setText("Stopping…")
        self.progress_label.setToolTip("The window closes as soon as indexing has stopped.")
        self.progress_bar.setRange(0, 0)
        self._show_progress(True)
        self.cancel_button.setEnabled(False)
        self.show_message(
            "Stopping… the window closes as soon as indexing has stopped; the photos indexed so far are kept.",
            Level.INFO,
        )
        self.centralWidget().setEnabled(False)
        self.menuBar().setEnabled(False)
        self.folders_dock.setEnabled(False)
        self._stop_timer = QTimer(self)
        self._stop_timer.setInterval(20)
        self._stop_timer.timeout.connect(self._close_if_stopped)
        self._stop_timer.start()

    @Slot()
    def _close_if_stopped(self) -> None:
        if self.is_indexing():
            return
        if self._stop_timer is not None:
            self._stop_timer.stop()
        self.close()


def _text_answer(lib: Library, text: str, top_k: int) -> tuple[Any, dict]:
    """A text query's answer and the details shown under its results (on the reader thread)."""
    answer = lib.search_text(text, top_k)
    return answer, lib.details([r.path for r in answer.results])
