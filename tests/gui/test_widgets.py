"""The window's parts on their own: drops/pastes, preferences, the job runner, status text."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QColor, QImage

from imagehash_app.core.errors import ImageDecodeError, LibraryLockedError
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.gui.dialogs.preferences import PreferencesDialog
from imagehash_app.gui.drop_zone import read_payload
from imagehash_app.gui.engine import merge, status_line
from imagehash_app.gui.main_window import progress_text
from imagehash_app.gui.messages import describe
from imagehash_app.gui.workers import EngineThread


def test_payload_sorts_photos_folders_and_the_rest(tmp_path, make_photo):
    photo = tmp_path / "a.jpg"
    make_photo(1, 32).save(photo)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in (photo, tmp_path, notes)])
    payload = read_payload(mime)
    assert payload.images == [photo] and payload.folders == [tmp_path]
    assert payload.rejected == [(notes, "not an image")]

    pasted = QMimeData()
    pasted.setText(f"{photo}\nfile://{photo}\n")
    assert read_payload(pasted).images == [photo, photo]

    raw = QMimeData()
    image = QImage(8, 8, QImage.Format.Format_RGB32)
    image.fill(QColor(200, 10, 10))
    raw.setImageData(image)
    saved = read_payload(raw).images
    assert len(saved) == 1 and saved[0].suffix == ".png" and QImage(str(saved[0])).width() == 8
    saved[0].unlink()

    remote = QMimeData()
    remote.setUrls([QUrl("https://example.org/cat.jpg")])
    assert "this computer" in read_payload(remote).rejected[0][1]


def test_preferences_report_only_changes_and_lock_identity(qtbot):
    settings = LibrarySettings(backbone="mobilenet_v2", bits=64, rerank_depth=200)
    dialog = PreferencesDialog(settings, ["mobilenet_v2", "resnet50"], identity_locked=True)
    qtbot.addWidget(dialog)
    assert dialog.changes() == {}
    assert not dialog.backbone.isEnabled() and not dialog.bits.isEnabled()
    dialog.rerank.setValue(500)
    dialog.exclude.setPlainText("*/Screenshots/*\n\n*.gif ")
    dialog.threads.setValue(2)
    assert dialog.changes() == {"rerank_depth": 500, "exclude_patterns": ["*/Screenshots/*", "*.gif"], "threads": 2}

    fresh = PreferencesDialog(settings, ["mobilenet_v2", "resnet50"], identity_locked=False)
    qtbot.addWidget(fresh)
    fresh.backbone.setCurrentText("resnet50")
    fresh.bits.setCurrentText("128")
    assert fresh.changes() == {"backbone": "resnet50", "bits": 128}
    assert fresh.changes_identity()


def test_engine_thread_runs_generators_cancels_and_reports_errors(qtbot):
    opened: list[int] = []

    def opener() -> object:
        opened.append(threading.get_ident())
        return SimpleNamespace(close=lambda: None)

    thread = EngineThread(opener, "test-engine")
    try:
        def counting(_lib, should_stop):
            yield from range(5)
            return "done"

        job = thread.call(counting)
        seen: list[int] = []
        job.progress.connect(seen.append)
        ok = qtbot.waitSignal(job.succeeded, timeout=10_000)  # queued to this thread: none missed
        ok.wait()
        assert ok.args == ["done"] and seen == [0, 1, 2, 3, 4]
        assert opened and opened[0] != threading.get_ident()  # opened on the worker, not the GUI

        gate = threading.Event()

        def endless(_lib, should_stop):
            i = 0
            while True:
                gate.set()
                yield i
                i += 1

        job = thread.call(endless)
        assert gate.wait(10)
        with qtbot.waitSignal(job.cancelled, timeout=10_000):
            job.cancel()

        def broken(_lib, _stop):
            raise ImageDecodeError("not an image", Path("x.txt"))

        job = thread.call(broken)
        failed = qtbot.waitSignal(job.failed, timeout=10_000)
        failed.wait()
        assert "x.txt cannot be searched: not an image" in describe(failed.args[0])
    finally:
        assert thread.shutdown()
    assert not thread.isRunning()


def test_messages_are_for_people():
    assert "disk is full" in describe(OSError(28, "No space left on device"), "index")
    assert "disappeared" in describe(FileNotFoundError(2, "gone", "/photos/a"), "")
    assert "other" in describe(LibraryLockedError("Another imagehash-app (pid 1) is using the library; close it first."))


def test_status_and_progress_texts():
    status = SimpleNamespace(indexed=4317, bits=64, model={"method": "urph", "bits": 64},
                             bytes_per_image={"code": 8.0, "on_disk": 1234.5})
    assert status_line(status) == "4,317 photos · urph 64-bit · 8 B code, 1.2 KB on disk per photo"
    event = SimpleNamespace(phase="embed", done=1200, total=4317, rate=27.4, eta_s=114.0)
    assert progress_text(event) == "Indexing: 1,200 / 4,317 · 27 photos/s · 1 min 54 s left"


def test_merge_keeps_each_photo_once_with_its_best_score():
    hit = lambda p, s, h: SimpleNamespace(path=Path(p), score=s, hamming=h)  # noqa: E731
    merged = merge([[hit("/a", 0.9, 2), hit("/b", 0.5, 9)], [hit("/b", 0.8, 4), hit("/c", 0.7, 5)]], 10)
    assert [(str(m.path), m.score) for m in merged] == [("/a", 0.9), ("/b", 0.8), ("/c", 0.7)]


def test_many_emits_do_not_exhaust_true():
    """PySide6 6.12.0's emit() under-counts the `True` it returns and aborts the app after a few
    hundred emits; constraints.txt excludes it, and this guards the installed version."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Pinger(QObject):
        ping = Signal(object)

    pinger = Pinger()
    pinger.ping.connect(lambda _v: None)
    before = sys.getrefcount(True)
    for i in range(5000):
        pinger.ping.emit(i)
    assert abs(sys.getrefcount(True) - before) < 50


