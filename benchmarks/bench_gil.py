"""Forward-pass time of the backbone while other Python threads want the GIL: eager vs traced.

Why the GPU path runs the network as one TorchScript graph (core/traced.py): eager PyTorch gives up
and takes back the GIL at every operator, and each take-back can wait for a busy thread's switch
interval; a traced, frozen graph takes it back once per call. The busy threads here are pure-Python
loops, the worst case of what decode workers and the engine's own threads do.

    python benchmarks/bench_gil.py --json gil.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from imagehash_app.core.backbone import BACKBONES, build_feature_model
from imagehash_app.core.traced import trace_network

SHARED_WEIGHTS = (
    Path(__file__).resolve().parents[2] / "shared/data/weights/mobilenet_v2-imagenet.pth"
)


class Hogs:
    """`n` threads running Python bytecode (they hold the GIL whenever they can)."""

    def __init__(self, n: int) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._spin, daemon=True) for _ in range(n)]

    def _spin(self) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1

    def __enter__(self) -> Hogs:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def forward_ms(fn, x: torch.Tensor, reps: int) -> float:
    with torch.inference_mode():
        fn(x)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--hogs", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # one compute thread: the GIL, not core count, is what varies
    spec = BACKBONES[args.backbone]
    weights = str(SHARED_WEIGHTS) if args.backbone == "mobilenet_v2" and SHARED_WEIGHTS.exists() else "none"
    model, _ = build_feature_model(spec, weights)
    size = spec.preprocessing().crop_size
    traced = trace_network(model, "cpu", size)
    if traced is None:
        print("the traced graph did not reproduce the network; nothing to compare", file=sys.stderr)
        return 1
    x = torch.randn(args.batch, 3, size, size)
    rows = []
    for n in args.hogs:
        with Hogs(n):
            eager = forward_ms(model, x, args.reps)
            graph = forward_ms(traced, x, args.reps)
        rows.append({"busy_threads": n, "eager_ms": round(eager, 1), "traced_ms": round(graph, 1)})
        print(f"{n} busy threads: eager {eager:8.1f} ms   traced {graph:8.1f} ms   (batch {args.batch})")
    out = {
        "backbone": args.backbone, "weights": weights, "batch": args.batch, "rows": rows,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
