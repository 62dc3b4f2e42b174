"""The query side of a backbone without PyTorch: the ONNX export checked when the library indexed.

Building the backbone in PyTorch and re-checking its ONNX export costs a query seconds before it
reads a pixel (importing torch alone: 2.3 s on 2 cores). A writer that loaded the backbone on the
CPU with ONNX Runtime has just checked the export against PyTorch (`onnx_runtime.load_or_export`);
it records the file's path, size, modification time and sha256 in the catalogue, with the
preprocessing and the versions that produced it. A query then loads that file straight into ONNX
Runtime after a hash check, and decodes with Pillow and numpy. Anything that does not match (the
file changed or is gone, other weights, other library versions, a GPU to use) means: no record,
the caller builds the backbone in PyTorch as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from imagehash_app.core.onnx_session import OnnxFeatureModel, new_session, unit_rows
from imagehash_app.core.preprocess import Preprocessing

log = logging.getLogger(__name__)

RECORD_KEY = "query_model"  # catalogue meta: JSON of QueryModelRecord
# The packages whose versions made the export; a different one means the record is stale.
VERSIONED = ("torch", "torchvision", "onnxruntime")


@dataclass(frozen=True)
class QueryModelRecord:
    """What a writer checked: the export of `backbone` with `weights_id`, and how to feed it."""

    backbone: str
    weights_id: str
    feature_dim: int
    min_side: int
    preprocessing: dict[str, Any]
    onnx_path: str
    size: int
    mtime_ns: int
    sha256: str
    versions: dict[str, str]

    def prep(self) -> Preprocessing:
        p = self.preprocessing
        return Preprocessing(
            resize_size=int(p["resize_size"]), crop_size=int(p["crop_size"]),
            interpolation=str(p["interpolation"]), mean=tuple(p["mean"]), std=tuple(p["std"]),
        )


class QueryBackbone:
    """The parts of `backbone.Backbone` a query uses (`embedding.iter_embeddings`), on ONNX
    Runtime alone: features equal to the writer's, from the same file and preprocessing."""

    device = "cpu"
    runtime = "onnxruntime"

    def __init__(self, record: QueryModelRecord, model: OnnxFeatureModel) -> None:
        self.name = record.backbone
        self.weights_id = record.weights_id
        self.feature_dim = record.feature_dim
        self.min_side = record.min_side
        self.prep = record.prep()
        self._model = model

    def __repr__(self) -> str:
        return f"QueryBackbone({self.name}, weights={self.weights_id}, torch-free)"

    @property
    def input_size(self) -> int:
        return self.prep.crop_size

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """float32 (n, 3, H, W), normalised -> float32 (n, feature_dim), L2-normalised rows."""
        if batch.shape[0] == 0:
            return np.zeros((0, self.feature_dim), np.float32)
        return unit_rows(self._model.run(batch))

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 crops (n, H, W, 3) -> features as `embed`."""
        return self.embed(self.prep.normalize(pixels))


def file_sha256(path: Path) -> str:
    """Full sha256 of a file, read in chunks (weights and exports are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of `VERSIONED`, read from their metadata (no import)."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ""
    return out


def make_record(backbone) -> QueryModelRecord | None:
    """The record of a loaded `backbone.Backbone` that runs its checked ONNX export on the CPU;
    None for any other (PyTorch, a GPU): those have nothing a query could load alone."""
    onnx = getattr(backbone, "_onnx", None)
    path = getattr(onnx, "path", None)
    if backbone.device != "cpu" or backbone.runtime != "onnxruntime" or path is None:
        return None
    st = Path(path).stat()
    return QueryModelRecord(
        backbone=backbone.name, weights_id=backbone.weights_id, feature_dim=backbone.feature_dim,
        min_side=backbone.min_side,
        preprocessing=json.loads(json.dumps(dataclasses.asdict(backbone.prep))),  # as stored
        onnx_path=str(Path(path).resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns,
        sha256=file_sha256(Path(path)), versions=package_versions(),
    )


def parse_record(doc: Any) -> QueryModelRecord | None:
    """The record kept in the catalogue, or None when there is none or it is not one."""
    if not isinstance(doc, dict):
        return None
    try:
        return QueryModelRecord(**doc)
    except TypeError:
        return None


def gpu_may_be_present() -> bool:
    """Whether PyTorch might find a GPU here, judged without importing it: an NVIDIA or ROCm
    driver, or Apple silicon (MPS). A false "yes" only costs the PyTorch path."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    if sys.platform == "win32":
        root = Path(os.environ.get("SYSTEMROOT", r"C:\Windows"))
        return (root / "System32" / "nvcuda.dll").exists()
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd"))


def usable_file(record: QueryModelRecord, *, check_hash: bool = True) -> Path | None:
    """The recorded export when it is the file that was checked (size, mtime, sha256)."""
    path = Path(record.onnx_path)
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_size != record.size or st.st_mtime_ns != record.mtime_ns:
        return None
    if check_hash and file_sha256(path) != record.sha256:
        return None
    return path


def why_not(
    record: QueryModelRecord | None, *, backbone: str, device: str, weights_id: str | None
) -> str | None:
    """Why `record` cannot answer a query of a library with these settings (None: it can)."""
    if record is None:
        return "no checked ONNX export recorded (a writing command records one)"
    if device not in ("auto", "cpu"):
        return f"the library runs on {device}"
    if device == "auto" and gpu_may_be_present():
        return "a GPU may be present"
    if record.backbone != backbone or (weights_id is not None and record.weights_id != weights_id):
        return "the record is of other backbone weights"
    if record.versions != package_versions():
        return "PyTorch, torchvision or ONNX Runtime changed since the export was checked"
    if usable_file(record) is None:
        return f"the export {record.onnx_path} is missing or changed"
    return None


def load(record: QueryModelRecord, threads: int | None) -> QueryBackbone:
    """The recorded export in an ONNX Runtime session (call `why_not` first)."""
    path = Path(record.onnx_path)
    return QueryBackbone(record, OnnxFeatureModel(new_session(path, threads), path))
