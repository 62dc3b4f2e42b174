"""The offline first run (issue 14, item 4): the first-run page says what the app needs before it
tries, the download shows bytes and stops on a stall in plain words, and a model file on this
computer is the way on. The download goes to a local server that stops sending (no network)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagehash_app.core import weights_download
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

WAIT_MS = 60_000


@pytest.fixture
def stalled_url() -> Iterator[str]:
    """A local HTTP server that promises 1 MB, sends 200 KB, then nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 200_000)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/models/mobilenet_v2-b0353104.pth"
    server.close()
    for conn in conns:
        conn.close()


@pytest.fixture
def offline_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stalled_url: str) -> Path:
    """A new library with the shipped settings (MobileNetV2, pretrained), its weights not
    downloaded yet (an empty torch hub folder), the download pointed at the stalled server."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setitem(weights_download.PRETRAINED, "mobilenet_v2", (stalled_url, 1_000_000))
    monkeypatch.setattr(weights_download, "STALL_TIMEOUT_S", 0.5)
    path = tmp_path / "library"
    Library.open(path, settings=LibrarySettings(device="cpu")).close()
    return path


def test_a_stalled_download_says_so_and_offers_a_model_file(
    qtbot, make_window, offline_library: Path, photo_dir: Path, tmp_path: Path
) -> None:
    window = make_window(offline_library)
    page = window.welcome
    qtbot.waitUntil(lambda: window.snapshot is not None, timeout=WAIT_MS)
    assert window.stack.currentWidget() is page
    # Before anything is tried: what is needed, how big, and the other way.
    assert page.model_panel.isVisible()
    said = page.model_label.text()
    assert "photo model" in said and "about 1 MB" in said and "downloaded once from the internet" in said
    assert page.choose_button.isVisible() and page.choose_button.text() == "Choose a model file on this computer…"

    seen: list[str] = []
    window.welcome.download_bar.valueChanged.connect(lambda _v: seen.append(page.model_label.text()))
    with qtbot.waitSignal(window.model_download.downloadFinished, timeout=WAIT_MS) as done:
        job = window.add_folders([photo_dir])
        assert job is window.model_download.job  # the folder waits for the model
        assert page.cancel_button.isVisible() and page.download_bar.isVisible()
    assert done.args == [False]
    # Real progress: bytes of the total, as they came.
    assert any("Downloading the photo model…</b> 0.2 MB of 1.0 MB" in t for t in seen), seen
    # The stall, in plain words; no raw error, no command-line flags; the ways on.
    text = page.model_label.text()
    assert "stopped after 0.2 MB of 1.0 MB: nothing arrived for 0.5 seconds" in text
    assert "try again" in text and "choose a model file on this computer" in text
    assert "urlopen" not in text and "--" not in text and "Errno" not in text
    assert page.retry_button.isVisible() and page.choose_button.isVisible()
    assert not page.cancel_button.isVisible() and not page.download_bar.isVisible()
    assert not window.progress_bar.isVisible()
    assert window.stack.currentWidget() is page and not window.is_indexing()
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").iterdir())  # no half file

    # A model file already on this computer: the library takes it and the folder that waited is
    # added (this file is not a model, so indexing then says so, with the same way out).
    junk = tmp_path / "my-model.pth"
    junk.write_bytes(b"not a model")
    shown: list[str] = []
    window.messageShown.connect(shown.append)
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS):
        window.model_download.use_file(junk)
    qtbot.waitUntil(lambda: [f.path for f in window.snapshot.folders] == [photo_dir], timeout=WAIT_MS)
    assert window.snapshot.settings.weights == str(junk)
    assert not page.model_panel.isVisible()
    qtbot.waitUntil(lambda: any("my-model.pth" in t for t in shown), timeout=WAIT_MS)
    assert window.messages.action.text() == "Choose a model file on this computer…"
