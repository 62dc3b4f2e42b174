"""The copy signature: a 32×32 grey thumbnail of the whole photo, made at index time.

Why: telling a copy from a look-alike must not depend on the library's learned hasher (its scale
changes with every library and every fine-tune), and re-decoding photos runs at ~46 per second.
So the indexer, which already holds the decoded pixels, keeps this small thumbnail (1 024 bytes,
plus 6 bytes of colour moments) and every later comparison works from it alone.

From the thumbnail follow, with no pixels read again:
- its low-frequency DCT block (8×8), which the eight symmetries of a rectangle (rotations by
  90/180/270, mirrors) transform analytically: a left-right mirror negates the odd horizontal
  frequencies, a top-bottom flip the odd vertical ones, a transpose swaps the two axes. A query's
  eight variants cost sign flips, not decodes;
- a vector of the block's magnitudes, made symmetric in the two axes, which the eight symmetries
  leave unchanged: one nearest-neighbour search finds rotated and mirrored copies as candidates.
The thumbnail is taken of the photo squeezed to a square, so a rotated photo's thumbnail is the
rotated thumbnail.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imagehash_app.core.duplicates.report import TRANSFORMS

SIDE = 32  # thumbnail side in pixels
LOW = 8  # low-frequency DCT block kept for the analytic transforms
THUMB_BYTES = SIDE * SIDE
SIGNATURE_BYTES = THUMB_BYTES + 6  # thumbnail, then mean and spread of R, G, B (uint8 each)

# Each symmetry as a sequence of primitives applied in order: "lr" reverses the columns, "ud"
# the rows, "t" transposes. They match Pillow's Image.Transpose (checked by the tests).
_STEPS: dict[str, tuple[str, ...]] = {
    "": (),
    "mirror": ("lr",),
    "flip": ("ud",),
    "rot180": ("ud", "lr"),
    "transpose": ("t",),
    "rot90": ("t", "ud"),
    "rot270": ("t", "lr"),
    "transverse": ("ud", "lr", "t"),
}
assert set(_STEPS) == set(TRANSFORMS)


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: rows are frequencies."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


_D_LOW = _dct_matrix(SIDE)[:LOW]  # (LOW, SIDE)
_PARITY = ((-1.0) ** np.arange(LOW)).astype(np.float32)  # the sign a reversal gives frequency k
_UPPER = np.triu_indices(LOW, 1)


@dataclass(frozen=True)
class Signature:
    """A decoded signature: the thumbnail (float, SIDE×SIDE) and colour moments (6 floats)."""

    thumb: np.ndarray
    colour: np.ndarray


def thumbnail_of(img: Image.Image) -> bytes:
    """The signature bytes of a decoded RGB photo (any size): what the catalogue stores."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    # Reduce by an integer factor first (a box filter, cheap), then to the square by area.
    factor = max(1, min(rgb.size) // (4 * SIDE))
    small = rgb.reduce(factor) if factor > 1 else rgb
    square = small.resize((SIDE, SIDE), Image.Resampling.BOX)
    pixels = np.asarray(square, dtype=np.float32)
    grey = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    colour = np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))])
    return (
        np.clip(np.rint(grey), 0, 255).astype(np.uint8).tobytes()
        + np.clip(np.rint(colour), 0, 255).astype(np.uint8).tobytes()
    )


def decode(blob: bytes) -> Signature:
    raw = np.frombuffer(blob, np.uint8)
    return Signature(
        raw[:THUMB_BYTES].reshape(SIDE, SIDE).astype(np.float32),
        raw[THUMB_BYTES:SIGNATURE_BYTES].astype(np.float32),
    )


def thumbs(blobs: list[bytes]) -> np.ndarray:
    """(n, SIDE, SIDE) float32 thumbnails of stored signatures."""
    if not blobs:
        return np.zeros((0, SIDE, SIDE), np.float32)
    raw = np.frombuffer(b"".join(b[:THUMB_BYTES] for b in blobs), np.uint8)
    return raw.reshape(-1, SIDE, SIDE).astype(np.float32)


def colours(blobs: list[bytes]) -> np.ndarray:
    """(n, 6) colour moments of stored signatures."""
    if not blobs:
        return np.zeros((0, 6), np.float32)
    raw = np.frombuffer(b"".join(b[THUMB_BYTES:SIGNATURE_BYTES] for b in blobs), np.uint8)
    return raw.reshape(-1, 6).astype(np.float32)


