"""Issue 14 item 7 on the real window: details under each result, Enter opens the current one,
a message when no viewer could open it, Alt+Left goes back to the previous query."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from imagehash_app.gui.results_view import DetailsRole
from tests.gui.test_main_window import WAIT_MS, drop_files, index_folder


def test_results_show_folder_pixel_size_file_size_and_date(qtbot, make_window, tiny_library, photo_dir):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [photo_dir / "photo_003.jpg"])
    model = window.results_model
    rows = {model.items()[r].path.name: r for r in range(model.rowCount())}
    folder, facts = model.data(model.index(rows["photo_003.jpg"]), DetailsRole)
    assert folder == f"{photo_dir.parent.name}/photos"
    size = (photo_dir / "photo_003.jpg").stat().st_size
    day = time.strftime("%Y-%m-%d", time.localtime((photo_dir / "photo_003.jpg").stat().st_mtime))
    assert facts == f"128×128 · {size / 1000:.0f} KB · {day}"
    _, near = model.data(model.index(rows["near_copy.jpg"]), DetailsRole)
    assert near.startswith("112×112 · ")
    tip = model.data(model.index(rows["near_copy.jpg"]), Qt.ItemDataRole.ToolTipRole)
    assert "112×112" in tip and str(photo_dir / "near_copy.jpg") in tip
    window.results_view.grab()  # the delegate paints the four lines without error


def test_enter_opens_the_current_result_and_says_when_nothing_could(qtbot, make_window, tiny_library, photo_dir):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [photo_dir / "photo_007.jpg"])
    opened: list[str] = []
    window.results_view.open_url = lambda url: opened.append(url.toLocalFile()) or True
    view = window.results_view
    view.setFocus()
    view.setCurrentIndex(window.results_model.index(2))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert opened == [str(view.path_at(window.results_model.index(2)))]

    view.open_url = lambda url: False  # no viewer installed
    with qtbot.waitSignal(view.message, timeout=WAIT_MS) as said:
        qtbot.keyClick(view, Qt.Key.Key_Enter)
    assert "No program could open" in said.args[0]
    assert "No program could open" in window.statusBar().currentMessage()


def test_alt_left_goes_back_to_the_previous_query(qtbot, make_window, tiny_library, photo_dir):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    assert window.back_action.shortcut() == QKeySequence("Alt+Left")
    assert not window.back_action.isEnabled()
    first, second = photo_dir / "photo_001.jpg", photo_dir / "photo_012.jpg"
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [first])
    shown_first = [r.path for r in window.results_model.items()]
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [second])
    assert window.back_action.isEnabled()
    assert window.query_pane.path.resolve() == second.resolve()

    window.activateWindow()
    window.setFocus()
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    # At once: the pane and the grid show the first query again.
    assert window.query_pane.path.resolve() == first.resolve()
    assert [r.path for r in window.results_model.items()] == shown_first
    assert not window.back_action.isEnabled()  # nothing before the first query
    qtbot.waitUntil(lambda: not window.is_searching(), timeout=WAIT_MS)  # the refresh came back
    assert [r.path for r in window.results_model.items()] == shown_first


def test_space_previews_the_current_result_larger(qtbot, make_window, tiny_library, photo_dir):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [photo_dir / "photo_004.jpg"])
    view = window.results_view
    view.setFocus()
    view.setCurrentIndex(window.results_model.index(0))
    qtbot.keyClick(view, Qt.Key.Key_Space)
    preview = view.preview
    assert preview.isVisible()
    assert preview.picture.pixmap().size().width() == 128  # the photo itself, not the thumbnail
    assert "1 of" in preview.caption.text() and "photo_004.jpg" in preview.caption.text()
    qtbot.keyClick(preview, Qt.Key.Key_Right)
    second = view.path_at(window.results_model.index(1))
    assert str(second) in preview.caption.text()
    qtbot.keyClick(preview, Qt.Key.Key_Space)
    assert not preview.isVisible()
    assert view.currentIndex().row() == 1  # the grid follows where the preview went


def test_open_containing_folder_selects_the_photo(qtbot, make_window, tiny_library, photo_dir):
    from imagehash_app.gui.reveal import reveal_command

    assert reveal_command(Path("/p/a.jpg"), "darwin") == ["open", "-R", "/p/a.jpg"]
    assert reveal_command(Path("C:/p/a.jpg"), "win32")[0] == "explorer"
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [photo_dir / "photo_002.jpg"])
    view = window.results_view
    revealed: list[Path] = []
    opened: list[str] = []
    view.open_url = lambda url: opened.append(url.toLocalFile()) or True
    view.reveal = lambda path: revealed.append(path) or True
    first = view.path_at(window.results_model.index(0))
    view.open_folder(first)
    assert revealed == [first] and opened == []  # the file manager selects the photo
    view.reveal = lambda path: False  # no file manager that can select: its folder opens
    view.open_folder(first)
    assert opened == [str(first.parent)]
