"""Backbone preprocessing in Pillow/numpy: fast on the decode threads, checked against torchvision.

Resize the shorter side, centre-crop, normalise: the arithmetic of torchvision's
`ImageClassification` transform, but only the cropped region is resampled, straight to crop size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to `resize_size`, centre-crop `crop_size`, normalise by mean/std."""

    resize_size: int
    crop_size: int
    interpolation: str  # "bilinear" | "bicubic" | "nearest"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The region of a (width, height) image that torchvision's resize + centre crop keeps.

        Same arithmetic as torchvision: shorter side -> resize_size (longer side truncated), then a
        centre crop rounded to whole pixels of the resized image, mapped back to source pixels.
        """
        r, c = self.resize_size, self.crop_size
        if width <= height:
            new_w, new_h = r, int(r * height / width)
        else:
            new_w, new_h = int(r * width / height), r
        left = int(round((new_w - c) / 2.0))
        top = int(round((new_h - c) / 2.0))
        sx, sy = width / new_w, height / new_h
        return (left * sx, top * sy, (left + c) * sx, (top + c) * sy)

    def crop_uint8(self, img: Image.Image) -> np.ndarray:
        """RGB image -> uint8 (crop, crop, 3): one resample of the kept region (a large reduction
        first uses Pillow's fast integer `reduce`)."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        c = self.crop_size
        out = img.resize(
            (c, c), _RESAMPLE[self.interpolation], box=self.crop_box(*img.size), reducing_gap=3.0
        )
        return np.asarray(out)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (..., H, W, 3) -> float32 (..., 3, H, W), (x/255 - mean)/std."""
        std = np.asarray(self.std, np.float32)
        scale = 1.0 / (255.0 * std)
        shift = np.asarray(self.mean, np.float32) / std
        arr = pixels.astype(np.float32)
        arr *= scale
        arr -= shift
        return np.ascontiguousarray(np.moveaxis(arr, -1, -3))

    def __call__(self, img: Image.Image) -> np.ndarray:
        """RGB image -> float32 (3, crop, crop), normalised."""
        return self.normalize(self.crop_uint8(img))
