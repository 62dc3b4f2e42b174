"""Grouping time of the duplicates search (issue 15): no all-pairs comparison.

    nice -n 5 python -m benchmarks.bench_duplicates --photos 10000 100000 [--repeat 3] [--json FILE]

Signatures: real ones made from flowers5 photos (../shared/data) by the indexer's code, each with
copies (re-encoded, resized, rotated, mirrored, cropped) and near-misses, up to the size asked;
past that, synthetic signatures clustered like real ones: blends of two real thumbnails, shifted
and flipped (distinct photos with real photos' statistics), with 2% of them given 1-3 planted
copies (noise, brightness, a symmetry). Times `engine.find_pairs` (candidates from the graph, the
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


def synthetic_signatures(real: list[bytes], n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    thumbs = sig.thumbs(real)
    colours = sig.colours(real)
    out: list[bytes] = []
    while len(out) < n:
        i, j = rng.integers(0, len(real), 2)
        alpha = rng.uniform(0.55, 0.8)
        t = alpha * thumbs[i] + (1 - alpha) * np.roll(thumbs[j], rng.integers(0, 32, 2), (0, 1))
        t = sig.transform(TRANSFORMS[rng.integers(0, 8)], t)
        c = alpha * colours[i] + (1 - alpha) * colours[j]
        group = [t] + ([] if rng.random() > 0.02 else [
            sig.transform(TRANSFORMS[rng.integers(0, 8)],
                          t * rng.uniform(0.8, 1.2) + rng.normal(0, 3, t.shape))
            for _ in range(rng.integers(1, 4))])
        for g in group:
            out.append(np.clip(np.rint(g), 0, 255).astype(np.uint8).tobytes()
                       + np.clip(np.rint(c), 0, 255).astype(np.uint8).tobytes())
    return out[:n]


def group_once(signatures: list[bytes]) -> dict:
    started = time.perf_counter()
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
    rows = []
    print(f"{'photos':>8} {'real':>6} {'median s':>9} {'candidates':>11} {'aligned':>8} "
          f"{'pairs':>7} {'groups':>7}")
    for n in args.photos:
        sigs = real[:n] + synthetic_signatures(real, max(0, n - len(real)), args.seed + n)
        runs = [group_once(sigs) for _ in range(args.repeat)]
        row = {**runs[-1], "photos": n, "real": min(n, len(real)),
               "seconds": statistics.median(r["seconds"] for r in runs),
               "runs": [round(r["seconds"], 2) for r in runs]}
        rows.append(row)
        print(f"{n:>8} {row['real']:>6} {row['seconds']:>9.1f} {row['candidates']:>11} "
              f"{row['aligned']:>8} {row['pairs']:>7} {row['groups']:>7}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cores": os.cpu_count(),
                                         "machine": platform.platform()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
