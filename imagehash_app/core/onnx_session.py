"""ONNX Runtime sessions for an exported feature extractor, without PyTorch.

Kept apart from `onnx_runtime` (which exports with PyTorch) so that a query can load a checked
export straight into ONNX Runtime: importing PyTorch alone takes seconds on a small machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def new_session(model_path: Path, threads: int | None):
    """An ONNX Runtime CPU session. Threads do not spin while idle, so decode workers get the CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(
        str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
    )


class OnnxFeatureModel:
    """Runs an exported feature extractor; `run(batch) -> (n, d)` raw (not normalised) features.
    `path` is the file it was loaded from (a library records it for torch-free queries)."""

    def __init__(self, session, path: Path | None = None) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self.path = None if path is None else Path(path)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, np.float32)})[0]


def unit_rows(feats: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in place (float32), as every backbone returns its features."""
    feats = feats.astype(np.float32, copy=False)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return feats
