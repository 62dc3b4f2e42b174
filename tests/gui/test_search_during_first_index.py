"""Search during the first index (issue 14, item 2): a drop answers from the photos indexed so far,
the caption says so, and the results refresh by themselves when the index ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagehash_app.core import indexer
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.gui import engine

WAIT_MS = 60_000


@pytest.fixture
def gated_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The index run stops after its first stored batch until the returned event is set."""
    gate = threading.Event()
    calls = {"n": 0}

    def hold(name: str) -> None:
        if name == "batch":
            calls["n"] += 1
            if calls["n"] == 1:
                gate.wait(WAIT_MS / 1000)

    monkeypatch.setattr(indexer, "kill_point", hold)
    yield gate
    gate.set()  # never leave the writer thread waiting


def test_a_drop_mid_first_index_answers_then_refreshes_when_it_ends(
    qtbot, make_window, tmp_path: Path, photo_dir: Path, gated_batches: threading.Event
) -> None:
    library = tmp_path / "library"
    settings = LibrarySettings(backbone="tiny", weights="none", bits=64, batch_size=4, device="cpu")
    Library.open(library, settings=settings).close()
    window = make_window(library)
    qtbot.waitUntil(lambda: window.snapshot is not None, timeout=WAIT_MS)
    window.add_folders([photo_dir])
    # The first batch is stored (broken.jpg, near_copy.jpg, photo_000, photo_001: 3 indexed, one
    # skipped); the run waits at the gate, and no hasher exists yet.
    with Library.open(library, read_only=True) as reader:
        qtbot.waitUntil(lambda: reader.status().indexed == 3, timeout=WAIT_MS)
        assert reader.status().model is None
    assert window.is_indexing()
    # The counts the window shows come from the reader while the writer indexes.
    window.reader.call(lambda lib, _stop: engine.snapshot(lib)).succeeded.connect(window._apply_snapshot)
    qtbot.waitUntil(lambda: window._indexed_count() == 3, timeout=WAIT_MS)

    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as first:
        window.search([photo_dir / "photo_000.jpg"])
    hits = first.args[0].results
    assert len(hits) == 3  # the photos indexed so far, ranked by their stored features
    assert hits[0].path == (photo_dir / "photo_000.jpg").resolve()  # it is one of them: first
    caption = window.results_caption.text()
    assert "from 3 photos indexed so far" in caption and "refresh when indexing ends" in caption
    assert "still running" not in caption

    # The index ends: the query runs again by itself, over every photo, and the caption says no
    # more that indexing is running.
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as again:
        gated_batches.set()
    assert not window.is_indexing()
    assert len(again.args[0].results) == 15  # 14 photos + the near copy (broken.jpg skipped)
    assert again.args[0].queries == first.args[0].queries
    caption = window.results_caption.text()
    assert caption.startswith("15 similar photos") and "indexed so far" not in caption
    assert window.results_model.rowCount() == 15
