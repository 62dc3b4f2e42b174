"""Queries without PyTorch: the ONNX export a writer checked, loaded straight into ONNX Runtime.

A writer records its checked export in the catalogue; a reader's search then embeds with that file
alone (same features and results as the PyTorch-built backbone), a new `imagehash-app search`
process never imports torch, and anything that does not match falls back to PyTorch correctly.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from photos import PhotoSet, make_photo_folder

from imagehash_app.core import backbone as backbone_module
from imagehash_app.core import query_model
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

ROOT = Path(__file__).resolve().parents[2]
TINY = LibrarySettings(backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhotoSet, Path]:
    """A tiny library indexed with the ONNX runtime (the tiny backbone's own default is PyTorch),
    its export cached in a throwaway cache folder (XDG_CACHE_HOME, as platformdirs reads it)."""
    root = tmp_path_factory.mktemp("query_model")
    cache = root / "cache"
    photos = make_photo_folder(root / "photos", groups=2, unrelated=3)
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(cache))
    mp.setattr(
        backbone_module, "load_backbone",
        functools.partial(backbone_module.load_backbone, runtime="onnxruntime"),
    )
    try:
        with Library.open(root / "lib", settings=TINY) as lib:
            list(lib.index([photos.root]))
    finally:
        mp.undo()
    return root / "lib", photos, cache


def _record(lib: Library) -> query_model.QueryModelRecord:
    record = query_model.parse_record(lib._cat.get_json(query_model.RECORD_KEY))
    assert record is not None
    return record


def test_writer_records_the_checked_export(indexed) -> None:
    path, _, cache = indexed
    with Library.open(path, read_only=True) as lib:
        record = _record(lib)
    onnx = Path(record.onnx_path)
    assert onnx.is_file() and onnx.is_relative_to(cache)
    assert record.sha256 == query_model.file_sha256(onnx) and record.size == onnx.stat().st_size
    assert (record.backbone, record.weights_id, record.feature_dim) == ("tiny", "none", 64)
    assert record.prep() == backbone_module.BACKBONES["tiny"].preprocessing()


def test_reader_embeds_and_searches_as_the_pytorch_backbone(indexed) -> None:
    path, photos, _ = indexed
    queries = [photos.originals[0], photos.unrelated[0]]
    with Library.open(path, read_only=True) as lib:
        assert isinstance(lib.query_backbone(), query_model.QueryBackbone)
        free, ok, _ = lib.embed(queries)
        free_answer = lib.search(queries, top_k=6)
    with Library.open(path, read_only=True) as lib:
        lib.backbone()  # built in PyTorch, as before: queries then use it
        assert lib.query_backbone() is lib.backbone()
        torch_feats, _, _ = lib.embed(queries)
        torch_answer = lib.search(queries, top_k=6)
    assert len(ok) == 2
    np.testing.assert_allclose(free, torch_feats, atol=2e-5)
    for a, b in zip(free_answer, torch_answer, strict=True):
        assert [r.path for r in a.results] == [r.path for r in b.results]
        np.testing.assert_allclose([r.score for r in a.results], [r.score for r in b.results], atol=1e-4)
    assert free_answer[0].results[0].path == photos.originals[0]


def _search_in_new_process(path: Path, query: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache)}
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "imagehash_app", "--library", str(path),
         "search", str(query), "--top", "3"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def _imported(stderr: str) -> set[str]:
    """Module names from `-X importtime`'s lines ("import time: self | cumulative | name")."""
    return {
        line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_search_command_never_imports_torch(indexed) -> None:
    path, photos, cache = indexed
    done = _search_in_new_process(path, photos.originals[1], cache)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[1].split()[-1] == str(photos.originals[1])
    modules = _imported(done.stderr)
    assert "onnxruntime" in modules and "imagehash_app.core.query_model" in modules
    assert not {m for m in modules if m.split(".")[0] in ("torch", "torchvision")}


def test_changed_or_missing_export_falls_back_to_pytorch(indexed, tmp_path) -> None:
    path, photos, cache = indexed
    with Library.open(path, read_only=True) as lib:
        record = _record(lib)
        expected = lib.search([photos.originals[0]], top_k=4)[0].results
    onnx = Path(record.onnx_path)
    saved = onnx.read_bytes()
    try:
        onnx.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))  # same size, new content and mtime
        assert "missing or changed" in query_model.why_not(
            record, backbone="tiny", device="cpu", weights_id="none"
        )
        os.utime(onnx, ns=(record.mtime_ns, record.mtime_ns))  # even with the old mtime: sha256
        assert query_model.usable_file(record) is None
        with Library.open(path, read_only=True) as lib:
            assert isinstance(lib.query_backbone(), backbone_module.Backbone)
            assert [r.path for r in lib.search([photos.originals[0]], top_k=4)[0].results] == [
                r.path for r in expected
            ]
        onnx.unlink()
        with Library.open(path, read_only=True) as lib:
            assert isinstance(lib.query_backbone(), backbone_module.Backbone)
            assert lib.search([photos.originals[0]], top_k=4)[0].results[0].path == photos.originals[0]
    finally:
        onnx.write_bytes(saved)
        os.utime(onnx, ns=(record.mtime_ns, record.mtime_ns))
    assert query_model.usable_file(record) == onnx


