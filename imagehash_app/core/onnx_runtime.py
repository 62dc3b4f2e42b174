"""Export a PyTorch feature extractor to ONNX once, cache it, and run it with ONNX Runtime.

On CPU, ONNX Runtime runs the same network several times faster than eager PyTorch (measured:
docs/results-indexing.md). The export is checked against eager PyTorch on a fixed random batch; a
model that does not reproduce the features (cosine <= MIN_COSINE) is never used.
Sessions themselves are made by `onnx_session`, which a torch-free query uses alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from imagehash_app.core.onnx_session import OnnxFeatureModel, new_session

log = logging.getLogger(__name__)

MIN_COSINE = 0.999
OPSET = 18


class OnnxExportError(RuntimeError):
    """The model could not be exported or did not reproduce the PyTorch features."""


def min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine similarity between matching rows of a and b."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.min(np.sum(a * b, axis=1)))


def check_batch(input_size: int, n: int = 4) -> np.ndarray:
    """A fixed, seeded batch in the range of normalised images, for export checks."""
    rng = np.random.default_rng(1234)
    return rng.standard_normal((n, 3, input_size, input_size)).astype(np.float32)


def check_input(input_size: int, device: str) -> torch.Tensor:
    """`check_batch` as a channels-last tensor on `device`, for checks of PyTorch variants."""
    return (
        torch.from_numpy(check_batch(input_size))
        .to(device)
        .contiguous(memory_format=torch.channels_last)
    )


def _export(model: torch.nn.Module, input_size: int, dest: Path) -> None:
    """Export with a dynamic batch axis: TorchScript exporter first (quick), dynamo exporter second."""
    example = (torch.from_numpy(check_batch(input_size, 2)),)
    errors: list[str] = []
    attempts = (
        {"dynamo": False, "dynamic_axes": {"input": {0: "batch"}, "features": {0: "batch"}}},
        {"dynamo": True, "dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=4096)},)},
    )
    for kwargs in attempts:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    example,
                    str(dest),
                    input_names=["input"],
                    output_names=["features"],
                    opset_version=OPSET,
                    external_data=False,
                    **kwargs,
                )
            return
        except Exception as exc:  # any exporter failure means: try the next one, then fall back
            errors.append(f"{'dynamo' if kwargs['dynamo'] else 'torchscript'}: {exc}")
    raise OnnxExportError("; ".join(errors))


def cache_key(*parts: str) -> str:
    """A file-name-safe key for one backbone + weights + library versions."""
    import onnxruntime
    import torchvision

    text = "|".join(
        (*parts, torch.__version__, torchvision.__version__, onnxruntime.__version__, str(OPSET))
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_or_export(
    model: torch.nn.Module,
    *,
    input_size: int,
    cache_dir: Path,
    key: str,
    threads: int | None,
) -> OnnxFeatureModel:
    """Load the cached ONNX model for `key`, or export `model` there; verify against PyTorch.

    Raises OnnxExportError when export fails or the features differ (caller falls back to torch).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{key}.onnx"
    rejected = cache_dir / f"{key}.rejected"  # the key holds the library versions: retried on upgrade
    if rejected.exists():
        raise OnnxExportError(f"an earlier export did not reproduce PyTorch ({rejected.read_text()})")
    batch = check_batch(input_size)
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    for attempt in ("cached", "fresh"):
        if attempt == "fresh" or not path.exists():
            fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=cache_dir)
            os.close(fd)
            try:
                _export(model, input_size, Path(tmp))
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        try:
            runner = OnnxFeatureModel(new_session(path, threads), path)
            cos = min_row_cosine(runner.run(batch), expected)
        except Exception as exc:  # a broken cache file: re-export once
            log.warning("ONNX model %s unusable (%s)", path, exc)
            cos = -1.0
        if cos > MIN_COSINE:
            return runner
        log.warning("ONNX model %s: cosine %.5f to PyTorch is too low", path, cos)
        path.unlink(missing_ok=True)
    # Remembered, so that every later load goes straight to PyTorch instead of exporting again.
    rejected.write_text(f"cosine {cos:.5f}")
    raise OnnxExportError(f"exported model does not reproduce PyTorch features (cosine {cos:.5f})")
