"""A query replaced while an older one is still running: only the newest is shown, and its photo
reaches the pane (seen while making docs/screenshots/multi-photo-query.png: a re-query started by
the end of an index answered after a new two-photo drop, the pane kept "…")."""

from __future__ import annotations

import threading
from pathlib import Path

from imagehash_app.gui import engine

WAIT_MS = 60_000


def test_an_older_requery_that_answers_late_is_not_shown(qtbot, make_window, tiny_library, photo_dir: Path, monkeypatch) -> None:
    window = make_window(tiny_library)
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS):
        window.add_folders([photo_dir])
    first = photo_dir / "photo_001.jpg"
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        window.search([first])

    gate, entered = threading.Event(), threading.Event()
    real = engine.requery

    def slow_requery(lib, previous, top_k):
        entered.set()
        gate.wait(WAIT_MS / 1000)
        return real(lib, previous, top_k)

    monkeypatch.setattr(engine, "requery", slow_requery)
    shown: list[engine.QueryOutcome] = []
    window.searchFinished.connect(shown.append)
    window.requery()  # e.g. started by the end of an index; held on the reader thread
    qtbot.waitUntil(entered.is_set, timeout=WAIT_MS)  # running: cancelling it cannot stop it now
    pair = [photo_dir / "photo_003.jpg", photo_dir / "photo_011.jpg"]
    window.search(pair)  # the person drops two photos meanwhile
    gate.set()
    qtbot.waitUntil(lambda: bool(shown) and not window.is_searching(), timeout=WAIT_MS)
    qtbot.wait(200)
    assert [o.queries for o in shown] == [[p.resolve() for p in pair]]  # the old one never shown
    assert window.query.queries == [p.resolve() for p in pair]
    assert window.query_pane.path.resolve() == pair[0].resolve()
    qtbot.waitUntil(lambda: window.query_pane._pixmap is not None, timeout=WAIT_MS)
