"""Background work for the window, so that the GUI thread never waits on the engine.

The engine is synchronous: long jobs are generators that yield progress and stop when `should_stop()`
returns True. Following napari's generator workers and Picard's pools:

- a `Job` wraps one engine call; it runs on a worker thread, checks its stop flag between yields, and
  re-emits progress / result / error on the GUI thread (through a queued hop inside the Job, so any
  slot or lambda connected to its public signals runs on the GUI thread);
- an `EngineThread` is a one-thread executor that owns one `Library` object for its whole life, since
  SQLite connections belong to the thread that opened them. The window has two: a writer (index,
  folders, settings: one writer to the catalogue at a time) and a reader opened read-only, so that
  searches answer while an index runs;
- a Job is a QObject of the GUI thread, so it is destroyed there and nowhere else: its EngineThread
  owns it (Qt parent) and deletes it with `deleteLater` once the GUI thread has delivered its end and
  the engine thread has let go of it. (Owned by Python, a job died wherever its last reference did:
  its Mailbox's handler is a bound method of the job, a reference cycle, so the cyclic garbage
  collector destroyed jobs on the engine thread in the middle of an allocation-heavy search, while
  the GUI thread could still be delivering an event to them: issue 14's crash in the reader thread,
  tests/gui/test_job_thread_affinity.py);
- thumbnails are plain functions run on a small `QThreadPool` (see results_view.py).
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import queue
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from imagehash_app.core.errors import CancelledError

if TYPE_CHECKING:
    from imagehash_app.core.library import Library

StopFlag = Callable[[], bool]
JobFn = Callable[["Library", StopFlag], object]


class Mailbox(QObject):
    """Hands Python objects from worker threads to a handler on the GUI thread.

    The objects travel in a deque; only an argument-less wake-up signal crosses threads. (Queued
    signals carrying arbitrary Python objects under heavy traffic tripped a reference-counting bug
    in PySide6 6.12 here, and a burst of events is also cheaper delivered as one batch.)
    """

    _wake = Signal()

    def __init__(self, handler: Callable[[Any], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._handler = handler
        self._items: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)

    def put(self, item: Any) -> None:
        """Call from any thread; the handler runs later on the thread this mailbox lives in."""
        with self._lock:
            self._items.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        self._wake.emit()

    @Slot()
    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        while True:
            try:
                item = self._items.popleft()
            except IndexError:
                return
            self._handler(item)


class Job(QObject):
    """One engine call run on a worker thread; its public signals fire on the GUI thread.

    `fn(library, should_stop)` returns a value or a generator; a generator's yields become `progress`
    and its last yield (or return value) becomes the result. Exactly one of `succeeded`, `failed`,
    `cancelled` fires, then `finished`.
    """

    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: JobFn, name: str = "", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or getattr(fn, "__name__", "job")
        self._fn = fn
        self._stop = threading.Event()
        self.done = False
        self.released = False  # the engine thread will not touch this job again
        self._mailbox = Mailbox(self._deliver, self)

    def cancel(self) -> None:
        """Ask the job to stop at its next yield (threads cannot be killed)."""
        self._stop.set()

    def should_stop(self) -> bool:
        """The callable handed to the engine."""
        return self._stop.is_set()

    def perform(self, library: Library) -> None:
        """Run on the worker thread; never raises."""
        if self._stop.is_set():
            self._post("cancelled", None)
            return
        try:
            out = self._fn(library, self.should_stop)
            if inspect.isgenerator(out):
                out = self._drain(out)
        except CancelledError:
            self._post("cancelled", None)
        except Exception as exc:  # every error reaches the person as a message, never a traceback
            self._post("failed", exc)
        else:
            self._post("cancelled" if self._stop.is_set() and out is None else "succeeded", out)

    def post_progress(self, payload: object) -> None:
        """Report progress from the worker thread for an engine call that takes a `progress`
        callback instead of yielding (it arrives as `progress`, on the GUI thread)."""
        self._post("progress", payload)

    def fail_now(self, exc: BaseException) -> None:
        """Report an error that happened before the job could run (e.g. the library would not open)."""
        self._post("failed", exc)

    def _drain(self, gen: Generator[object, None, object]) -> object:
        last = None
        try:
            while True:
                if self._stop.is_set():
                    gen.close()
                    raise CancelledError("cancelled")
                last = next(gen)
                self._post("progress", last)
        except StopIteration as stop:
            return stop.value if stop.value is not None else last

    def _post(self, kind: str, payload: object) -> None:
        self._mailbox.put((kind, payload))

    def _deliver(self, message: tuple[str, object]) -> None:
        kind, payload = message
        if self.done:
            return
        if kind == "progress":
            self.progress.emit(payload)
            return
        self.done = True
        if kind == "succeeded":
            self.succeeded.emit(payload)
        elif kind == "failed":
            self.failed.emit(payload)
        else:
            self.cancelled.emit()
        self.finished.emit()


class EngineThread(QThread):
    """A one-thread executor owning one library object (opened lazily, on its own thread).

    `opener()` is retried for each job while it fails (a locked library may be released later); the
    error goes to that job's `failed` signal. `reset()` closes the library so that the next job reopens
    it, e.g. to see a new model after indexing.
    """

    def __init__(self, opener: Callable[[], Library], name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self._opener = opener
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending: list[Job] = []
        self._reset_requested = threading.Event()
        self._stopping = False

    def submit(self, job: Job) -> Job:
        """Queue a job (FIFO); starts the thread on first use."""
        if self._stopping:
            job.fail_now(RuntimeError("the application is closing"))
            job.released = True
            return job
        if job.parent() is None:
            job.setParent(self)  # owned here, deleted on this (the GUI) thread: see the module doc
        self._pending.append(job)
        job.finished.connect(self._forget)
        self._queue.put(job)
        if not self.isRunning():
            self.start()
        return job

    def call(self, fn: JobFn, name: str = "") -> Job:
        """Shorthand: wrap `fn` in a Job and submit it."""
        return self.submit(Job(fn, name, parent=None))

    def busy(self) -> bool:
        """True while any job is queued or running."""
        return any(not j.done for j in self._pending)

    def reset(self) -> None:
        """Close the library before the next job, which then reopens it."""
        self._reset_requested.set()

    def cancel_all(self) -> None:
        """Ask every queued and running job to stop."""
        for job in list(self._pending):
            job.cancel()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Cancel everything, close the library on its thread and join the thread."""
        self._stopping = True
        self.cancel_all()
        if not self.isRunning():
            return True
        self._queue.put(None)
        return self.wait(timeout_ms)

    @Slot()
    def _forget(self) -> None:
        # Drop finished jobs on the next event-loop turn, not while their `finished` is being emitted.
        QTimer.singleShot(0, self._prune)

    @Slot()
    def _prune(self) -> None:
        """Delete, on the GUI thread, the jobs both threads are finished with."""
        keep: list[Job] = []
        for job in self._pending:
            if job.done and job.released:
                if job.parent() is self:
                    job.deleteLater()
            else:
                keep.append(job)
        self._pending = keep
        if any(j.done for j in keep):  # delivered, not yet let go of by the engine thread
            QTimer.singleShot(20, self._prune)

    def run(self) -> None:  # the worker thread
        library = None
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    break
                if self._reset_requested.is_set() and library is not None:
                    self._reset_requested.clear()
                    _close_quietly(library)
                    library = None
                if library is None and not job.should_stop():
                    try:
                        library = self._opener()
                    except Exception as exc:
                        job.fail_now(exc)
                        job.released = True
                        job = None
                        continue
                job.perform(library)
                job.released = True  # from here on only the GUI thread holds it (and deletes it)
                job = None
        finally:
            if library is not None:
                _close_quietly(library)


def _close_quietly(library: Library) -> None:
    # Closing is best effort at shutdown; the engine keeps its files consistent on its own.
    with contextlib.suppress(Exception):
        library.close()
