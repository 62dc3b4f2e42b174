"""The real window, offscreen, on a tiny-backbone library of generated photos."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from imagehash_app.gui.main_window import MainWindow

WAIT_MS = 60_000


def drop_files(window: MainWindow, paths: list[Path]) -> None:
    """Send a real drag-enter + drop carrying file URLs, as a file manager does."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    center = window.rect().center()
    enter = QDragEnterEvent(center, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(center), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)


def index_folder(qtbot, window: MainWindow, folder: Path) -> object:
    """Add a folder through the window and wait for its index to finish."""
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS) as finished:
        window.add_folders([folder])
    return finished.args[0]


def test_first_run_page_then_index_and_drop_a_photo(qtbot, make_window, tiny_library, photo_dir):
    window = make_window(tiny_library)
    qtbot.waitUntil(lambda: window.snapshot is not None, timeout=WAIT_MS)
    assert window.stack.currentWidget() is window.welcome

    last = index_folder(qtbot, window, photo_dir)
    assert last is not None
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.status.indexed == 15, timeout=WAIT_MS)
    assert window.stack.currentWidget() is window.splitter
    assert window.snapshot.status.skipped == 1
    folder = window.snapshot.folders[0]
    assert (folder.indexed, folder.skipped) == (15, 1)
    assert "15 photos" in window.library_label.text()

    query = photo_dir / "photo_003.jpg"
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as found:
        drop_files(window, [query])
    outcome = found.args[0]
    ranked = [item.path for item in outcome.results]
    assert ranked[0] == query.resolve()
    unrelated = [p for p in ranked if p.name.startswith("photo_") and p.name != "photo_003.jpg"]
    assert ranked.index((photo_dir / "near_copy.jpg").resolve()) < ranked.index(unrelated[0])
    assert window.results_model.rowCount() == len(ranked)
    tip = window.results_model.data(window.results_model.index(0), Qt.ItemDataRole.ToolTipRole)
    assert "score" in tip and "Hamming" in tip
    assert window.query_pane.path == query.resolve() or window.query_pane.path == query
    # The query photo's thumbnail arrives off the GUI thread and lands in <library>/thumbs.
    qtbot.waitUntil(lambda: any((tiny_library / "thumbs").rglob("*.jpg")), timeout=WAIT_MS)

    # Fewer results: re-queried from the kept features, same order.
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as again:
        window.count_spin.setValue(3)
    assert [i.path for i in again.args[0].results] == ranked[:3]


def test_find_similar_from_context_menu_and_open(qtbot, make_window, tiny_library, photo_dir):
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        window.search([photo_dir / "photo_007.jpg"])
    opened: list[str] = []
    window.results_view.open_url = lambda url: opened.append(url.toLocalFile())
    second = window.results_model.index(1)
    second_path = window.results_view.path_at(second)
    actions = {a.text(): a for a in window.results_view.context_actions(second)}
    assert set(actions) == {
        "Open", "Open containing folder", "Copy path", "Find similar to this one", "More like this",
        "Not similar", "Suggest keywords",
    }
    actions["Copy path"].trigger()
    assert QApplication.clipboard().text() == str(second_path)
    actions["Open containing folder"].trigger()
    assert opened == [str(second_path.parent)]
    window.results_view.doubleClicked.emit(second)
    assert opened[-1] == str(second_path)
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as found:
        actions["Find similar to this one"].trigger()
    assert found.args[0].results[0].path == second_path


def test_drop_a_non_image_says_so(qtbot, make_window, tiny_library, tmp_path):
    window = make_window(tiny_library)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with qtbot.waitSignal(window.messageShown, timeout=WAIT_MS) as shown:
        drop_files(window, [notes])
    assert "notes.txt" in shown.args[0] and "not an image" in shown.args[0]
    assert window.messages.isVisible()

    # A file with a photo's name but no photo inside: the engine's reason reaches the person.
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"definitely not a jpeg")
    with qtbot.waitSignal(window.messageShown, timeout=WAIT_MS) as shown:
        drop_files(window, [fake])
    assert "fake.jpg" in shown.args[0]


def test_cancel_an_index(qtbot, make_window, tiny_library, tmp_path, make_photo):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(160):
        make_photo(1000 + i, size=96).save(folder / f"p{i:03d}.jpg", quality=85)
    window = make_window(tiny_library)
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS) as finished:
        window.add_folders([folder])
        qtbot.waitUntil(lambda: getattr(window._last_progress, "phase", "") == "embed", timeout=WAIT_MS)
        assert window.cancel_button.isVisible()
        window.cancel_button.click()
    assert finished.args[0] is None  # cancelled
    assert not window.cancel_button.isVisible()

    def counted() -> bool:
        folders = window.snapshot.folders if window.snapshot else []
        return bool(folders) and folders[0].indexed + folders[0].pending == 160

    qtbot.waitUntil(counted, timeout=WAIT_MS)
    assert window.snapshot.folders[0].pending > 0  # stopped before the end


def test_locked_library_shows_the_message(qtbot, make_window, tiny_library):
    from imagehash_app.core.library import Library

    with Library.open(tiny_library):  # another "process" holds the writer lock
        window = make_window(tiny_library)
        qtbot.waitUntil(lambda: window.read_only, timeout=WAIT_MS)
        assert window.messages.isVisible()
        text = window.messages.text.text()
        assert "Searching still works" in text
        assert window.start_index(None) is None


def test_geometry_is_remembered(qtbot, make_window, tiny_library, qsettings):
    window = make_window(tiny_library)
    window.resize(window.minimumSizeHint().width(), 520)  # the offscreen screen is 800 px wide
    size = (window.width(), window.height())
    window.count_spin.setValue(25)
    window.close()
    assert qsettings.value("window/geometry") is not None
    again = make_window(tiny_library)
    assert again.count_spin.value() == 25
    assert (again.width(), again.height()) == size


def test_adding_a_folder_runs_add_folder_once(qtbot, make_window, tiny_library, photo_dir, monkeypatch):
    from imagehash_app.core.library import Library

    calls: list[Path] = []
    real = Library.add_folder

    def counted(self, path):
        calls.append(Path(path))
        return real(self, path)

    monkeypatch.setattr(Library, "add_folder", counted)
    window = make_window(tiny_library)
    index_folder(qtbot, window, photo_dir)
    assert calls == [photo_dir]
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.status.indexed > 0, timeout=WAIT_MS)


GUI_ENTRY = """
import sys
from imagehash_app.gui import app
seen = {}
def run(library_path=None, open_paths=None):
    seen["paths"] = [str(p) for p in open_paths or []]
    seen["style"] = app.QApplication.instance().style().name().lower()
    seen["library"] = str(library_path)
    return 0
app.run = run
assert app.main(["-style", "fusion", "--library", "LIB", sys.argv[1]]) == 0
print(seen["style"], seen["library"], seen["paths"], "imagehash_app.cli" in sys.modules)
"""


def test_the_window_entry_point_passes_qt_options_and_opens_the_rest(tmp_path):
    """`imagehash-app-gui -style fusion --library LIB PHOTO`: Qt takes its option, the library is
    the one named, the photo is opened, and the command line is never imported."""
    import os
    import subprocess
    import sys

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", GUI_ENTRY, str(photo)], capture_output=True,
                         text=True, timeout=120, env=env, check=True).stdout.strip()
    assert out == f"fusion LIB {[str(photo)]} False"
