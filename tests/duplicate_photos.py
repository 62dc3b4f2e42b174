"""Generated copies for the duplicates tests: every edit issue 15 names, other shots of the same
scene, near-miss crops and unrelated photos (seeded, small, fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

SIZE = (240, 180)


def scene(seed: int, shot: int = 0, size: tuple[int, int] = SIZE) -> Image.Image:
    """A scene (colour field and shapes from `seed`); another `shot` moves the shapes and the
    light a little, as a second photo taken moments later does."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.uniform(0, 255, size=(3, 4, 3)).astype(np.uint8)
    img = Image.fromarray(base, "RGB").resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    move = np.random.default_rng(seed * 1000 + shot)
    for _ in range(7):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        dx, dy = (int(move.integers(-45, 46)), int(move.integers(-35, 36))) if shot else (0, 0)
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noise = np.random.default_rng(seed * 7 + shot).normal(0, 5, size=(h, w, 3))
    arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _crop(img: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = img.size
    return img.crop((round(left * w), round(top * h), round(w - right * w), round(h - bottom * h)))


# name -> (edit, file suffix, save options)
EDITS = {
    "q30": (lambda im: im, ".jpg", {"quality": 30}),
    "q95": (lambda im: im, ".jpg", {"quality": 95}),
    "quarter": (lambda im: im.resize((im.width // 4, im.height // 4)), ".jpg", {"quality": 85}),
    "crop": (lambda im: _crop(im, 0.08, 0.05, 0.1, 0.07), ".jpg", {"quality": 90}),
    "bright": (lambda im: ImageEnhance.Brightness(im).enhance(1.3), ".jpg", {"quality": 90}),
    "contrast": (lambda im: ImageEnhance.Contrast(im).enhance(0.7), ".jpg", {"quality": 90}),
    "rot90": (lambda im: im.transpose(Image.Transpose.ROTATE_90), ".jpg", {"quality": 90}),
    "rot180": (lambda im: im.transpose(Image.Transpose.ROTATE_180), ".jpg", {"quality": 90}),
    "rot270": (lambda im: im.transpose(Image.Transpose.ROTATE_270), ".jpg", {"quality": 90}),
    "mirror": (ImageOps.mirror, ".jpg", {"quality": 90}),
    "png": (lambda im: im, ".png", {}),
    "webp": (lambda im: im, ".webp", {"quality": 80}),
}


@dataclass
class CopySet:
    root: Path
    originals: list[Path] = field(default_factory=list)
    copies: dict[Path, list[Path]] = field(default_factory=dict)
    others: list[Path] = field(default_factory=list)  # other shots, near-misses, unrelated

    def group_of(self, original: Path) -> set[Path]:
        return {original, *self.copies[original]}


def make_copy_folder(root: Path, originals: int = 2, edits: tuple[str, ...] = tuple(EDITS),
                     seed: int = 0) -> CopySet:
    """`originals` scenes saved as JPEG (quality 92), each with a copy per edit; for each scene
    another shot and a near-miss crop (60% of each side); and two unrelated scenes."""
    root.mkdir(parents=True, exist_ok=True)
    out = CopySet(root)
    for i in range(originals):
        img = scene(seed + i)
        original = root / f"scene{i}.jpg"
        img.save(original, quality=92)
        out.originals.append(original)
        out.copies[original] = []
        for name in edits:
            edit, suffix, options = EDITS[name]
            path = root / f"scene{i}-{name}{suffix}"
            edit(img).save(path, **options)
            out.copies[original].append(path)
        shot = root / f"scene{i}-other-shot.jpg"
        scene(seed + i, shot=1).save(shot, quality=92)
        miss = root / f"scene{i}-near-miss.jpg"
        _crop(img, 0.2, 0.2, 0.2, 0.2).save(miss, quality=92)
        out.others += [shot, miss]
    for j in range(2):
        path = root / f"unrelated{j}.jpg"
        scene(seed + 100 + j).save(path, quality=92)
        out.others.append(path)
    return out
