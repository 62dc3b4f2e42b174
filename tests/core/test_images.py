"""images.py: every bad-file kind gets its short reason; formats, orientation and draft mode work."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagehash_app.core import images
from imagehash_app.core.errors import ImageDecodeError
from imagehash_app.core.images import IMAGE_SUFFIXES, load_rgb, make_thumbnail


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth gradient with a few blocks: compresses like a photo, distinct per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
    for _ in range(4):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        arr[y0 : y0 + h // 4, x0 : x0 + w // 4] = rng.integers(0, 255, 3)
    return Image.fromarray(arr.astype(np.uint8))


def _reason(path: Path) -> str:
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(path)
    return info.value.reason


def test_suffixes_are_lower_case_and_cover_formats():
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)
    for s in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"):
        assert s in IMAGE_SUFFIXES


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert _reason(p) == "empty file"


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is a text file, not a photo\n" * 20)
    assert _reason(p) == "not an image"


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    _photo(640, 480).save(buf, "JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert _reason(p) == "corrupt or truncated"


def test_corrupt_jpeg_body(tmp_path):
    buf = io.BytesIO()
    _photo(320, 240).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    data[2:40] = b"\x00" * 38  # header segments destroyed after the SOI marker
    p = tmp_path / "garbled.jpg"
    p.write_bytes(bytes(data))
    assert _reason(p) in ("corrupt or truncated", "not an image")


def test_vanished(tmp_path):
    assert _reason(tmp_path / "gone.jpg") == "vanished"


def test_permission_denied(tmp_path, monkeypatch):
    p = tmp_path / "secret.jpg"
    _photo(64, 64).save(p)
    if os.geteuid() != 0:
        p.chmod(0)
        assert _reason(p) == "unreadable: permission denied"
        p.chmod(0o644)

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(p))

    monkeypatch.setattr(images.Image, "open", deny)
    assert _reason(p) == "unreadable: permission denied"


def test_decompression_bomb_is_refused_with_size(tmp_path, monkeypatch):
    p = tmp_path / "bomb.png"
    Image.new("L", (200, 100)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000)  # 20 000 px: Pillow's warning zone
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(p)
    assert info.value.reason.startswith("too large")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # beyond 2x: Pillow's own error
    assert _reason(p).startswith("too large")


def test_bomb_reason_reports_megapixels():
    exc = Image.DecompressionBombError(
        "Image size (200000000 pixels) exceeds limit of 178956970 pixels"
    )
    assert images._bomb_reason(exc) == "too large (200 MP)"


def test_jpeg_draft_mode_keeps_min_side(tmp_path):
    p = tmp_path / "big.jpg"
    _photo(2400, 1800).save(p, quality=85)
    img = load_rgb(p, min_side=200)
    assert img.mode == "RGB"
    assert img.size == (300, 225)  # decoded at 1/8 scale (DCT domain), not full size
    assert load_rgb(p, min_side=256).size == (600, 450)  # 1/8 would be < 256: 1/4
    assert load_rgb(p).size == (2400, 1800)


def test_exif_orientation_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    _photo(400, 200).save(p, exif=exif)
    assert load_rgb(p).size == (200, 400)
    assert min(load_rgb(p, min_side=100).size) >= 100


@pytest.mark.parametrize(
    ("suffix", "fmt", "mode"),
    [
        (".png", "PNG", "RGBA"),
        (".webp", "WEBP", "RGB"),
        (".tif", "TIFF", "RGB"),
        (".bmp", "BMP", "RGB"),
        (".png", "PNG", "P"),
        (".tif", "TIFF", "I;16"),
    ],
)
def test_formats_decode_to_rgb(tmp_path, suffix, fmt, mode):
    p = tmp_path / f"img{suffix}"
    img = _photo(120, 80)
    img = img.convert("L").convert("I;16") if mode == "I;16" else img.convert(mode)
    img.save(p, fmt)
    out = load_rgb(p)
    assert out.mode == "RGB" and out.size == (120, 80)


def test_gif_first_frame(tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    px = load_rgb(p).getpixel((16, 16))
    assert px[0] > 200 and px[2] < 50


def test_heic(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    p = tmp_path / "photo.heic"
    heif = pillow_heif.from_pillow(_photo(128, 96))
    heif.save(p, quality=80)
    out = load_rgb(p)
    assert out.mode == "RGB" and out.size == (128, 96)


def test_thumbnail_uses_longer_side(tmp_path):
    p = tmp_path / "big.jpg"
    _photo(1500, 1000).save(p, quality=85)
    thumb = make_thumbnail(p, 128)
    assert max(thumb.size) == 128 and thumb.size[1] in (85, 86)
    with pytest.raises(ImageDecodeError):
        make_thumbnail(tmp_path / "missing.jpg", 128)
