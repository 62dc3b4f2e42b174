"""Indexing throughput: bare backbone (B), bare decode+preprocess (D), the pipeline, Library.index.

On a CPU, decoding and inference share the cores, so the best a pipeline can do is
1/(1/B + 1/D) images/s; on a GPU it is min(B, D). All figures come from the same run on the same files.

    python benchmarks/make_photos.py /tmp/photos --count 160
    nice -n 10 python benchmarks/bench_indexing.py /tmp/photos --json results.json

On a GPU the pipeline decodes in processes, 8 photos per task: D is then the better of decode
threads and decode processes (1 or 8 photos per task), and the pipeline is also timed with
threads, side by side (`--chunks 4 16` adds the pipeline with other photos per task).
`Library.index` is also timed before, during and after a hasher fit that runs beside it.

mobilenet_v2 uses the shared ImageNet weights when present; other backbones use random weights
("none": no download is possible here), which changes no timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise, repeat
from pathlib import Path

import numpy as np

from imagehash_app.core.backbone import BACKBONES, load_backbone
from imagehash_app.core.embedding import (
    PROCESS_CHUNK,
    PROCESS_POOLS,
    decode_for,
    iter_embeddings,
    wants_processes,
)
from imagehash_app.core.images import IMAGE_SUFFIXES, load_rgb

SHARED_WEIGHTS = (
    Path(__file__).resolve().parents[2] / "shared/data/weights/mobilenet_v2-imagenet.pth"
)


def weights_for(name: str) -> str:
    if name == "mobilenet_v2" and SHARED_WEIGHTS.exists():
        return str(SHARED_WEIGHTS)
    return "none"


def measure_decode(paths: list[Path], bb, workers: int) -> tuple[float, list[np.ndarray]]:
    """D: decode + preprocess every file in `workers` threads, nothing else running."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda p: decode_for(p, bb), paths))
    return len(paths) / (time.perf_counter() - t0), arrays


def bare_crop(path: Path, prep, min_side: int) -> np.ndarray:
    """Decode + crop one file, nothing else (module-level: decode processes run it)."""
    return prep.crop_uint8(load_rgb(path, min_side=min_side))


def measure_decode_processes(paths: list[Path], bb, workers: int, chunk: int = 1) -> float:
    """D in the pipeline's own decode processes (the GPU path): decode + crop to uint8, the
    normalisation being GPU work there; `chunk` photos per task. The pool is started before the
    clock does."""
    pool = PROCESS_POOLS.get(workers)
    args = (repeat(bb.prep), repeat(bb.min_side))
    list(pool.map(bare_crop, paths[: 2 * workers], *args))
    t0 = time.perf_counter()
    n = sum(1 for _ in pool.map(bare_crop, paths, *args, chunksize=chunk))
    return n / (time.perf_counter() - t0)


def measure_backbone(arrays: list[np.ndarray], bb, batch_size: int) -> float:
    """B: inference alone on pre-decoded batches (batch stacking excluded)."""
    batches = [np.stack(arrays[i : i + batch_size]) for i in range(0, len(arrays), batch_size)]
    bb.embed(batches[0])  # warm-up (allocations, CUDA kernels)
    _sync(bb)
    t0 = time.perf_counter()
    for b in batches:
        bb.embed(b)
    _sync(bb)
    return len(arrays) / (time.perf_counter() - t0)


def _sync(bb) -> None:
    if bb.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure_pipeline(
    paths: list[Path], bb, batch_size: int, workers: int | None, chunk: int | None = None,
    processes: bool | None = None,
) -> float:
    t0 = time.perf_counter()
    n = 0
    for batch in iter_embeddings(
        paths, bb, batch_size=batch_size, workers=workers, chunk=chunk, processes=processes
    ):
        n += len(batch.paths)
    assert n == len(paths), f"pipeline embedded {n} of {len(paths)}"
    return n / (time.perf_counter() - t0)


