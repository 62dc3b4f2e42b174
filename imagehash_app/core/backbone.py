"""Registry of image backbones: weights resolution, preprocessing, device and runtime choice.

A backbone turns a photo into its pooled penultimate feature (the classifier head is removed),
L2-normalised. Preprocessing follows the torchvision weights' own transforms (resize the shorter
side, centre crop, normalise) but runs in Pillow/numpy in the decode workers. On CPU the network is
exported once to ONNX and run by ONNX Runtime (several times faster than eager PyTorch); on
CUDA/MPS it runs in PyTorch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from imagehash_app.core.errors import WeightsUnavailableError
from imagehash_app.core.onnx_session import unit_rows as _unit_rows
from imagehash_app.core.preprocess import Preprocessing
from imagehash_app.core.query_model import file_sha256

log = logging.getLogger(__name__)

NONE_SEED = 0  # random init ("none" weights) is seeded so that features are reproducible


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone, timm-style: how to build it and what its weights expect."""

    name: str
    feature_dim: int
    builder: Callable[..., nn.Module]  # builder(weights=enum_or_None) -> full classifier model
    weights_enum: str | None  # torchvision enum member, e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"
    head: str | None  # attribute holding the classifier; replaced by Identity for pooled features
    fixed_preprocessing: Preprocessing | None = None  # for backbones without a weights enum

    def weights(self):
        """The torchvision weights enum member (carries URL, transforms and metadata)."""
        if self.weights_enum is None:
            return None
        import torchvision.models as tvm

        enum_name, member = self.weights_enum.split(".")
        return getattr(getattr(tvm, enum_name), member)

    def preprocessing(self) -> Preprocessing:
        """Read the preprocessing from the weights' own transforms rather than copying constants."""
        if self.fixed_preprocessing is not None:
            return self.fixed_preprocessing
        t = self.weights().transforms()
        return Preprocessing(
            resize_size=int(t.resize_size[0]),
            crop_size=int(t.crop_size[0]),
            interpolation=t.interpolation.value,
            mean=tuple(t.mean),
            std=tuple(t.std),
        )


class TinyNet(nn.Module):
    """A small random CNN for tests: fast, no download, yet near-copies of a photo stay close."""

    def __init__(self, feature_dim: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, feature_dim, 3, stride=2, padding=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def _tiny_builder(weights=None) -> nn.Module:
    return TinyNet()


def _tv(fn_name: str) -> Callable[..., nn.Module]:
    """A lazy torchvision builder, so importing this module builds nothing."""

    def build(weights=None) -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, fn_name)(weights=weights)

    build.__name__ = fn_name
    return build


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "mobilenet_v2",
            1280,
            _tv("mobilenet_v2"),
            "MobileNet_V2_Weights.IMAGENET1K_V1",
            "classifier",
        ),
        BackboneSpec(
            "mobilenet_v3_large",
            960,
            _tv("mobilenet_v3_large"),
            "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
            "classifier",
        ),
        BackboneSpec(
            "efficientnet_b0",
            1280,
            _tv("efficientnet_b0"),
            "EfficientNet_B0_Weights.IMAGENET1K_V1",
            "classifier",
        ),
        BackboneSpec("resnet50", 2048, _tv("resnet50"), "ResNet50_Weights.IMAGENET1K_V2", "fc"),
        BackboneSpec(
            "tiny",
            64,
            _tiny_builder,
            None,
            None,
            Preprocessing(resize_size=72, crop_size=64, interpolation="bilinear"),
        ),
    )
}

DEFAULT_BACKBONE = "mobilenet_v2"


def resolve_device(device: str = "auto") -> str:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device that is missing is an error."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("--device mps was asked for but MPS is not available")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or mps")
    return device


def training_device(device: str = "auto") -> str:
    """Where a hasher that can use a GPU trains: the library's CUDA device, else the CPU (MPS
    is left out: the training code was not checked there)."""
    resolved = resolve_device(device)
    return resolved if resolved.startswith("cuda") else "cpu"