def test_thumbnail_of_a_photo_whose_name_is_not_utf8(tmp_path, make_photo):
    import os

    from imagehash_app.gui.thumbnails import ThumbnailCache

    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.jpg"))
    make_photo(3).save(path)
    cache = ThumbnailCache(tmp_path / "thumbs", size=64)
    assert cache.cache_file(path) is not None
    assert not cache.load(path).isNull() and cache.cache_file(path).exists()


def test_drops_and_opened_results_keep_a_name_that_is_not_utf8(qtbot, tmp_path, make_photo):
    """Qt's own QUrl <-> path conversion drops such bytes (another file would be searched or
    opened); the window goes through the URL's percent-encoded form."""
    import os
    from urllib.parse import quote_from_bytes

    from imagehash_app.gui.local_urls import path_of, url_of
    from imagehash_app.gui.results_view import ResultsModel, ResultsView
    from imagehash_app.gui.thumbnails import ThumbnailCache, ThumbnailLoader

    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9 1.jpg"))
    make_photo(4, 32).save(path)
    assert path_of(url_of(path)) == path
    assert path_of(url_of(tmp_path / "été.jpg")) == tmp_path / "été.jpg"

    dropped = QMimeData()  # as a file manager sends it: text/uri-list, percent-encoded bytes
    uri = b"file://" + quote_from_bytes(os.fsencode(path)).encode() + b"\r\n"
    dropped.setData("text/uri-list", uri)
    assert read_payload(dropped).images == [path]
    pasted = QMimeData()
    pasted.setText(uri.decode())
    assert read_payload(pasted).images == [path]

    view = ResultsView(ResultsModel(ThumbnailLoader(ThumbnailCache(tmp_path / "thumbs"))))
    qtbot.addWidget(view)
    opened: list[QUrl] = []
    view.open_url = opened.append
    view.open_photo(path)
    view.open_folder(path)
    assert [path_of(u) for u in opened] == [path, tmp_path]
