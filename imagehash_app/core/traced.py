"""The backbone as one TorchScript graph, for inference on a GPU.

Eager PyTorch runs a network as a Python call per layer, and each operator gives up the GIL and
takes it back; while 16 decode workers and the engine's threads want the GIL, every take-back can
wait a switch interval, and a MobileNetV2 batch took 181 ms instead of 12.5 (docs/results-indexing.md).
A traced, frozen graph runs the whole forward pass in C++ with the GIL released once. fp16 weights
are tried first on CUDA; a graph is used only when it reproduces eager fp32 features (cosine >
MIN_COSINE on a fixed batch), else the caller keeps the eager network.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
from collections.abc import Hashable
from dataclasses import dataclass

import torch
from torch import nn

from imagehash_app.core.onnx_runtime import MIN_COSINE, check_input, min_row_cosine

log = logging.getLogger(__name__)
WARM_UP_CALLS = 3  # the profiling executor optimises the graph over its first calls


@dataclass(frozen=True)
class TracedNetwork:
    """A frozen TorchScript graph and the dtype its input and weights are in."""

    module: torch.jit.ScriptModule
    dtype: torch.dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.dtype))

    @property
    def runtime(self) -> str:
        """How `Backbone.runtime` names it, e.g. "torchscript-float16"."""
        return "torchscript-" + str(self.dtype).removeprefix("torch.")


_CACHE: dict[Hashable, TracedNetwork | None] = {}
_CACHE_LOCK = threading.Lock()


def trace_network(
    model: nn.Module, device: str, input_size: int, key: Hashable | None = None
) -> TracedNetwork | None:
    """`model` (eval mode, on `device`) traced for inference, or None when no graph reproduces it.

    With `key` (backbone, weights, device), the outcome is kept for the process: tracing takes a
    second or more, and the window's two libraries or a second index run should not pay it again.
    """
    if key is None:
        return _trace_checked(model, device, input_size)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _trace_checked(model, device, input_size)
        return _CACHE[key]


def _trace_checked(model: nn.Module, device: str, input_size: int) -> TracedNetwork | None:
    example = check_input(input_size, device)
    with torch.inference_mode():
        expected = model(example).float().cpu().numpy()
    dtypes = (torch.float16, torch.float32) if device.startswith("cuda") else (torch.float32,)
    for dtype in dtypes:
        try:
            traced = _trace(model, example, dtype)
            with torch.inference_mode():
                for _ in range(WARM_UP_CALLS):
                    got = traced(example).float().cpu().numpy()
        except Exception as exc:  # a model the tracer cannot follow: eager PyTorch stays
            log.warning("TorchScript trace (%s) failed: %s", dtype, exc)
            continue
        cos = min_row_cosine(expected, got)
        if cos > MIN_COSINE:
            return traced
        log.info("TorchScript graph in %s: cosine %.5f to eager fp32, not used", dtype, cos)
    return None


def _trace(model: nn.Module, example: torch.Tensor, dtype: torch.dtype) -> TracedNetwork:
    net = copy.deepcopy(model).to(dtype)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice, tracer hints
        # check_trace off: the cosine check of the caller is the one that decides.
        module = torch.jit.freeze(torch.jit.trace(net, example.to(dtype), check_trace=False).eval())
    return TracedNetwork(module, dtype)