def _linked_folder(paths: list[Path], dest: Path) -> Path:
    """A folder holding exactly `paths` (hard links: same inodes, so the page cache stays warm)."""
    dest.mkdir(parents=True)
    for p in paths:
        try:
            os.link(p, dest / p.name)
        except OSError:
            shutil.copy2(p, dest / p.name)
    return dest


def measure_library(
    paths: list[Path], name: str, weights: str, device: str, batch_size: int, threads: int | None
) -> dict | None:
    """Library.index on a fresh library: wall time for the whole job, the embed-phase rate, and the
    embedding rate before, during and after a hasher fit that runs beside it."""
    try:
        from imagehash_app.core import library
        from imagehash_app.core.settings import LibrarySettings
    except ImportError:
        return None
    settings = LibrarySettings(
        backbone=name, weights=weights, device=device, batch_size=batch_size, threads=threads
    )
    with tempfile.TemporaryDirectory(prefix="bench-lib-") as tmp:
        folder = _linked_folder(paths, Path(tmp) / "photos")
        lib = library.Library.open(Path(tmp) / "library", settings=settings)
        try:
            phases: dict[str, float] = {}
            t0 = time.perf_counter()
            last_phase, last_t = None, t0
            n = 0
            marks: list[tuple[str, float, int]] = []  # (what began, when, photos embedded)
            timeline: list[dict] = []  # every event but plain embedding progress, to see waits
            for ev in lib.index([folder]):
                now = time.perf_counter()
                if ev.phase != "embed" or ev.message or ev.done in (0, ev.total):
                    timeline.append({
                        "t": round(now - t0, 2), "phase": ev.phase, "done": ev.done,
                        "message": ev.message[:80],
                    })
                if ev.phase != last_phase:
                    if last_phase is not None:
                        phases[last_phase] = phases.get(last_phase, 0.0) + now - last_t
                    last_phase, last_t = ev.phase, now
                if ev.phase == "embed":
                    if not marks:
                        marks.append(("before fit", now, 0))
                    n = max(n, ev.done)
                    if ev.message.startswith("Now searching"):
                        marks.append(("after fit", now, n))
                    elif n == ev.total and marks[-1][0] != "end":
                        marks.append(("end", now, n))
                elif ev.phase == "train" and "meanwhile" in ev.message:
                    marks.append(("during fit", now, n))
            total = time.perf_counter() - t0
            status = lib.status().to_dict()
            indexed = status.get("indexed", n)
            metrics = _model_metrics(Path(tmp) / "library", status.get("model"))
        finally:
            lib.close()
    embed_s = phases.get("embed", 0.0)
    return {
        "images": indexed,
        "wall_s": round(total, 2),
        "rate": round(indexed / total, 2),
        "embed_phase_rate": round(n / embed_s, 2) if embed_s else None,
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
        "segments": [
            {"part": part, "photos": n1 - n0, "rate": round((n1 - n0) / (s1 - s0), 1)}
            for (part, s0, n0), (_, s1, n1) in pairwise(marks)
            if s1 > s0
        ],
        "timeline": timeline,
        "model_metrics": metrics,
    }


def _model_metrics(library: Path, model: dict | None) -> dict:
    """The active hasher's own record of its fit (where the time went)."""
    from imagehash_app.core.hashing.base import META_FILE

    if not model:
        return {}
    meta = json.loads((library / model["dir"] / META_FILE).read_text())
    return {"method": meta["method"], **meta.get("metrics", {})}


