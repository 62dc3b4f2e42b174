"""Where the benchmarks find their data and keep their caches, the same on every machine.

Real data (weights, CIFAR-10, flowers5, UKBench) comes from `../shared/data` beside the repository
(`--data` elsewhere); what a benchmark derives from it (unpacked photos, feature caches) goes under
the folder it is given (`--work`, default `<tmp>/imagehash-bench`) and is built there when missing,
so that every benchmark runs from a fresh clone as docs/ writes it.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "imagehash-bench"
WEIGHTS_FILE = Path("weights") / "mobilenet_v2-imagenet.pth"
# Data set name → (archive in the data folder, folder inside it whose class folders are labels).
DATASETS = {
    "cifar10": ("cifar10-jpg.tar.gz", "."),
    "flowers5": ("flowers5.tar.gz", "flowers"),
    "ukbench56": ("ukbench56.tar.gz", "."),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--data` (the shared data folder) and `--work` (where caches are built)."""
    parser.add_argument("--data", type=Path, default=SHARED_DATA,
                        help=f"the shared data folder (default {SHARED_DATA})")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help=f"where unpacked photos and feature caches are kept (default {DEFAULT_WORK})")


def weights(data: Path) -> Path:
    """The ImageNet MobileNetV2 state dict of the shared data (FileNotFoundError names the flag)."""
    path = Path(data) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: pass --data with the shared data folder")
    return path


def photos(name: str, data: Path, work: Path) -> Path:
    """The unpacked photos of data set `name` (class folders), unpacked into `work` once."""
    archive, inner = DATASETS[name]
    target = Path(work) / name
    done = target / ".unpacked"
    if not done.exists():
        source = Path(data) / archive
        if not source.is_file():
            raise FileNotFoundError(f"{source} is missing: pass --data with the shared data folder")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source) as tar:
            tar.extractall(target, filter="data")
        done.touch()
    return (target / inner).resolve()


def features(name: str, data: Path, work: Path) -> Path:
    """`<work>/<name>_mobilenet_v2.npz`: the data set's MobileNetV2 features (the shared weights),
    extracted with `imagehash-app eval`'s code when missing (CIFAR-10: 60 000 photos, about five
    minutes at 200 photos/s on a 2-core CPU)."""
    cache = Path(work) / f"{name}_mobilenet_v2.npz"
    if not cache.is_file():
        from imagehash_app.core.evaluation import extract_features

        fs = extract_features(
            photos(name, data, work), "mobilenet_v2", str(weights(data)),
            progress=lambda text, end="\n": print(text, end=end, file=sys.stderr, flush=True),
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        fs.save(cache)
    return cache


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.data cifar10 flowers5 ukbench56`: build the feature caches that
    docs/ commands name (`<work>/<name>_mobilenet_v2.npz`) and print where they are."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("names", nargs="+", choices=sorted(DATASETS))
    add_arguments(parser)
    args = parser.parse_args(argv)
    for name in args.names:
        print(features(name, args.data, args.work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
