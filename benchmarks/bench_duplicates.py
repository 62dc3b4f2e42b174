"""Grouping time of the duplicates search (issue 15): no all-pairs comparison.

    nice -n 5 python -m benchmarks.bench_duplicates --photos 10000 100000 [--repeat 3] [--json FILE]

Signatures: real ones made from flowers5 photos (../shared/data) by the indexer's code, about 30%
of them with a copy (re-encoded, resized, rotated, mirrored, cropped) and a near-miss crop (about
7 000 in all); then CIFAR-10 photos (60 000 real 32x32 photos: their own thumbnails); past that,
blends of two different CIFAR-10 photos, shifted and turned (real photos' statistics, not
uniform, none a copy of another); 2% of the CIFAR-10 and blended photos get 1-3 planted copies
(brightness, noise, a symmetry). Times `engine.find_pairs` (candidates from the graph, the
DCT check, the alignment) plus the grouping into a report; the median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks import data as bench_data
from imagehash_app.core.duplicates import engine
from imagehash_app.core.duplicates import score as score_mod
from imagehash_app.core.duplicates import signature as sig
from imagehash_app.core.duplicates.report import TRANSFORMS, CopyPhoto, DuplicateReport, ScoredPair


def real_signatures(data: Path, work: Path, limit: int, seed: int) -> list[bytes]:
    """flowers5 signatures with copies and near-misses (bench_copies' edits), up to `limit`."""
    import io
    import random

    from PIL import Image

    from benchmarks.bench_copies import edits, near_miss, signature_of_bytes

    rng = random.Random(seed)
    out: list[bytes] = []
    named = edits(rng)
    for path in sorted(bench_data.photos("flowers5", data, work).rglob("*.jpg")):
        if len(out) >= limit:
            break
        raw = path.read_bytes()
        out.append(signature_of_bytes(raw))
        if rng.random() < 0.3:
            img = Image.open(io.BytesIO(raw)).convert("RGB")
            out.append(signature_of_bytes(named[rng.choice(sorted(named))](img)))
            out.append(signature_of_bytes(near_miss(img, rng)))
    return out[:limit]


PLANT_SHARE = 0.02


def cifar_signatures(data: Path, limit: int) -> list[bytes]:
    """Signatures of CIFAR-10 photos (32x32 JPEGs: their own thumbnails), read from the archive
    without unpacking it."""
    import io
    import tarfile

    from PIL import Image

    out: list[bytes] = []
    with tarfile.open(Path(data) / bench_data.DATASETS["cifar10"][0]) as tar:
        for member in tar:
            if len(out) >= limit:
                break
            if member.isfile() and member.name.endswith(".jpg"):
                raw = tar.extractfile(member).read()
                out.append(sig.thumbnail_of(Image.open(io.BytesIO(raw)).convert("RGB")))
    return out


def _blob(thumb: np.ndarray, colour: np.ndarray) -> bytes:
    return (np.clip(np.rint(thumb), 0, 255).astype(np.uint8).tobytes()
            + np.clip(np.rint(colour), 0, 255).astype(np.uint8).tobytes())


def synthetic_signatures(sources: list[bytes], n: int, seed: int) -> list[bytes]:
    """`n` more photos, each an even blend of two different real photos, shifted and turned:
    real photos' statistics, none a copy of another."""
    rng = np.random.default_rng(seed)
    thumbs, colours = sig.thumbs(sources), sig.colours(sources)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(sources), 2, replace=False)
        shifted = np.roll(thumbs[j], tuple(rng.integers(4, 28, 2)), (0, 1))
        t = sig.transform(TRANSFORMS[rng.integers(0, 8)], 0.5 * thumbs[i] + 0.5 * shifted)
        out.append(_blob(t, 0.5 * colours[i] + 0.5 * colours[j]))
    return out


def plant_copies(blobs: list[bytes], share: float, seed: int) -> tuple[list[bytes], int]:
    """Give `share` of the photos 1-3 copies each (brightness, noise, a symmetry); returns the
    photos with the copies appended and how many copies were planted."""
    rng = np.random.default_rng(seed)
    thumbs, colours = sig.thumbs(blobs), sig.colours(blobs)
    copies = []
    for i in np.flatnonzero(rng.random(len(blobs)) < share):
        for _ in range(rng.integers(1, 4)):
            t = thumbs[i] * rng.uniform(0.8, 1.2) + rng.normal(0, 3, thumbs[i].shape)
            copies.append(_blob(sig.transform(TRANSFORMS[rng.integers(0, 8)], t), colours[i]))
    return blobs + copies, len(copies)


def group_once(signatures: list[bytes]) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    found = engine.find_pairs(signatures, score_mod.default_floor(score_mod.DEFAULT_THRESHOLD))
    searched = time.perf_counter() - started
    used: dict[int, int] = {}
    pairs = []
    for a, b, s, t in zip(found.a, found.b, found.score, found.transform, strict=True):
        pairs.append(ScoredPair(used.setdefault(int(a), len(used)),
                                used.setdefault(int(b), len(used)), float(s), t))
    photos = [CopyPhoto(Path(f"/p/{i}.jpg"), 1000 + i, 100, 100, "JPEG", float(i)) for i in used]
    report = DuplicateReport.build(photos, pairs, threshold=score_mod.DEFAULT_THRESHOLD,
                                   floor=score_mod.default_floor(score_mod.DEFAULT_THRESHOLD))
    return {"seconds": time.perf_counter() - started, "search_seconds": searched,
            "cpu_seconds": time.process_time() - cpu,
            "candidates": found.candidates, "aligned": found.aligned, "pairs": len(pairs),
            "groups": len(report.groups)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_data.add_arguments(parser)
    parser.add_argument("--photos", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real", type=int, default=10_000,
                        help="real signatures made from flowers5 (the rest synthetic)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    real = real_signatures(args.data, args.work, min(args.real, max(args.photos)), args.seed)
    cifar = cifar_signatures(args.data, max(0, max(args.photos) - len(real)))
    rows = []
    print(f"{'photos':>8} {'real':>6} {'median s':>9} {'cpu s':>6} {'candidates':>11} "
          f"{'aligned':>8} {'pairs':>7} {'groups':>7}")
    for n in args.photos:
        # Real flowers5 photos with their copies, then CIFAR-10 photos, then blends of those,
        # with 2% of the CIFAR-10 and blended photos given planted copies.
        rest = cifar[: max(0, n - len(real))]
        blended = synthetic_signatures(cifar or real, max(0, n - len(real) - len(rest)),
                                       args.seed + n)
        extra = rest + blended
        target = max(0, n - len(real))
        planted_from = int(round(target / (1 + 2 * PLANT_SHARE)))  # 1-3 copies: 2 on average
        extra, planted = plant_copies(extra[:planted_from], PLANT_SHARE, args.seed)
        sigs = (real[:n] + extra)[:n]
        runs = [group_once(sigs) for _ in range(args.repeat)]
        row = {**runs[-1], "photos": n, "real": min(n, len(real)), "cifar10": len(rest),
               "planted_copies": planted,
               "seconds": statistics.median(r["seconds"] for r in runs),
               "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
               "runs": [round(r["seconds"], 2) for r in runs]}
        rows.append(row)
        print(f"{n:>8} {row['real']:>6} {row['seconds']:>9.1f} {row['cpu_seconds']:>6.1f} "
              f"{row['candidates']:>11} "
              f"{row['aligned']:>8} {row['pairs']:>7} {row['groups']:>7}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cores": os.cpu_count(),
                                         "machine": platform.platform()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
