"""Hasher training time on this machine: fit each method on N real features, print a table, write JSON.

Issue 4's target: URPH on 20 000 x 1 280 MobileNetV2 features at 64 bits in at most 2 minutes on
2 CPU cores. Features come from an `eval` feature cache (npz); by default the CIFAR-10 one, built
under `--work` from ../shared/data when missing (benchmarks/data.py):

    .venv/bin/python -m benchmarks.bench_train --n 20000 --bits 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import data
from imagehash_app.core.hashing import make_hasher


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data.add_arguments(ap)
    ap.add_argument("--features-cache", type=Path, default=None,
                    help="features .npz (default: CIFAR-10's, built under --work)")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--methods", default="urph,itq,lsh")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = args.features_cache or data.features("cifar10", args.data, args.work)
    features = np.load(cache)["features"]
    pick = np.random.default_rng(args.seed).permutation(len(features))[: args.n]
    X = np.ascontiguousarray(features[pick], dtype=np.float32)
    rows = []
    for method in args.methods.split(","):
        epochs: list[float] = []
        hasher = make_hasher(method, args.bits, X.shape[1])
        t0 = time.perf_counter()
        hasher.fit(X, seed=args.seed, progress=lambda _p, seen=epochs: seen.append(time.perf_counter()))
        total = time.perf_counter() - t0
        setup = (epochs[0] - t0) if epochs else total
        per_epoch = float(np.median(np.diff([t0, *epochs])[1:])) if len(epochs) > 2 else None
        rows.append({"method": method, "n": len(X), "dim": X.shape[1], "bits": args.bits,
                     "fit_s": round(total, 1), "first_epoch_incl_setup_s": round(setup, 1),
                     "epochs": len(epochs), "median_epoch_s": per_epoch and round(per_epoch, 2)})
        r = rows[-1]
        print(f"{method:5s} n={r['n']} d={r['dim']} bits={r['bits']}  fit {r['fit_s']:7.1f} s  "
              f"(setup+epoch 1 {r['first_epoch_incl_setup_s']} s, {r['epochs']} epochs, "
              f"median epoch {r['median_epoch_s']} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
