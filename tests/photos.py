"""Generated photo folders for tests: originals, their near-copies, and unrelated photos.

Each original is a smooth random colour field with a few shapes (a stand-in for a photo, with a
palette of its own); its near-copies are resized, re-encoded and slightly cropped versions, as a
person's library holds them. Everything is seeded, small and fast to make.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = (192, 144)


def make_photo(seed: int, size: tuple[int, int] = SIZE) -> Image.Image:
    """A deterministic synthetic photo: low-frequency colour field plus random shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.uniform(0, 255, size=(3, 4, 3)).astype(np.uint8)  # a 4x3 grid of colours
    img = Image.fromarray(base, "RGB").resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(15, w // 2)), y0 + int(rng.integers(15, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    noise = rng.normal(0, 6, size=(h, w, 3))
    arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def near_copies(img: Image.Image) -> dict[str, Image.Image]:
    """The kinds of duplicates a library holds: smaller, re-compressed, slightly cropped."""
    w, h = img.size
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=55)
    return {
        "resized": img.resize((w * 2 // 3, h * 2 // 3), Image.BILINEAR),
        "reencoded": Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
        "cropped": img.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
    }


@dataclass
class PhotoSet:
    """A generated folder; `copies[original]` are its near-copies, `unrelated` the others."""

    root: Path
    originals: list[Path] = field(default_factory=list)
    copies: dict[Path, list[Path]] = field(default_factory=dict)
    unrelated: list[Path] = field(default_factory=list)

    @property
    def all(self) -> list[Path]:
        out = list(self.originals) + list(self.unrelated)
        for c in self.copies.values():
            out += c
        return sorted(out)


def make_photo_folder(root: Path, groups: int = 3, unrelated: int = 4, seed: int = 0) -> PhotoSet:
    """Write `groups` originals with 3 near-copies each, plus `unrelated` photos, under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    photos = PhotoSet(root)
    for g in range(groups):
        img = make_photo(seed * 1000 + g)
        orig = root / f"group{g}" / "original.jpg"
        orig.parent.mkdir(exist_ok=True)
        img.save(orig, "JPEG", quality=92)
        photos.originals.append(orig)
        photos.copies[orig] = []
        for kind, copy in near_copies(img).items():
            suffix = ".png" if kind == "cropped" else ".jpg"
            path = root / f"group{g}" / f"{kind}{suffix}"
            copy.save(path)
            photos.copies[orig].append(path)
    for u in range(unrelated):
        path = root / "misc" / f"other{u}.jpg"
        path.parent.mkdir(exist_ok=True)
        make_photo(seed * 1000 + 500 + u).save(path, "JPEG", quality=90)
        photos.unrelated.append(path)
    return photos
