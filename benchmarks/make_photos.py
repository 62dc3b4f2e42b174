"""Generate a folder of realistic test photos for the indexing benchmark.

Mixed 2-12 MP JPEGs (camera sizes, landscape and portrait, some progressive, EXIF orientation on
about a fifth), plus a few PNG screenshots and HEIC photos. Content is natural-ish: smooth colour
gradients, overlapping shapes, soft blur and sensor-like grain, so files have realistic sizes
(about 0.3-0.6 bytes per pixel) and decode cost. Deterministic for a seed; existing files are kept.

    python benchmarks/make_photos.py OUT_DIR [--count 160] [--seed 0] [--jobs N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

# Common camera and phone sizes (width, height), 2 MP to 12 MP.
JPEG_SIZES = [(1632, 1224), (2048, 1536), (2592, 1944), (3264, 2448), (4000, 3000), (4032, 3024)]
PNG_SIZES = [(1920, 1080), (1280, 800)]
HEIC_SIZES = [(2048, 1536), (2592, 1944)]


def natural_image(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A photo-like picture: gradient sky/ground, blurred shapes, fine grain."""
    w, h = size
    sw, sh = max(8, w // 16), max(8, h // 16)
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (y / sh)[..., None]
    small = top * (1 - t) + bottom * t
    small += 40 * np.sin(x[..., None] / sw * rng.uniform(1, 6) + rng.uniform(0, 6, 3))
    img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(w // 20, w // 2)), y0 + int(rng.integers(h // 20, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            pts = [(int(rng.integers(x0, x1)), int(rng.integers(y0, y1))) for _ in range(5)]
            draw.polygon(pts, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(1.0, w / 1500)))
    # Sensor-like grain at half resolution (full-resolution white noise compresses unrealistically badly).
    grain = Image.effect_noise((w // 2, h // 2), float(rng.uniform(18, 32))).resize(
        (w, h), Image.Resampling.BILINEAR
    )
    grain_rgb = Image.merge("RGB", (grain, grain, grain))
    return ImageChops.add(img, grain_rgb, scale=1.0, offset=-128)


def _plan(i: int, seed: int) -> dict:
    """Everything about photo i, drawn from its own generator (files are independent of each other)."""
    rng = np.random.default_rng([seed, i, 1])
    kind = "png" if i % 20 == 7 else "heic" if i % 20 == 13 else "jpg"
    sizes = {"jpg": JPEG_SIZES, "png": PNG_SIZES, "heic": HEIC_SIZES}[kind]
    w, h = sizes[int(rng.integers(0, len(sizes)))]
    if rng.random() < 0.3:
        w, h = h, w  # portrait
    return {
        "i": i,
        "seed": seed,
        "kind": kind,
        "size": (w, h),
        "orientation": int(rng.choice([3, 6, 8])) if rng.random() < 0.2 else None,
        "quality": int(rng.integers(85, 96)),
        "progressive": bool(rng.random() < 0.15),
    }


def _write(plan: dict, out: Path) -> Path:
    path = out / f"IMG_{plan['i']:05d}.{plan['kind']}"
    if path.exists():
        return path
    img = natural_image(plan["size"], np.random.default_rng([plan["seed"], plan["i"]]))
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    if plan["kind"] == "jpg":
        exif = Image.Exif()
        exif[0x010F] = "BenchCam"  # Make
        exif[0x0110] = "Synthetic 1"  # Model
        if plan["orientation"]:
            exif[0x0112] = plan["orientation"]
        img.save(tmp, "JPEG", quality=plan["quality"], exif=exif, progressive=plan["progressive"])
    elif plan["kind"] == "png":
        img.save(tmp, "PNG", compress_level=6)
    else:
        import pillow_heif

        pillow_heif.from_pillow(img).save(tmp, quality=85)
    tmp.replace(path)  # a half-written file never looks finished
    return path


def make_folder(out: Path, count: int, seed: int = 0, jobs: int = 1) -> list[Path]:
    """Write `count` photos into `out` (about 90% JPEG, 5% PNG, 5% HEIC); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    plans = [_plan(i, seed) for i in range(count)]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        with ProcessPoolExecutor(jobs) as pool:
            return list(pool.map(partial(_write, out=out), plans))
    return [_write(p, out) for p in plans]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="processes writing photos in parallel")
    args = ap.parse_args(argv)
    paths = make_folder(args.out, args.count, args.seed, args.jobs)
    total = sum(p.stat().st_size for p in paths)
    pixels = 0
    for p in paths:
        with Image.open(p) if p.suffix != ".heic" else _heif_open(p) as im:
            pixels += im.size[0] * im.size[1]
    print(
        f"{len(paths)} files, {total / 1e6:.0f} MB, {pixels / len(paths) / 1e6:.1f} MP average, "
        f"{total / pixels:.2f} bytes/pixel in {args.out}"
    )
    return 0


def _heif_open(path: Path) -> Image.Image:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return Image.open(path)


if __name__ == "__main__":
    sys.exit(main())