def _download_advice(spec: BackboneSpec, exc: Exception) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"Could not download the pretrained weights for {spec.name} ({spec.weights_enum}): {exc}. "
        f"Without network access, pass a local state dict file: --backbone {spec.name} --weights FILE "
        "(e.g. a torchvision state dict saved with torch.save(model.state_dict(), FILE))."
    )


def build_feature_model(spec: BackboneSpec, weights: str | Path) -> tuple[nn.Module, str]:
    """Build the network with its weights and its head removed; return (model in eval mode, weights_id)."""
    if str(weights) == "none" or (spec.weights_enum is None and str(weights) == "auto"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(NONE_SEED)
            model = spec.builder(weights=None)
        weights_id = "none"
    elif str(weights) == "auto":
        enum = spec.weights()
        try:
            model = spec.builder(weights=enum)
        except Exception as exc:  # URLError, OSError, RuntimeError from torch.hub: no weights
            raise _download_advice(spec, exc) from exc
        weights_id = f"pretrained-{enum.name}"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"Weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsUnavailableError(f"Could not read weights file {path}: {exc}") from exc
        if (
            isinstance(state, dict)
            and "state_dict" in state
            and isinstance(state["state_dict"], dict)
        ):
            state = state["state_dict"]
        model = spec.builder(weights=None)
        try:
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"Weights file {path} does not fit backbone {spec.name}: {str(exc)[:300]}"
            ) from exc
        weights_id = file_sha256(path)[:12]
    if spec.head is not None:
        setattr(model, spec.head, nn.Identity())
    return model.eval(), weights_id


def default_cache_dir() -> Path:
    """Where exported ONNX models live unless the library passes its own folder."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imagehash_app")) / "onnx"


class Backbone:
    """A loaded feature extractor: `preprocess` (decode side, numpy) and `embed` (batched inference)."""

    draft_oversample: int = 2  # decode JPEGs at >= this many times the resize size (see min_side)

    def __init__(
        self,
        spec: BackboneSpec,
        model: nn.Module,
        *,
        weights_id: str,
        device: str,
        runtime: str,
        onnx_model=None,
        traced=None,
        use_fp16: bool = False,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.feature_dim = spec.feature_dim
        self.weights_id = weights_id
        self.device = device
        self.runtime = runtime
        self.prep = spec.preprocessing()
        self._model = model
        self._onnx = onnx_model
        self._traced = traced  # traced.TracedNetwork: the GPU forward pass as one graph
        self._fp16 = use_fp16
        self._scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"Backbone({self.name}, weights={self.weights_id}, device={self.device}, runtime={self.runtime})"

    @property
    def input_size(self) -> int:
        return self.prep.crop_size

    @property
    def min_side(self) -> int:
        """The shorter side a decoder must keep (JPEG draft mode may shrink a photo down to it).

        Twice the resize size: DCT scaling straight down to the resize size changes features more
        than we accept (min cosine 0.996 to the exact transform), 2x keeps them > 0.999 (measured,
        docs/results-indexing.md).
        """
        return self.prep.resize_size * self.draft_oversample

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """RGB image -> float32 (3, crop, crop), normalised; equal to the weights' transforms."""
        return self.prep(img)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """float32 (n, 3, H, W), normalised -> float32 (n, feature_dim), L2-normalised rows."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.shape[0] == 0:
            return np.zeros((0, self.feature_dim), np.float32)
        if self._onnx is not None:
            return _unit_rows(self._onnx.run(batch))
        x = torch.from_numpy(batch)
        if self.device == "cpu":
            return self._forward(x.contiguous(memory_format=torch.channels_last))
        x = self._to_device(x).contiguous(memory_format=torch.channels_last)
        return self._forward(x)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 crops (n, H, W, 3) -> features as `embed`. On a GPU the crops are normalised there:
        a quarter of the bytes to copy and no float work for the CPU, which decodes."""
        if pixels.shape[0] == 0 or self.device == "cpu":
            return self.embed(self.prep.normalize(pixels))
        if self._scale_shift is None:  # same arithmetic as prep.normalize, on the device
            std = torch.tensor(self.prep.std, device=self.device).view(1, 3, 1, 1)
            mean = torch.tensor(self.prep.mean, device=self.device).view(1, 3, 1, 1)
            self._scale_shift = (1.0 / (255.0 * std), mean / std)
        scale, shift = self._scale_shift
        x = self._to_device(torch.from_numpy(np.ascontiguousarray(pixels)))
        # NHWC bytes viewed as NCHW are channels-last already: no copy to reorder them.
        x = x.permute(0, 3, 1, 2).float()
        x.mul_(scale).sub_(shift)
        return self._forward(x)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.pin_memory() if self.device.startswith("cuda") else x
        return x.to(self.device, non_blocking=True)

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            if self._traced is not None:
                y = self._traced(x)
            elif self._fp16:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    y = self._model(x)
            else:
                y = self._model(x)
            return _unit_rows(y.float().cpu().numpy())


