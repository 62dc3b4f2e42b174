"""The one download the app makes: a backbone's pretrained weights, once, into torch hub's cache.

torchvision looks for pretrained weights in `<torch hub dir>/checkpoints/<file name of the URL>` and
downloads them there itself when they are missing, with no progress a window can show, no timeout
and an error written for developers. So the first run asks here first (`weights_need`: what is
needed, how big, whether it is there already), and `download_steps` fetches the file into that very
place while reporting bytes, honouring a stop request and giving up when no byte arrives for
`STALL_TIMEOUT_S` seconds; torchvision then finds the file and downloads nothing.

Nothing here imports torch: the hub folder is found as torch.hub.get_dir() finds it (TORCH_HOME,
else XDG_CACHE_HOME/torch, else ~/.cache/torch, then "hub"); a program that moved it with
torch.hub.set_dir() is not followed. The URLs and sizes below are torchvision's own
(`Weights.url` and `meta["_file_size"]`), checked against it by tests/core/test_weights_download.py.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from imagehash_app.core.errors import CancelledError, WeightsUnavailableError

STALL_TIMEOUT_S = 15.0  # no byte for this long: the download stops and says so
CHUNK = 64 * 1024

# backbone name -> (torchvision's URL of its pretrained weights, their size in bytes, about)
PRETRAINED: dict[str, tuple[str, int]] = {
    "mobilenet_v2": ("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", 13_555_000),
    "mobilenet_v3_large": (
        "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth", 21_107_000
    ),
    "efficientnet_b0": (
        "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth", 20_451_000
    ),
    "resnet50": ("https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 97_790_000),
}

Opener = Callable[..., object]  # urllib.request.urlopen's signature: (url, timeout=...) -> response


@dataclass(frozen=True)
class WeightsNeed:
    """What a library's backbone needs before it can look at a photo."""

    backbone: str
    url: str
    file: Path  # where torchvision looks for it
    size: int  # bytes, about (to say so before downloading)

    @property
    def present(self) -> bool:
        return self.file.is_file()

    @property
    def size_text(self) -> str:
        """e.g. "14 MB"."""
        return f"{max(1, round(self.size / 1e6))} MB"


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes received so far of `total` (None when the server did not say)."""

    done: int
    total: int | None


def hub_dir() -> Path:
    """torch.hub.get_dir(), without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "torch",
    )
    return Path(os.path.expanduser(home)) / "hub"


def weights_need(backbone: str, weights: str) -> WeightsNeed | None:
    """The pretrained weights `backbone` with `weights` ("auto") still lacks, or None when nothing
    is to be downloaded (a local weights file, "none", a backbone without pretrained weights, or the
    file already in torch hub's cache)."""
    if str(weights) != "auto" or backbone not in PRETRAINED:
        return None
    url, size = PRETRAINED[backbone]
    need = WeightsNeed(backbone, url, hub_dir() / "checkpoints" / url.rsplit("/", 1)[-1], size)
    return None if need.present else need


def _hash_prefix(file_name: str) -> str | None:
    """torchvision's file names end in the first hex digits of the file's sha256 (`-b0353104.pth`)."""
    stem = file_name.rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    return tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None


def download_steps(
    need: WeightsNeed,
    *,
    should_stop: Callable[[], bool] | None = None,
    stall_timeout: float | None = None,
    opener: Opener | None = None,
) -> Iterator[DownloadProgress]:
    """Download `need.url` into `need.file`, yielding progress; returns the file.

    Written to a temporary file beside it and moved into place only when complete and its sha256
    matches the name's prefix, so torchvision never finds half a file. Raises CancelledError when
    `should_stop()` turns True, WeightsUnavailableError (one plain sentence) on a stall, a network
    failure or a damaged download.
    """
    timeout = STALL_TIMEOUT_S if stall_timeout is None else stall_timeout
    opener = opener or urllib.request.urlopen
    need.file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=need.file.name + ".", suffix=".part", dir=need.file.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = opener(need.url, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise _unreachable(need, exc) from exc
            with response:  # type: ignore[attr-defined]
                length = response.headers.get("Content-Length")  # type: ignore[attr-defined]
                total = int(length) if length and length.isdigit() else None
                yield DownloadProgress(0, total)
                # read1: what has arrived (up to CHUNK), so progress moves with every packet.
                read = getattr(response, "read1", None) or response.read  # type: ignore[attr-defined]
                while True:
                    if should_stop is not None and should_stop():
                        raise CancelledError("the download was cancelled")
                    try:
                        chunk = read(CHUNK)
                    except TimeoutError as exc:
                        raise _stalled(need, timeout, done, total) from exc
                    except OSError as exc:
                        raise _unreachable(need, exc) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    yield DownloadProgress(done, total)
        if total is not None and done != total:
            raise _stalled(need, timeout, done, total)
        prefix = _hash_prefix(need.file.name)
        if prefix is not None and not digest.hexdigest().startswith(prefix):
            raise WeightsUnavailableError(
                "The photo model arrived damaged (its contents do not match); try again, or choose "
                "a model file on this computer."
            )
        os.replace(tmp, need.file)
    finally:
        tmp.unlink(missing_ok=True)
    return need.file


def download_weights(need: WeightsNeed, **kwargs) -> Path:
    """`download_steps` run to the end (for the command line and scripts)."""
    steps = download_steps(need, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _stalled(need: WeightsNeed, timeout: float, done: int, total: int | None) -> WeightsUnavailableError:
    got = f" after {_mb(done)} of {_mb(total)}" if total else ""
    return WeightsUnavailableError(
        f"The download of the photo model stopped{got}: nothing arrived for {timeout:g} seconds. "
        "Check the internet connection and try again, or choose a model file on this computer."
    )


def _unreachable(need: WeightsNeed, exc: BaseException) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        "The photo model could not be downloaded: this computer could not reach the internet. "
        "Connect and try again, or choose a model file on this computer."
    )
