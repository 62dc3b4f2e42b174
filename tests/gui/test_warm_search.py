"""Right after the window shows, the reader warms the search (issue 14, item 1): the torch-free
query backbone, codes and decoder are loaded once, and the first drop finds them ready."""

from __future__ import annotations

import functools

from test_main_window import WAIT_MS, drop_files

from imagehash_app.core import backbone as backbone_module
from imagehash_app.core import query_model
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings


def test_window_warms_the_search_once_then_the_first_drop_answers(
    qtbot, make_window, tmp_path, photo_dir, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "library"
    settings = LibrarySettings(backbone="tiny", weights="none", bits=64, device="cpu")
    with monkeypatch.context() as m:  # the tiny backbone's ONNX export, as real ones have on CPU
        m.setattr(backbone_module, "load_backbone", functools.partial(
            backbone_module.load_backbone, runtime="onnxruntime"))
        with Library.open(path, settings=settings) as lib:
            list(lib.index([photo_dir]))

    warmed, loads = [], []
    real_warm, real_load = Library.warm_search, query_model.load
    monkeypatch.setattr(Library, "warm_search", lambda self, **kw: (
        warmed.append((self.read_only, kw)), real_warm(self, **kw))[1])
    monkeypatch.setattr(query_model, "load", lambda *a: (loads.append(a), real_load(*a))[1])

    window = make_window(path, rescan=False)
    qtbot.waitUntil(lambda: bool(warmed), timeout=WAIT_MS)
    assert warmed == [(True, {"persist_graph": True})]  # on the read-only reader
    probe = window.reader.call(lambda lib, _stop: (
        lib._search_state is not None, type(lib.query_backbone()).__name__), "probe")
    ready = qtbot.waitSignal(probe.succeeded, timeout=WAIT_MS)
    ready.wait()
    assert ready.args[0] == (True, "QueryBackbone")

    query = photo_dir / "photo_003.jpg"
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as found:
        drop_files(window, [query])
    ranked = [item.path for item in found.args[0].results]
    assert ranked[0] == query.resolve()
    assert (photo_dir / "near_copy.jpg").resolve() in ranked[:3]
    assert len(loads) == 1  # loaded by the warm-up, not again by the drop
    window.hide()
    window.show()
    qtbot.wait(50)
    assert len(warmed) == 1  # once per window, not per show
