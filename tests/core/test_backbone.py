"""backbone.py: registry, weights resolution, preprocessing equal to torchvision's, runtimes."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagehash_app.core import onnx_runtime
from imagehash_app.core import traced as traced_mod
from imagehash_app.core.backbone import BACKBONES, Backbone, load_backbone, resolve_device
from imagehash_app.core.errors import WeightsUnavailableError
from imagehash_app.core.traced import trace_network

SHARED_WEIGHTS = (
    Path(__file__).resolve().parents[3] / "shared/data/weights/mobilenet_v2-imagenet.pth"
)


def _scene(seed: int, w: int = 320, h: int = 240) -> Image.Image:
    """A synthetic photo: a colour gradient plus random rectangles and noise, different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = ((x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) / (w + h) + 1) / 2
    arr = c0 * t[..., None] + c1 * (1 - t[..., None])
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
        arr[y0 : y0 + rng.integers(20, h // 2), x0 : x0 + rng.integers(20, w // 2)] = rng.uniform(
            0, 255, 3
        )
    arr += rng.normal(0, 8, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _embed(bb: Backbone, imgs: list[Image.Image]) -> np.ndarray:
    return bb.embed(np.stack([bb.preprocess(im) for im in imgs]))


def _jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_registry_has_required_backbones():
    for name, dim in (
        ("mobilenet_v2", 1280),
        ("mobilenet_v3_large", 960),
        ("efficientnet_b0", 1280),
        ("resnet50", 2048),
        ("tiny", 64),
    ):
        assert BACKBONES[name].feature_dim == dim
    assert BACKBONES["mobilenet_v2"].preprocessing().crop_size == 224


def test_tiny_is_fast_deterministic_and_normalised():
    a, b = load_backbone("tiny", "none"), load_backbone("tiny", "none")
    assert a.runtime == "torch" and a.device == "cpu" and a.weights_id == "none"
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    fa, fb = a.embed(x), b.embed(x)
    assert fa.shape == (3, 64) and fa.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fa, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(fa, fb)
    assert a.embed(np.zeros((0, 3, 64, 64), np.float32)).shape == (0, 64)


def test_tiny_near_copies_closer_than_unrelated():
    bb = load_backbone("tiny", "none")
    originals = [_scene(s) for s in range(8)]
    base = _embed(bb, originals)
    for i, img in enumerate(originals):
        w, h = img.size
        copies = [
            img.resize((w // 2, h // 2), Image.Resampling.BILINEAR),
            _jpeg_roundtrip(img, 60),
            img.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
        ]
        sims = _embed(bb, copies) @ base.T
        for row in sims:
            assert int(np.argmax(row)) == i
            assert row[i] > np.max(np.delete(row, i))


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "resnet50"])
def test_preprocess_matches_torchvision_transforms(name):
    spec = BACKBONES[name]
    bb = Backbone(spec, torch.nn.Identity(), weights_id="x", device="cpu", runtime="torch")
    reference = spec.weights().transforms()
    for size in ((640, 480), (300, 517), (256, 256)):
        img = _scene(size[0], *size)
        ours = bb.preprocess(img)
        ref = reference(img).numpy()
        assert ours.shape == ref.shape == (3, 224, 224) and ours.dtype == np.float32
        cos = float(ours.ravel() @ ref.ravel() / np.linalg.norm(ours) / np.linalg.norm(ref))
        assert cos > 0.999
        assert float(np.mean(np.abs(ours - ref))) < 0.03  # well under one 8-bit level after /std


def test_auto_weights_without_network_explains_how_to_pass_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone("mobilenet_v2", "auto", runtime="torch")
    msg = str(info.value)
    assert "download" in msg and "--weights FILE" in msg


def test_local_weights_file_and_mismatch(tmp_path):
    tiny = load_backbone("tiny", "none")
    path = tmp_path / "tiny.pth"
    torch.save(tiny._model.state_dict(), path)
    again = load_backbone("tiny", path)
    assert len(again.weights_id) == 12 and again.weights_id != "none"
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(again.embed(x), tiny.embed(x), atol=1e-6)
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        load_backbone("tiny", bad)
    with pytest.raises(WeightsUnavailableError, match="not found"):
        load_backbone("tiny", tmp_path / "missing.pth")


@pytest.mark.skipif(not SHARED_WEIGHTS.exists(), reason="shared MobileNetV2 weights not present")
def test_shared_mobilenet_v2_weights_load_strict():
    bb = load_backbone("mobilenet_v2", SHARED_WEIGHTS, runtime="torch")
    assert bb.weights_id == "c597791a0bec" and bb.feature_dim == 1280
    feats = bb.embed(np.stack([bb.preprocess(_scene(0)), bb.preprocess(_scene(1))]))
    assert feats.shape == (2, 1280)


def test_onnx_runtime_matches_torch_and_is_cached(tmp_path):
    ort_bb = load_backbone("tiny", "none", runtime="onnxruntime", cache_dir=tmp_path, threads=1)
    assert ort_bb.runtime == "onnxruntime"
    assert len(list(tmp_path.glob("*.onnx"))) == 1
    torch_bb = load_backbone("tiny", "none", runtime="torch")
    x = np.random.default_rng(2).standard_normal((5, 3, 64, 64)).astype(np.float32)
    cos = np.sum(ort_bb.embed(x) * torch_bb.embed(x), axis=1)
    assert np.min(cos) > 0.999
    cached = next(tmp_path.glob("*.onnx")).stat().st_mtime_ns
    load_backbone("tiny", "none", runtime="onnxruntime", cache_dir=tmp_path)
    assert next(tmp_path.glob("*.onnx")).stat().st_mtime_ns == cached


def test_failed_export_falls_back_to_torch(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise onnx_runtime.OnnxExportError("exporter broke")

    monkeypatch.setattr(onnx_runtime, "_export", broken)
    bb = load_backbone("tiny", "none", runtime="onnxruntime", cache_dir=tmp_path)
    assert bb.runtime == "torch"


def test_export_that_changes_features_is_remembered_and_not_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_runtime, "min_row_cosine", lambda a, b: 0.3)
    bb = load_backbone("tiny", "none", runtime="onnxruntime", cache_dir=tmp_path)
    assert bb.runtime == "torch"
    assert [p.read_text() for p in tmp_path.glob("*.rejected")] == ["cosine 0.30000"]
    exports = []
    monkeypatch.setattr(onnx_runtime, "_export", lambda *args, **kwargs: exports.append(args))
    assert load_backbone("tiny", "none", runtime="onnxruntime", cache_dir=tmp_path).runtime == "torch"
    assert exports == []  # the next load went straight to PyTorch


def test_device_resolution():
    dev = resolve_device("auto")
    assert dev in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_device_side_normalisation_equals_the_numpy_one():
    """The GPU path normalises uint8 crops with torch; "cpu:0" (not "cpu") takes that path here."""
    bb = load_backbone("tiny", "none", runtime="torch")
    pixels = np.random.default_rng(3).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    on_host = bb.embed(bb.prep.normalize(pixels))
    bb.device = "cpu:0"
    np.testing.assert_allclose(bb.embed_pixels(pixels), on_host, atol=1e-5)


def test_traced_graph_reproduces_the_eager_network(monkeypatch):
    """The GPU forward pass as one TorchScript graph (traced here on the CPU, same code)."""
    bb = load_backbone("tiny", "none", runtime="torch")
    traced = trace_network(bb._model, "cpu", bb.input_size)
    assert traced is not None and traced.runtime == "torchscript-float32"
    pixels = np.random.default_rng(4).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    eager = bb.embed_pixels(pixels)
    bb._traced, bb.device = traced, "cpu:0"  # "cpu:0" takes the GPU code path
    np.testing.assert_allclose(bb.embed_pixels(pixels), eager, atol=1e-5)
    monkeypatch.setattr(traced_mod, "min_row_cosine", lambda a, b: 0.5)
    assert trace_network(bb._model, "cpu", bb.input_size) is None  # a graph that differs is refused


def test_traced_graphs_are_kept_per_backbone_weights_and_device(monkeypatch):
    bb = load_backbone("tiny", "none", runtime="torch")
    traces = []
    real = traced_mod._trace_checked
    monkeypatch.setattr(traced_mod, "_CACHE", {})
    monkeypatch.setattr(
        traced_mod, "_trace_checked", lambda *a: traces.append(a) or real(*a)
    )
    key = ("tiny", "none", "cpu")
    first = trace_network(bb._model, "cpu", bb.input_size, key=key)
    assert trace_network(bb._model, "cpu", bb.input_size, key=key) is first
    trace_network(bb._model, "cpu", bb.input_size, key=("tiny", "other-weights", "cpu"))
    assert len(traces) == 2
