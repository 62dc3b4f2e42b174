"""Issue 14: one consistent state in every view (items 5 and 6), driving the real window."""

from __future__ import annotations

from tests.gui.test_main_window import WAIT_MS, drop_files, index_folder


def test_a_failed_query_leaves_the_previous_results_and_its_photo(qtbot, make_window, tiny_library, photo_dir, tmp_path):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    good = photo_dir / "photo_005.jpg"
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as found:
        drop_files(window, [good])
    shown = [r.path for r in found.args[0].results]

    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not a jpeg at all")
    with qtbot.waitSignal(window.messageShown, timeout=WAIT_MS) as shown_msg:
        drop_files(window, [fake])
    assert "fake.jpg" in shown_msg.args[0]
    qtbot.waitUntil(lambda: "failed" in window.results_caption.text(), timeout=WAIT_MS)
    # The pane shows the photo whose results the grid still shows, never the failed file.
    assert window.query_pane.path.resolve() == good.resolve()
    assert [r.path for r in window.results_model.items()] == shown
    assert "fake.jpg" in window.results_caption.text() and "photo_005.jpg" in window.results_caption.text()
    assert window.messages.isVisible()

    # The next search that answers clears the red banner.
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [photo_dir / "photo_009.jpg"])
    assert not window.messages.isVisible()
    assert window.query_pane.path.resolve() == (photo_dir / "photo_009.jpg").resolve()


def test_a_failed_first_query_shows_nothing_stale(qtbot, make_window, tiny_library, photo_dir, tmp_path):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not a jpeg at all")
    with qtbot.waitSignal(window.messageShown, timeout=WAIT_MS):
        drop_files(window, [fake])
    qtbot.waitUntil(lambda: "failed" in window.results_caption.text(), timeout=WAIT_MS)
    assert window.query_pane.path is None
    assert window.results_model.rowCount() == 0


def test_the_grid_follows_a_watched_folder_that_gains_a_photo(qtbot, make_window, tiny_library, photo_dir, make_photo):
    window = make_window(tiny_library, watch=True)
    index_folder(qtbot, window, photo_dir)
    query = photo_dir / "photo_003.jpg"
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        window.count_spin.setValue(100)
        drop_files(window, [query])
    qtbot.waitUntil(lambda: window.query is not None and window.query.results[0].path == query.resolve(), timeout=WAIT_MS)
    before = {r.path for r in window.results_model.items()}
    new = photo_dir / "new_arrival.jpg"
    make_photo(4242).save(new, quality=90)
    # The watcher re-indexes the folder; the finished index re-runs the query and the grid shows it.
    qtbot.waitUntil(lambda: new.resolve() in {r.path for r in window.results_model.items()}, timeout=WAIT_MS)
    assert before < {r.path for r in window.results_model.items()}
    assert window.query_pane.path.resolve() == query.resolve()


def test_two_dropped_photos_get_one_tab_each(qtbot, make_window, tiny_library, photo_dir):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    window.count_spin.setValue(5)
    first, second = photo_dir / "photo_003.jpg", photo_dir / "photo_011.jpg"
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as found:
        drop_files(window, [first, second])
    outcome = found.args[0]
    own = [[r.path for r in hits] for hits in outcome.per_query]
    assert own[0] != own[1]
    assert window.query_tabs.isVisible() and window.query_tabs.count() == 2
    assert "photo_003.jpg" in window.query_tabs.tabText(0) and "photo_011.jpg" in window.query_tabs.tabText(1)

    # Each tab is headed by its query: the pane shows it and the grid holds its own results only.
    assert [r.path for r in window.results_model.items()] == own[0]
    assert window.results_model.items()[0].path == first.resolve()
    assert window.query_pane.path.resolve() == first.resolve()
    assert "photo_003.jpg" in window.results_caption.text() and "1 of 2" in window.results_caption.text()
    window.query_tabs.setCurrentIndex(1)
    assert [r.path for r in window.results_model.items()] == own[1]
    assert window.results_model.items()[0].path == second.resolve()
    assert window.query_pane.path.resolve() == second.resolve()

    # A new result count keeps the tab being looked at.
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        window.count_spin.setValue(3)
    assert window.query_tabs.currentIndex() == 1
    assert [r.path for r in window.results_model.items()] == own[1][:3]

    # One photo again: no tabs.
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [first])
    assert not window.query_tabs.isVisible()
    assert window.results_model.items()[0].path == first.resolve()