def transform(name: str, arrays: np.ndarray) -> np.ndarray:
    """Apply a symmetry to the last two axes of `arrays` (thumbnails)."""
    out = arrays
    for step in _STEPS[name]:
        if step == "lr":
            out = out[..., :, ::-1]
        elif step == "ud":
            out = out[..., ::-1, :]
        else:
            out = np.swapaxes(out, -1, -2)
    return out


def transform_dct(name: str, blocks: np.ndarray) -> np.ndarray:
    """The DCT blocks of transformed thumbnails, from the blocks alone (sign flips, transposes)."""
    out = blocks
    for step in _STEPS[name]:
        if step == "lr":
            out = out * _PARITY[None, :]
        elif step == "ud":
            out = out * _PARITY[:, None]
        else:
            out = np.swapaxes(out, -1, -2)
    return out


def dct_blocks(thumbs_: np.ndarray) -> np.ndarray:
    """(n, LOW, LOW) low-frequency DCT of thumbnails, the mean (DC) removed and each block
    scaled to unit length: a brightness or contrast change leaves it unchanged."""
    blocks = np.einsum("ux,nxy,vy->nuv", _D_LOW, thumbs_, _D_LOW, optimize=True)
    blocks[:, 0, 0] = 0.0
    norm = np.linalg.norm(blocks.reshape(len(blocks), LOW * LOW), axis=1)
    return blocks / np.maximum(norm, 1e-6)[:, None, None]


def invariant_vectors(blocks: np.ndarray) -> np.ndarray:
    """(n, 63) vectors that the eight symmetries leave unchanged: the magnitudes of the block,
    each pair of mirrored frequencies (u, v)/(v, u) as its larger and smaller one; unit length."""
    mag = np.abs(blocks)
    diag = mag[:, np.arange(1, LOW), np.arange(1, LOW)]
    upper, lower = mag[:, _UPPER[0], _UPPER[1]], mag[:, _UPPER[1], _UPPER[0]]
    vec = np.concatenate([diag, np.maximum(upper, lower), np.minimum(upper, lower)], axis=1)
    norm = np.linalg.norm(vec, axis=1) if len(vec) else np.zeros(0)
    return (vec / np.maximum(norm, 1e-6)[:, None]).astype(np.float32)


# --- what the indexer reads of a photo's header ----------------------------------------------------
_EXIF_IFD = 0x8769
_DATE_TAGS = (36867, 36868, 306)  # DateTimeOriginal, DateTimeDigitized, DateTime

# The IJG (libjpeg) standard luminance quantisation table, at quality 50.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.float64)


@dataclass(frozen=True)
class HeaderFacts:
    """What the keeper rule needs from a file's header, read before its pixels are decoded."""

    format: str
    taken: float | None
    quality: float | None


def header_facts(img: Image.Image) -> HeaderFacts:
    """Format, EXIF taken date and a JPEG quality estimate of an opened (not yet decoded) image;
    never raises (a broken EXIF block only loses the date)."""
    return HeaderFacts(str(img.format or ""), _taken(img), _jpeg_quality(img))


def _taken(img: Image.Image) -> float | None:
    with contextlib.suppress(Exception):
        # Only what the header holds: Pillow's getexif() on a PNG decodes the whole image to look
        # for an eXIf chunk after the pixels (a second, unbudgeted decode).
        raw = img.info.get("exif")
        if raw:
            exif = Image.Exif()
            exif.load(raw if isinstance(raw, bytes) else bytes(raw))
        elif img.format == "TIFF":
            exif = img.getexif()  # read from the TIFF's tags, no decode
        else:
            return None
        sub = exif.get_ifd(_EXIF_IFD)
        for tag in _DATE_TAGS:
            text = sub.get(tag) or exif.get(tag)
            if isinstance(text, str) and len(text) >= 19:
                # The camera's local time, without a zone: read as UTC so that it compares with
                # itself the same everywhere (only the order of dates matters to the rule).
                return float(calendar.timegm(time.strptime(text[:19], "%Y:%m:%d %H:%M:%S")))
    return None


def _jpeg_quality(img: Image.Image) -> float | None:
    """The IJG quality whose scaled standard table is closest, on average, to the file's luminance
    table (the estimate ImageMagick makes); None for other formats."""
    tables = getattr(img, "quantization", None)
    if img.format != "JPEG" or not tables or 0 not in tables:
        return None
    table = np.asarray(tables[0], np.float64)
    if table.size != 64:
        return None
    scale = 100.0 * table.mean() / _IJG_LUMA.mean()  # the IJG scale factor in percent
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(np.clip(round(quality), 1, 100))