def exactness(paths: list[Path], bb, n: int = 12) -> float:
    """Min cosine between features from our fast path (draft decode, box resize) and from the exact
    torchvision transform on the full-size decode; 1.0 means identical."""
    spec = bb.spec
    weights = spec.weights()
    if weights is None:
        return float("nan")
    reference = weights.transforms()
    sample = paths[:: max(1, len(paths) // n)][:n]
    fast = bb.embed(np.stack([decode_for(p, bb) for p in sample]))
    exact = bb.embed(np.stack([reference(load_rgb(p)).numpy() for p in sample]))
    return float(np.min(np.sum(fast * exact, axis=1)))


def oversample_study(paths: list[Path], bb, workers: int) -> dict:
    """D and exactness for JPEG draft sizes of 1x, 2x and 4x the resize size, side by side."""
    out = {}
    default = bb.draft_oversample
    try:
        for k in (1, 2, 4):
            bb.draft_oversample = k
            d, _ = measure_decode(paths, bb, workers)
            out[str(k)] = {
                "D": round(d, 1),
                "min_cos_vs_exact_transform": round(exactness(paths, bb), 5),
            }
            print(
                f"  draft oversample {k}: D {d:.1f}/s, min cos {out[str(k)]['min_cos_vs_exact_transform']}"
            )
    finally:
        bb.draft_oversample = default
    return out


def run(args: argparse.Namespace) -> dict:
    paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[
        : args.limit
    ]
    for p in paths:  # warm the page cache: we measure decoding, not the disk
        p.read_bytes()
    cache = Path(args.cache_dir) if args.cache_dir else None
    results = []
    for name in args.backbones:
        weights = weights_for(name)
        bb = load_backbone(
            name,
            weights,
            device=args.device,
            runtime=args.runtime,
            cache_dir=cache,
            threads=args.threads,
        )
        workers = args.workers
        d_rates, dp_rates, b_rates, p_rates, pt_rates = [], [], [], [], []
        dp_by_chunk: dict[int, list[float]] = {1: [], PROCESS_CHUNK: []}
        chunk_rates: dict[int, list[float]] = {}
        arrays: list[np.ndarray] = []
        # Interleaved, so that B, D and the pipeline see the same noise. D is the better of
        # threads and processes where the pipeline decodes in processes (a GPU backbone).
        for _ in range(args.repeat):
            d, arrays = measure_decode(paths, bb, args.decode_workers)
            d_rates.append(d)
            if wants_processes(bb):
                for c, runs in dp_by_chunk.items():  # D at its best: 1 and 8 photos per task
                    runs.append(measure_decode_processes(paths, bb, args.decode_workers, c))
                dp_rates.append(max(r[-1] for r in dp_by_chunk.values()))
                pt_rates.append(  # the pipeline with decode threads instead, side by side
                    measure_pipeline(paths, bb, args.batch_size, workers, processes=False)
                )
            b_rates.append(measure_backbone(arrays, bb, args.batch_size))
            p_rates.append(measure_pipeline(paths, bb, args.batch_size, workers))
            for c in args.chunks:
                chunk_rates.setdefault(c, []).append(
                    measure_pipeline(paths, bb, args.batch_size, workers, chunk=c)
                )
        B, Dt, P = (statistics.median(r) for r in (b_rates, d_rates, p_rates))
        Dp = statistics.median(dp_rates) if dp_rates else None
        D = max(Dt, Dp or 0.0)
        bound = 1 / (1 / B + 1 / D) if bb.device == "cpu" else min(B, D)
        row = {
            "backbone": name,
            "weights": "shared file" if weights != "none" else "none (random)",
            "runtime": bb.runtime,
            "device": bb.device,
            "B": round(B, 1),
            "D": round(D, 1),
            "D_threads": round(Dt, 1),
            "D_processes": round(Dp, 1) if Dp else None,
            "decode_in": "processes" if wants_processes(bb) else "threads",
            "bound": round(bound, 1),
            "pipeline": round(P, 1),
            "pipeline_ratio": round(P / bound, 3),
            "B_runs": [round(x, 1) for x in b_rates],
            "D_runs": [round(x, 1) for x in d_rates],
            "D_processes_runs": [round(x, 1) for x in dp_rates],
            "D_processes_by_chunk": {
                c: round(statistics.median(r), 1) for c, r in dp_by_chunk.items() if r
            },
            "pipeline_runs": [round(x, 1) for x in p_rates],
            "pipeline_with_threads": round(statistics.median(pt_rates), 1) if pt_rates else None,
            "pipeline_with_threads_runs": [round(x, 1) for x in pt_rates],
            "pipeline_by_chunk": {
                c: round(statistics.median(r), 1) for c, r in chunk_rates.items()
            },
        }
        if args.exactness and weights != "none":
            row["min_cos_vs_exact_transform"] = round(exactness(paths, bb), 5)
        if args.oversample_study and bb.spec.weights() is not None:
            row["draft_oversample"] = oversample_study(paths, bb, args.decode_workers)
        if args.library:
            runs = [
                measure_library(paths, name, weights, args.device, args.batch_size, args.threads)
                for _ in range(args.repeat)
            ]
            if runs[0] is not None:
                rates = [r["rate"] for r in runs]
                rate = statistics.median(rates)  # as B, D and the pipeline
                lib = min(runs, key=lambda r: abs(r["rate"] - rate))  # its details: the nearest run
                row["library"] = {
                    **lib, "rate": round(rate, 2), "details_from_run": runs.index(lib),
                    "rate_runs": rates,
                }
                row["library_ratio"] = round(rate / bound, 3)
        results.append(row)
        print_row(row)
        if args.json:  # after every backbone, so that a run cut short keeps what it measured
            args.json.write_text(json.dumps(_document(paths, args, results), indent=2))
    return _document(paths, args, results)


def _document(paths: list[Path], args: argparse.Namespace, results: list[dict]) -> dict:
    return {
        "files": len(paths),
        "megapixels_avg": round(_avg_mp(paths), 2),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "workers": args.workers,
        "repeat": args.repeat,
        "results": results,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def _avg_mp(paths: list[Path]) -> float:
    from imagehash_app.core.images import _open

    total = 0
    for p in paths:
        with _open(p) as im:
            total += im.size[0] * im.size[1]
    return total / len(paths) / 1e6


def print_row(r: dict) -> None:
    lib = r.get("library")
    lib_s = f" | library {lib['rate']:.1f}/s ({r['library_ratio']:.0%})" if lib else ""
    cos = r.get("min_cos_vs_exact_transform")
    cos_s = f" | cos {cos:.4f}" if cos is not None else ""
    chunks = "".join(f" | chunk {c}: {v}" for c, v in r["pipeline_by_chunk"].items())
    dp = f" (threads {r['D_threads']}, processes {r['D_processes']})" if r["D_processes"] else ""
    if r["pipeline_with_threads"]:
        chunks += f" | pipeline with threads {r['pipeline_with_threads']}"
    print(
        f"{r['backbone']:<19} {r['runtime']:<11} B {r['B']:7.1f}  D {r['D']:7.1f}{dp}  bound {r['bound']:6.1f}  "
        f"pipeline {r['pipeline']:6.1f} ({r['pipeline_ratio']:.0%}){lib_s}{cos_s}{chunks}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--backbones", nargs="+", default=[n for n in BACKBONES if n != "tiny"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--threads", type=int, default=None, help="inference threads (default: all cores)"
    )
    ap.add_argument(
        "--workers", type=int, default=None, help="pipeline decode threads (default: pipeline's)"
    )
    ap.add_argument(
        "--decode-workers", type=int, default=os.cpu_count() or 2, help="threads for bare D"
    )
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--chunks", type=int, nargs="*", default=[],
        help="also time the pipeline with these photos per decode task (A/B of the default)",
    )
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--no-library", dest="library", action="store_false")
    ap.add_argument("--no-exactness", dest="exactness", action="store_false")
    ap.add_argument(
        "--oversample-study", action="store_true", help="compare JPEG draft sizes 1x/2x/4x"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
