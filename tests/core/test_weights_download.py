"""The first-run download of the backbone weights: progress, a timeout on a stalled server, cancel,
plain sentences, and the file where torchvision looks for it. Never touches the network: a local
server that stops sending, or a fake opener."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagehash_app.core.errors import CancelledError, WeightsUnavailableError
from imagehash_app.core.weights_download import (
    PRETRAINED,
    WeightsNeed,
    download_steps,
    download_weights,
    hub_dir,
    weights_need,
)


@pytest.fixture
def stalled_server() -> Iterator[str]:
    """An HTTP server that promises 1 MB, sends 10 KB, then nothing: its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    release = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not release.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 10_000)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/mobilenet_v2-b0353104.pth"
    release.set()
    server.close()
    for conn in conns:
        conn.close()


def _need(tmp_path: Path, url: str, name: str = "mobilenet_v2-b0353104.pth") -> WeightsNeed:
    return WeightsNeed("mobilenet_v2", url, tmp_path / "hub" / "checkpoints" / name, 1_000_000)


def test_a_stalled_download_stops_with_a_plain_sentence_and_leaves_no_file(tmp_path, stalled_server) -> None:
    need = _need(tmp_path, stalled_server)
    seen = []
    with pytest.raises(WeightsUnavailableError) as caught:
        for step in download_steps(need, stall_timeout=0.5):
            seen.append(step)
    text = str(caught.value)
    assert "stopped after 0.0 MB of 1.0 MB: nothing arrived for 0.5 seconds" in text
    assert "choose a model file on this computer" in text
    assert "urlopen" not in text and "--" not in text
    assert seen[0].total == 1_000_000 and seen[-1].done == 10_000
    assert not need.file.exists() and list(need.file.parent.iterdir()) == []  # no half file


class _Response(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_a_complete_download_lands_where_torchvision_looks(tmp_path, monkeypatch) -> None:
    data = bytes(range(256)) * 1000
    prefix = hashlib.sha256(data).hexdigest()[:8]
    need = _need(tmp_path, "https://example.invalid/w.pth", f"mobilenet_v2-{prefix}.pth")
    urls = []

    def opener(url, timeout):
        urls.append((url, timeout))
        return _Response(data)

    steps = list(download_steps(need, opener=opener, stall_timeout=3))
    assert urls == [("https://example.invalid/w.pth", 3)]
    assert [s.done for s in steps] == sorted(s.done for s in steps) and steps[-1].done == len(data)
    assert need.file.read_bytes() == data
    # A damaged download (the hash in the name does not match) is refused.
    bad = _need(tmp_path, "https://example.invalid/w.pth", "mobilenet_v2-00000000.pth")
    with pytest.raises(WeightsUnavailableError, match="arrived damaged"):
        download_weights(bad, opener=opener)
    assert not bad.file.exists()


def test_cancel_and_no_network_say_what_happened(tmp_path) -> None:
    need = _need(tmp_path, "https://example.invalid/w.pth")
    with pytest.raises(CancelledError):
        download_weights(need, opener=lambda url, timeout: _Response(b"x" * 500_000),
                         should_stop=lambda: True)

    def offline(url, timeout):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    with pytest.raises(WeightsUnavailableError) as caught:
        download_weights(need, opener=offline)
    assert str(caught.value).startswith("The photo model could not be downloaded: this computer could not reach")
    assert "urlopen" not in str(caught.value) and "name resolution" not in str(caught.value)
    assert list(need.file.parent.iterdir()) == []


def test_weights_need_looks_in_torch_hubs_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert hub_dir() == tmp_path / "torch" / "hub"
    need = weights_need("mobilenet_v2", "auto")
    assert need is not None and need.file == tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert need.size_text == "14 MB"
    assert weights_need("mobilenet_v2", "/some/file.pth") is None  # a local file: nothing to fetch
    assert weights_need("tiny", "auto") is None
    need.file.parent.mkdir(parents=True)
    need.file.write_bytes(b"x")
    assert weights_need("mobilenet_v2", "auto") is None  # already there


def test_the_table_is_torchvisions_own(monkeypatch) -> None:
    import torch.hub
    import torchvision.models as tvm

    from imagehash_app.core.backbone import BACKBONES

    for name, (url, size) in PRETRAINED.items():
        enum = BACKBONES[name].weights()
        assert enum.url == url and abs(enum.meta["_file_size"] * 1e6 - size) < 1e3, name
    assert set(PRETRAINED) == {n for n, s in BACKBONES.items() if s.weights_enum}
    monkeypatch.delenv("TORCH_HOME", raising=False)
    assert hub_dir() == Path(torch.hub.get_dir())
    assert tvm  # imported for the enums above
