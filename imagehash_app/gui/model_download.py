"""Getting the photo model on the first run: said before it is tried, downloaded with real progress
and a timeout, or taken from a file the person already has.

The library's backbone needs pretrained weights (about 14 MB for MobileNetV2) that torchvision would
otherwise fetch silently in the middle of the first index. Here the window asks the engine first
(`weights_need`), says so on the first-run page, and when the person adds a folder runs
`download_steps` on the writer thread (bytes of total on the page and in the status bar; no byte for
`STALL_TIMEOUT_S` seconds and it stops, in plain words), then adds the folder. "Choose a model file
on this computer…" stores a local weights file as the library's instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QFileDialog

from imagehash_app.core.errors import WeightsUnavailableError
from imagehash_app.core.library import DownloadProgress, WeightsNeed, download_steps, weights_need
from imagehash_app.gui import engine
from imagehash_app.gui.messages import Level, describe
from imagehash_app.gui.workers import Job

if TYPE_CHECKING:
    from imagehash_app.gui.main_window import MainWindow

MODEL_FILES = "Model files (*.pth *.pt *.safetensors);;All files (*)"


def plain_weights_text(exc: BaseException) -> str:
    """A weights error in a photographer's words (the engine's own sentence names CLI flags)."""
    text = str(exc)
    if "--weights" in text or "urlopen" in text:
        return (
            "The photo model could not be downloaded (is this computer offline?). Try again when "
            "it is connected, or choose a model file on this computer."
        )
    return text


class ModelDownload(QObject):
    """The first-run model step of one window: what is needed, the download, a local file."""

    downloadFinished = Signal(bool)  # True: the model is here now

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.job: Job | None = None
        self.failed_text = ""  # the last failure, kept on the page until the next attempt
        self._waiting_folders: list[Path] = []
        self._waiting_index = False
        window.welcome.chooseModelRequested.connect(self.choose_file)
        window.welcome.retryDownloadRequested.connect(self.start)
        window.welcome.cancelDownloadRequested.connect(self.cancel)

    def need(self) -> WeightsNeed | None:
        """What the library's backbone still lacks (None: nothing, or not known yet)."""
        snap = self.window.snapshot
        if snap is None or self.window.read_only:
            return None
        return weights_need(snap.settings.backbone, snap.settings.weights)

    def downloading(self) -> bool:
        return self.job is not None and not self.job.done

    def update_page(self) -> None:
        """After a snapshot: say on the first-run page what is needed (unless a download or its
        failure is shown there)."""
        if self.downloading() or self.failed_text:
            return
        need = self.need()
        self.window.welcome.show_model_needed(need.size_text if need else None)

    def before_folders(self, folders: Sequence[Path]) -> Job | None:
        """The download job the folders wait for, or None when the model is here (go on)."""
        if self.need() is None:
            return None
        self._waiting_folders += [Path(f) for f in folders]
        return self.start()

    def before_index(self) -> Job | None:
        """The download job an index waits for, or None when the model is here (go on)."""
        if self.need() is None:
            return None
        self._waiting_index = True
        return self.start()

    @Slot()
    def start(self) -> Job | None:
        """Download the model (once; a running download is returned as is)."""
        need = self.need()
        if need is None:
            self._go_on()
            return None
        if self.downloading():
            return self.job
        self.failed_text = ""
        self._show(DownloadProgress(0, need.size))
        job = self.window.writer.call(
            lambda _lib, stop: download_steps(need, should_stop=stop), "download the photo model"
        )
        job.progress.connect(self._show)
        job.succeeded.connect(self._on_done)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        self.job = job
        return job

    @Slot()
    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    @Slot()
    def choose_file(self) -> None:
        """"Choose a model file on this computer…": store it as the library's weights, then go on."""
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Choose a model file on this computer", str(Path.home()), MODEL_FILES
        )
        if path:
            self.use_file(Path(path))

    def use_file(self, path: Path) -> Job:
        """Make `path` the library's weights (allowed while nothing is indexed), then add the folders
        that waited, or re-index."""
        self.cancel()
        job = self.window.writer.call(
            lambda lib, _stop: (lib.update_settings(weights=str(path)), engine.snapshot(lib))[1],
            "use the model file",
        )
        job.succeeded.connect(self._on_file_used)
        job.failed.connect(lambda exc: self.window.report(exc, "use the model file"))
        return job

    @Slot(object)
    def _on_file_used(self, snap: engine.Snapshot) -> None:
        self.failed_text = ""
        self.window._apply_snapshot(snap)
        self.window.reader.reset()
        if not self._waiting_folders and snap.folders:
            self._waiting_index = True  # folders waiting for a model are indexed with this one
        self._go_on()

    def _show(self, step: DownloadProgress) -> None:
        self.window.welcome.show_download(step.done, step.total)
        w = self.window
        of = f" {step.done / 1e6:.1f} MB of {step.total / 1e6:.1f} MB" if step.total else ""
        w.progress_label.setText(f"Downloading the photo model…{of}")
        w.progress_bar.setRange(0, 1000 if step.total else 0)
        if step.total:
            w.progress_bar.setValue(int(1000 * min(step.done, step.total) / step.total))
        w.progress_label.setVisible(True)
        w.progress_bar.setVisible(True)

    def _hide_progress(self) -> None:
        if not self.window.is_indexing():
            self.window.progress_label.setVisible(False)
            self.window.progress_bar.setVisible(False)

    @Slot(object)
    def _on_done(self, _result: object) -> None:
        self._hide_progress()
        self.window.welcome.show_model_needed(None)
        self.window.statusBar().showMessage("The photo model is ready.", 5000)
        self.downloadFinished.emit(True)
        self._go_on()

    @Slot(object)
    def _on_failed(self, exc: object) -> None:
        self._hide_progress()
        if isinstance(exc, WeightsUnavailableError):
            text = str(exc)
        else:
            text = describe(exc if isinstance(exc, BaseException) else RuntimeError(str(exc)),
                            "download the photo model")
        self._stop_waiting(text)

    @Slot()
    def _on_cancelled(self) -> None:
        self._hide_progress()
        self._stop_waiting(
            "The download was cancelled. Try again, or choose a model file on this computer."
        )

    def _stop_waiting(self, text: str) -> None:
        self.failed_text = text
        self.window.welcome.show_download_failed(text)
        if self.window.stack.currentWidget() is not self.window.welcome:
            self.window.show_message(text, Level.ERROR, "Choose a model file on this computer…", "weights")
        self.downloadFinished.emit(False)

    def _go_on(self) -> None:
        folders, self._waiting_folders = self._waiting_folders, []
        index, self._waiting_index = self._waiting_index, False
        if folders:
            self.window.add_folders(folders)
        elif index:
            self.window.start_index(None)
