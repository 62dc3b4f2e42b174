"""The window's face of failures: the command line's sentences, details in the same log file."""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from imagehash_app.gui.messages import describe, install_excepthook

WAIT_MS = 60_000


def test_damaged_library_shows_the_repair_sentence_and_logs(qtbot, make_window, tiny_library, _log_dir) -> None:
    for side in ("-wal", "-shm"):
        (tiny_library / f"catalog.sqlite3{side}").unlink(missing_ok=True)
    (tiny_library / "catalog.sqlite3").write_bytes(b"not a database at all" * 100)
    shown: list[str] = []
    window = make_window(tiny_library)
    window.messageShown.connect(shown.append)
    qtbot.waitUntil(lambda: any("is damaged" in t for t in shown), timeout=WAIT_MS)
    text = next(t for t in shown if "is damaged" in t)
    assert "repair --rebuild" in text and "Traceback" not in text and "\n" not in text
    assert str(_log_dir / "imagehash-app.log") in text
    assert "Traceback" in (_log_dir / "imagehash-app.log").read_text()


def test_describe_gives_the_cli_sentences(tmp_path: Path, _log_dir) -> None:
    lib = tmp_path / "lib"
    full = describe(sqlite3.OperationalError("database or disk is full"), "index", lib)
    assert full.startswith("Could not index: the disk holding") and "free some space" in full
    damaged = describe(sqlite3.DatabaseError("database disk image is malformed"), "search", lib)
    assert "is damaged" in damaged and "repair --rebuild" in damaged
    odd = describe(ZeroDivisionError("division by zero"))
    assert odd.startswith("imagehash-app failed unexpectedly: ZeroDivisionError") and "details in" in odd


def test_excepthook_turns_an_escaped_exception_into_a_sentence(monkeypatch: pytest.MonkeyPatch, _log_dir) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    shown: list[str] = []
    install_excepthook(shown.append)
    try:
        raise KeyError("slot broke")
    except KeyError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    worker = threading.Thread(target=lambda: 1 / 0)
    worker.start()
    worker.join()
    assert len(shown) == 2 and all("failed unexpectedly" in t and "\n" not in t for t in shown)
    log = (_log_dir / "imagehash-app.log").read_text()
    assert "slot broke" in log and "ZeroDivisionError" in log


def test_thumbnail_cache_on_a_full_disk_keeps_the_thumbnail_and_no_half_file(tmp_path, monkeypatch, make_photo) -> None:
    import errno

    from PIL import Image

    from imagehash_app.gui.thumbnails import ThumbnailCache

    photo = tmp_path / "p.jpg"
    make_photo(1).save(photo)
    cache = ThumbnailCache(tmp_path / "thumbs")

    def full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    image = cache.load(photo)
    assert not image.isNull()
    assert not [p for p in (tmp_path / "thumbs").rglob("*") if p.is_file()]
