"""Safe image decoding: every failure becomes an `ImageDecodeError` with a short reason.

Photos are decoded only as large as the backbone needs: JPEG files use Pillow's draft mode, which
scales in the DCT domain (1/2, 1/4, 1/8) while decoding, so a 12 MP photo is never decoded at full
size when 224 px are wanted. EXIF orientation is applied after the (cheap) reduced decode.

Every full decode first takes its decoded pixel count (read from the header, after draft mode) from
the process-wide pixel budget (`decode_budget`), and gives it back when the caller is done with the
pixels: `decoding()` for callers that reduce the image inside the block (the backbone's crop, a
thumbnail); `load_rgb` / `decode_photo` give it back when they return the decoded image.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from imagehash_app.core import decode_budget
from imagehash_app.core.errors import ImageDecodeError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".tif",
        ".tiff",
        ".bmp",
        ".gif",
        ".heic",
        ".heif",
    }
)

# Pillow's own limit (about 89 MP, ~268 MB of RGB) is our limit too: larger files are refused with a
# reason instead of Pillow's warning, which would otherwise pass silently.
_DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)


@functools.cache
def _register_heif() -> None:
    """Register HEIC/HEIF support on first use (importing the package changes nothing global)."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def _register_plugins() -> None:
    """HEIF opener, and Pillow's decompression-bomb warning raised as an exception we can report.

    The filter is checked on every call because `warnings.catch_warnings` elsewhere (pytest, other
    libraries) restores the filter list and would drop it.
    """
    _register_heif()
    if not any(
        f[0] == "error" and f[2] is Image.DecompressionBombWarning for f in warnings.filters
    ):
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def max_pixels() -> int:
    """The largest image (in pixels) we decode: Pillow's MAX_IMAGE_PIXELS, or its default when unset."""
    return Image.MAX_IMAGE_PIXELS or _DEFAULT_MAX_PIXELS


def _too_large(size: tuple[int, int]) -> ImageDecodeError:
    return ImageDecodeError(f"too large ({size[0] * size[1] / 1e6:.0f} MP)")


def reason_for_os_error(exc: OSError) -> str:
    """The short skip reason for an error opening or reading a file."""
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return "unreadable: permission denied"
    if isinstance(exc, IsADirectoryError):
        return "not an image"
    if exc.errno is not None:
        return f"unreadable: {exc.strerror or exc}"
    return "corrupt or truncated"


def _open(path: Path, fh: BinaryIO | None = None) -> Image.Image:
    """Open (header only) with every expected failure mapped to a short reason. `fh`: the file
    already open (binary, at its start), so that a caller hashing it too opens it once."""
    _register_plugins()
    try:
        size = os.fstat(fh.fileno()).st_size if fh is not None else path.stat().st_size
        if size == 0:
            raise ImageDecodeError("empty file", path)
        img = Image.open(fh if fh is not None else path)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(_bomb_reason(exc), path) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image", path) from exc
    except OSError as exc:
        raise ImageDecodeError(reason_for_os_error(exc), path) from exc
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError("corrupt or truncated", path) from exc
    w, h = img.size
    if w * h > max_pixels():
        img.close()
        raise ImageDecodeError(_too_large(img.size).reason, path)
    return img


def _bomb_reason(exc: Exception) -> str:
    """Pillow's bomb messages carry the pixel count; turn it into our short MP reason."""
    words = str(exc).replace("(", " ").split()
    for i, word in enumerate(words[:-1]):
        if words[i + 1].startswith("pixels") and word.isdigit():
            return f"too large ({int(word) / 1e6:.0f} MP)"
    return "too large"


def _draft(img: Image.Image, min_side: int | None) -> None:
    """Let a JPEG decode at the smallest DCT scale that keeps the shorter side >= min_side."""
    if min_side is not None and img.format == "JPEG":
        # draft() keeps both sides >= the requested box, so the shorter side stays >= min_side.
        img.draft("RGB", (min_side, min_side))


def _decode(path: Path, img: Image.Image) -> Image.Image:
    """Decode the first frame (at the size `decoded_pixels` set) to RGB, EXIF orientation applied."""
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        img.load()
        # In place: without an Orientation tag Pillow would return a full copy of the pixels.
        ImageOps.exif_transpose(img, in_place=True)
        if img.mode != "RGB":
            img = _to_rgb(img)
        return img
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(_bomb_reason(exc), path) from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError("vanished", path) from exc
    except PermissionError as exc:
        raise ImageDecodeError("unreadable: permission denied", path) from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        raise ImageDecodeError("corrupt or truncated", path) from exc


def decoded_pixels(path: Path, img: Image.Image, min_side: int | None) -> int:
    """Pixels a full decode of opened `img` will hold: its header size, after draft mode (a JPEG
    then decodes at the smallest DCT scale whose shorter side stays >= min_side)."""
    try:
        _draft(img, min_side)
    except (OSError, ValueError) as exc:
        raise ImageDecodeError("corrupt or truncated", path) from exc
    w, h = img.size
    return w * h


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert to RGB; transparent areas become white (as a viewer shows them), not black."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale (some TIFF/PNG): scale to 8 bits instead of clipping.
        return img.point(lambda v: v / 256).convert("L").convert("RGB")
    return img.convert("RGB")


def load_rgb(path: Path | str, min_side: int | None = None) -> Image.Image:
    """Decode `path` to an RGB image, EXIF orientation applied, first frame of an animation.

    `min_side`: the decoder may shrink a JPEG (DCT scaling) as long as its shorter side stays >= this.
    Raises ImageDecodeError(reason) for every file that cannot be decoded.
    """
    return decode_photo(Path(path), min_side)[0]


def decode_photo(
    path: Path, min_side: int | None = None, fh: BinaryIO | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """`load_rgb`, plus the stored (width, height) from the header; reads `fh` when given. The
    budget is held while decoding only: prefer `decoding()` when the image is reduced next."""
    with decoding(path, min_side, fh) as (img, size):
        return img, size


@contextlib.contextmanager
def decoding(
    path: Path, min_side: int | None = None, fh: BinaryIO | None = None,
    on_open: Callable[[Image.Image], None] | None = None,
) -> Iterator[tuple[Image.Image, tuple[int, int]]]:
    """`decode_photo` as a block that holds the image's pixels in the decode budget until it ends:
    reduce the image inside it. Raises ImageDecodeError like `load_rgb`. `on_open` reads the
    opened file's header (format, EXIF) before its pixels are decoded."""
    img = _open(path, fh)
    size = img.size  # before draft() shrinks it
    if on_open is not None:
        on_open(img)
    with img, decode_budget.budget().hold(decoded_pixels(path, img, min_side)):
        yield _decode(path, img), size


def make_thumbnail(path: Path | str, size: int) -> Image.Image:
    """An RGB thumbnail whose longer side is `size`, decoded with draft mode (fast for big JPEGs)
    under the decode budget."""
    path = Path(path)
    img = _open(path)
    with img:
        w, h = img.size
        # Ask draft for the size that makes the longer side >= size.
        scale = size / max(w, h, 1)
        need = max(1, int(min(w, h) * scale + 0.999)) if scale < 1 else None
        with decode_budget.budget().hold(decoded_pixels(path, img, need)):
            rgb = _decode(path, img)
            rgb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return rgb