def test_gpu_keeps_the_pytorch_path(indexed, monkeypatch) -> None:
    path, _, _ = indexed
    with Library.open(path, read_only=True) as lib:
        record = _record(lib)
    for device in ("cuda", "mps"):
        assert query_model.why_not(record, backbone="tiny", device=device, weights_id="none")
    monkeypatch.setattr(query_model, "gpu_may_be_present", lambda: True)
    assert "GPU" in query_model.why_not(record, backbone="tiny", device="auto", weights_id="none")
    assert query_model.why_not(record, backbone="tiny", device="cpu", weights_id="none") is None
    monkeypatch.setattr(query_model, "gpu_may_be_present", lambda: False)
    assert query_model.why_not(record, backbone="tiny", device="auto", weights_id="none") is None
    assert query_model.why_not(record, backbone="tiny", device="cpu", weights_id="other")


def test_other_library_versions_make_the_record_stale(indexed, monkeypatch) -> None:
    path, _, _ = indexed
    with Library.open(path, read_only=True) as lib:
        record = _record(lib)
    monkeypatch.setattr(
        query_model, "package_versions", lambda: {**record.versions, "onnxruntime": "0.0.1"}
    )
    assert "changed" in query_model.why_not(record, backbone="tiny", device="cpu", weights_id="none")


def test_preprocessing_matches_torchvision_transforms(photo_folder) -> None:
    """The recorded preprocessing of mobilenet_v2 is the weights' own transform (read from
    torchvision when the writer recorded it), and Pillow + numpy reproduce that transform."""
    import torch
    from PIL import Image

    spec = backbone_module.BACKBONES["mobilenet_v2"]
    prep = spec.preprocessing()
    record = query_model.QueryModelRecord(
        backbone="mobilenet_v2", weights_id="x", feature_dim=1280, min_side=512,
        preprocessing={"resize_size": prep.resize_size, "crop_size": prep.crop_size,
                       "interpolation": prep.interpolation, "mean": list(prep.mean),
                       "std": list(prep.std)},
        onnx_path="", size=0, mtime_ns=0, sha256="", versions={},
    )
    assert record.prep() == prep
    reference = spec.weights().transforms()
    for photo in (photo_folder.originals[0], photo_folder.unrelated[0]):
        with Image.open(photo) as img:
            img = img.convert("RGB")
            ours = record.prep()(img)
            with torch.inference_mode():
                theirs = reference(img).numpy()
        assert ours.shape == theirs.shape == (3, 224, 224)
        cos = float(ours.ravel() @ theirs.ravel() / np.linalg.norm(ours) / np.linalg.norm(theirs))
        assert cos > 0.999 and float(np.mean(np.abs(ours - theirs))) < 0.03


def test_warm_search_loads_everything_once_and_may_persist_the_graph(
    library_dir, photo_folder, tiny_settings, monkeypatch
) -> None:
    """warm_search leaves the first search nothing to load; a reader persists the graph it built
    only when asked (the window's reader, whose process holds the lock), never otherwise."""
    import dataclasses

    from imagehash_app.core import search

    shallow = dataclasses.replace(tiny_settings, rerank_depth=search.GRAPH_MAX_K)  # graph-sized R
    with Library.open(library_dir, settings=shallow) as lib:
        list(lib.index([photo_folder.root]))
    monkeypatch.setattr(search, "GRAPH_MIN_SIZE", 1)  # a graph even for a few photos
    graphs = library_dir / "graph"
    with Library.open(library_dir, read_only=True) as lib:
        lib.warm_search()
        assert lib._search_state is not None and lib._search_state.index.method == "graph"
        assert not list(graphs.glob("*.hnsw"))
    with Library.open(library_dir, read_only=True) as lib:
        lib.warm_search(persist_graph=True)
        state = lib._search_state
        assert lib._search_state.index.graph_source == "built"
        assert lib.search([photo_folder.originals[0]], top_k=2)[0].results[0].path == (
            photo_folder.originals[0]
        )
        assert lib._search_state is state  # the search found it all loaded
    assert len(list(graphs.glob("*.hnsw"))) == 1
    with Library.open(library_dir, read_only=True) as lib:
        lib.warm_search()
        assert lib._search_state.index.graph_source == "loaded"  # the next launch redoes nothing


def test_no_graph_is_built_that_the_rerank_depth_never_asks(
    library_dir, photo_folder, tiny_settings, monkeypatch
) -> None:
    """With R above GRAPH_MAX_K (the default R = 200) every search takes the exact scan, so a
    library above GRAPH_MIN_SIZE builds no graph (minutes at a million codes) that nothing uses."""
    from imagehash_app.core import search

    assert tiny_settings.rerank_depth > search.GRAPH_MAX_K
    with Library.open(library_dir, settings=tiny_settings) as lib:
        list(lib.index([photo_folder.root]))
    monkeypatch.setattr(search, "GRAPH_MIN_SIZE", 1)
    built = []
    monkeypatch.setattr(search, "_build_graph", lambda *a: built.append(a))
    with Library.open(library_dir) as lib:
        lib.warm_search(persist_graph=True)
        assert lib._search_state.index.method == "scan"
        assert lib.search([photo_folder.originals[1]], top_k=3)[0].results[0].path == (
            photo_folder.originals[1]
        )
    assert not built and not list((library_dir / "graph").glob("*.hnsw"))
