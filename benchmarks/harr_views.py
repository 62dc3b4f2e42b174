"""HARR's two views from augmented images against views made in feature space, on flowers5.

HARR (seed 001) drives the cross-correlation of two augmented views' codes to the identity. The
app's backbone is frozen, so the views are either made in feature space (neighbour mixing,
dropout, noise: free) or are features of augmented copies of the photo (random resized crop,
flip, colour jitter), which cost extra backbone passes. This measures what each gives (eval's
metrics, first stage and decoder re-rank) and what the image views cost (seconds of decode +
backbone per photo per view, on this machine).

    python -m benchmarks.harr_views --views 2 --bits 32,64 --device cuda --json out.json

Same protocol as `imagehash-app eval --features-cache flowers5 --queries-per-class 100 --seed 0`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import data

VARIANTS = {
    # name -> (use image views, HARR parameter overrides)
    "feature": (False, {}),
    "image": (True, {"view_mix": 0.0, "view_dropout": 0.0, "view_noise": 0.0}),
    "image+feature": (True, {}),
}


def augmented_features(
    root: Path, paths: list[str], views: int, seed: int, device: str, weights: Path,
    threads: int = 8,
) -> tuple[np.ndarray, float]:
    """Features (n, views, d) of `views` augmented copies of every photo, and the seconds taken."""
    import torch
    from torchvision.transforms import v2

    from imagehash_app.core.backbone import load_backbone
    from imagehash_app.core.images import load_rgb

    backbone = load_backbone("mobilenet_v2", weights=str(weights), device=device)
    size = backbone.input_size
    augment = v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
    ])

    def crops(i: int) -> np.ndarray:
        img = load_rgb(root / paths[i], min_side=backbone.min_side)
        torch.manual_seed(seed * 1_000_003 + i)  # the same views on every run
        return np.stack([np.asarray(augment(img)) for _ in range(views)])

    started = time.perf_counter()
    out = np.zeros((len(paths), views, backbone.feature_dim), np.float32)
    batch = max(1, 256 // views)
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(paths), batch):
            rows = range(start, min(start + batch, len(paths)))
            pixels = np.concatenate(list(pool.map(crops, rows)))
            out[rows.start : rows.stop] = backbone.embed_pixels(pixels).reshape(len(rows), views, -1)
            print(f"views: {rows.stop}/{len(paths)}", end="\r", file=sys.stderr, flush=True)
    return out, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from imagehash_app.core.evaluation import (
        Benchmark,
        FeatureSet,
        Split,
        first_stage,
        refiners,
        split_per_class,
    )
    from imagehash_app.core.hashing import make_hasher

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data.add_arguments(parser)
    parser.add_argument("--dataset", default="flowers5", choices=sorted(data.DATASETS))
    parser.add_argument("--views", type=int, default=2, help="augmented images per photo")
    parser.add_argument("--bits", default="32,64")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--queries-per-class", type=int, default=100)
    parser.add_argument("--rerank", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="backbone and training device")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="smoke runs: this many database photos")
    parser.add_argument("--epochs", type=int, default=None, help="HARR's encoder epochs (smoke runs)")
    args = parser.parse_args(argv)

    fs = FeatureSet.load(data.features(args.dataset, args.data, args.work))
    root = data.photos(args.dataset, args.data, args.work)
    split = split_per_class(fs.labels, args.queries_per_class, args.seed)
    if args.limit:
        split = Split(queries=split.queries[: args.limit // 4], database=split.database[: args.limit])
    labels = fs.labels.astype(np.int64)
    bench = Benchmark(fs.features[split.queries], fs.features[split.database],
                      labels[split.queries], labels[split.database])
    db_paths = [fs.paths[i] for i in split.database]
    views, view_s = augmented_features(
        root, db_paths, args.views, args.seed, args.device, data.weights(args.data)
    )
    per_photo_view = view_s / max(len(db_paths) * args.views, 1)
    print(f"\naugmented views: {len(db_paths)} photos x {args.views} in {view_s:.1f} s "
          f"({1e3 * per_photo_view:.2f} ms per photo per view)", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    depths = tuple(sorted({10, 100, args.rerank}))
    for bits in [int(b) for b in args.bits.split(",")]:
        for name in args.variants.split(","):
            use_views, params = VARIANTS[name]
            extra = {} if args.epochs is None else {"epochs": args.epochs, "decoder_epochs": 1}
            hasher = make_hasher("harr", bits, fs.features.shape[1], **params, **extra)
            started = time.perf_counter()
            hasher.fit(bench.database, seed=args.seed, device=args.device,
                       views=views if use_views else None)
            fit_s = time.perf_counter() - started
            qc, dc = hasher.encode(bench.queries), hasher.encode(bench.database)
            scores = bench.score_refinements(
                first_stage(hasher, bench.queries, qc, dc, None),
                refiners(hasher, bench, dc, args.rerank, ("none", "decoder")), depths,
            )
            for refine in ("none", "decoder"):
                row = {"variant": name, "bits": bits, "refine": refine, "fit_s": round(fit_s, 1),
                       **{k: v for k, v in scores[refine].items() if isinstance(v, (int, float))}}
                rows.append(row)
                print(f"{name:>14} {bits:>4} {refine:>8}  mAP@1000 {row.get('mAP@1000', 0):.3f}  "
                      f"10@10 {row.get('recall10@10', 0):.3f}  10@100 {row.get('recall10@100', 0):.3f}  "
                      f"fit {fit_s:.1f} s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "views": args.views, "view_seconds": round(view_s, 2),
            "ms_per_photo_per_view": round(1e3 * per_photo_view, 3),
            "database": len(db_paths), "device": args.device, "rows": rows,
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