def load_backbone(
    name: str,
    weights: str | Path = "auto",
    device: str = "auto",
    runtime: str = "auto",
    cache_dir: Path | None = None,
    *,
    threads: int | None = None,
) -> Backbone:
    """Build a backbone ready to embed.

    weights: "auto" (torchvision pretrained, downloaded once), "none" (seeded random init, tests),
    or a path to a local state dict. runtime: "auto" (ONNX Runtime on CPU, PyTorch on GPU),
    "onnxruntime" or "torch". threads: CPU threads for inference (default: all cores).
    """
    from imagehash_app.core import onnx_runtime

    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(sorted(BACKBONES))}")
    if runtime not in ("auto", "onnxruntime", "torch"):
        raise ValueError(f"unknown runtime {runtime!r}: use auto, onnxruntime or torch")
    spec = BACKBONES[name]
    dev = resolve_device(device)
    model, weights_id = build_feature_model(spec, weights)
    prep = spec.preprocessing()

    if dev == "cpu":
        if threads:
            torch.set_num_threads(threads)
        want_onnx = runtime == "onnxruntime" or (runtime == "auto" and spec.name != "tiny")
        if want_onnx:
            key = f"{spec.name}-{weights_id}-" + onnx_runtime.cache_key(spec.name, weights_id)
            try:
                onnx_model = onnx_runtime.load_or_export(
                    model,
                    input_size=prep.crop_size,
                    cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(),
                    key=key,
                    threads=threads,
                )
                return Backbone(
                    spec,
                    model,
                    weights_id=weights_id,
                    device=dev,
                    runtime="onnxruntime",
                    onnx_model=onnx_model,
                )
            except Exception as exc:  # export or check failed: PyTorch gives the same features
                log.warning("ONNX Runtime unavailable for %s (%s); using PyTorch", spec.name, exc)
        model = model.to(memory_format=torch.channels_last)
        return Backbone(spec, model, weights_id=weights_id, device=dev, runtime="torch")

    if runtime == "onnxruntime":
        log.warning("runtime onnxruntime is CPU-only here; using PyTorch on %s", dev)
    from imagehash_app.core.traced import trace_network

    model = model.to(dev, memory_format=torch.channels_last)
    traced = None
    if runtime == "auto":
        traced = trace_network(model, dev, prep.crop_size, key=(spec.name, weights_id, dev))
    if traced is not None:
        return Backbone(
            spec, model, weights_id=weights_id, device=dev, runtime=traced.runtime, traced=traced
        )
    use_fp16 = dev.startswith("cuda") and _fp16_matches(model, dev, prep.crop_size)
    return Backbone(
        spec, model, weights_id=weights_id, device=dev, runtime="torch", use_fp16=use_fp16
    )


def _fp16_matches(model: nn.Module, device: str, input_size: int) -> bool:
    """Use fp16 autocast on CUDA only when it keeps features at cosine > 0.999 to fp32."""
    from imagehash_app.core.onnx_runtime import MIN_COSINE, check_input, min_row_cosine

    x = check_input(input_size, device)
    with torch.inference_mode():
        ref = model(x).float().cpu().numpy()
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            half = model(x).float().cpu().numpy()
    return min_row_cosine(ref, half) > MIN_COSINE
