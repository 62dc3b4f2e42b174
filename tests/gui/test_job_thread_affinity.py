"""The race behind the crash of issue 14 (item 3): a Job is a QObject of the GUI thread, but it was
destroyed wherever its last Python reference died — on the engine thread, by the cyclic garbage
collector (Job -> its Mailbox -> the Mailbox's handler, a bound method of the Job: a reference
cycle) during the allocation-heavy first search, while the GUI thread could still be delivering
an event to it. Qt forbids deleting an object from a thread other than its own while it may be in
use; now jobs are owned by their EngineThread and deleted on the GUI thread (`deleteLater`) once
both the GUI thread has delivered their end and the engine thread has let go of them."""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import Qt

from imagehash_app.gui.workers import EngineThread

WAIT_MS = 30_000


class _Library:
    def close(self) -> None:
        """Nothing to close: the engine thread only needs the method."""


def _allocating(_lib, _stop):
    """What a first search does to the collector: lots of container allocations on this thread."""
    junk = [[i, [i]] for i in range(30_000)]
    gc.collect()
    return len(junk)


def test_jobs_are_destroyed_on_the_gui_thread_never_on_the_engine_thread(qtbot) -> None:
    gui = threading.get_ident()
    engine = EngineThread(_Library, "imagehash-reader")
    destroyed_on: list[int] = []
    try:
        for _ in range(40):
            job = engine.call(_allocating, "search")
            job.destroyed.connect(lambda *_a: destroyed_on.append(threading.get_ident()),
                                  Qt.ConnectionType.DirectConnection)
            qtbot.waitSignal(job.finished, timeout=WAIT_MS).wait()
            del job
            qtbot.wait(5)  # the GUI thread prunes finished jobs on its next turn
        qtbot.waitUntil(lambda: len(destroyed_on) >= 39, timeout=WAIT_MS)
    finally:
        assert engine.shutdown()
    assert destroyed_on and set(destroyed_on) == {gui}
