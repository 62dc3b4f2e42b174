"""A cold command-line query: `imagehash-app search photo.jpg` in a new process, against
`imagehash-app status` in the same run (goal: search ≤ 3× status).

    nice -n 5 .venv/bin/python -m benchmarks.bench_cold_query \\
        --weights ../shared/data/weights/mobilenet_v2-imagenet.pth --photos 300 --runs 7 [--json OUT]

The package is byte-compiled first, as an installed one is. A library is indexed once (in this process, real photos of the shared flowers5 set, or generated
ones with --generated) with the chosen backbone: the writer checks the ONNX export and records it
for queries (core/query_model.py). Then, alternately, `python -m imagehash_app status` and
`python -m imagehash_app search PHOTO` run in new processes (files in the page cache after the
first, untimed, round), each timed from spawn to exit, with the CPU time it used (user + sys,
which a machine shared with other work inflates less than the wall time); medians and their
ratios are printed. One
more search runs with `-X importtime` to report whether PyTorch was imported. `--code DIR` runs
another checkout's package on the same library (e.g. main, for the figure before).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import data
from benchmarks.bench_gui_search import make_photos

REPO = Path(__file__).resolve().parents[1]


def real_photos(data_dir: Path, work: Path, n: int, folder: Path) -> list[Path]:
    """The first `n` photos of the shared flowers5 set, in one folder of their own."""
    everything = sorted(p for p in data.photos("flowers5", data_dir, work).rglob("*.jpg"))
    if n > len(everything):
        raise SystemExit(f"flowers5 has {len(everything)} photos, fewer than {n}")
    folder.mkdir(parents=True, exist_ok=True)
    for p in everything[:n]:
        copy = folder / f"{p.parent.name}-{p.name}"
        if not copy.exists():  # a hard link where it can (the scan skips symbolic links)
            try:
                os.link(p, copy)
            except OSError:
                shutil.copyfile(p, copy)
    return sorted(folder.iterdir())


def build_library(library: Path, photos: list[Path], backbone: str, weights: str) -> None:
    """Index `photos`' folder once (skipped when the library exists), with the ONNX runtime."""
    from imagehash_app.core import backbone as backbone_module
    from imagehash_app.core.library import Library
    from imagehash_app.core.settings import LibrarySettings

    if (library / "catalog.sqlite3").exists():
        return
    # The CPU default for real backbones; the test-only tiny one defaults to PyTorch.
    backbone_module.load_backbone = functools.partial(
        backbone_module.load_backbone, runtime="onnxruntime"
    )
    settings = LibrarySettings(backbone=backbone, weights=weights, device="cpu")
    with Library.open(library, settings=settings) as lib:
        list(lib.index([photos[0].parent]))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(
    code: Path, argv: list[str], env: dict[str, str], cpu: list[float] | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    """Run `python ARGV` with `code`'s package; its wall seconds (its CPU seconds into `cpu`)."""
    env = {**env, "PYTHONPATH": str(code)}
    cpu_before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=env, check=False,
        cwd=code,  # `-m` puts the working folder first on sys.path
    )
    elapsed = time.perf_counter() - start
    if cpu is not None:
        cpu.append(_children_cpu() - cpu_before)
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done


def compile_package(code: Path) -> None:
    """Byte-compile the package, as an installed one is: where PYTHONDONTWRITEBYTECODE is set (as
    here), every launch would otherwise compile each module again."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(code) / "imagehash_app")],
                   check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--weights", default=None, help="state dict file (default: the shared data's)")
    ap.add_argument("--photos", type=int, default=300, help="photos to index")
    ap.add_argument("--generated", action="store_true", help="generated photos, not flowers5")
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each command")
    ap.add_argument("--workdir", type=Path, default=data.DEFAULT_WORK / "cold-query")
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose package runs the commands")
    ap.add_argument("--json", type=Path, default=None)
    data.add_arguments(ap)
    args = ap.parse_args(argv)

    weights = args.weights or str(data.weights(args.data))
    tag = f"{args.backbone}-{Path(weights).name}-{args.photos}{'-gen' if args.generated else ''}"
    work = args.workdir / tag
    # The export cache lives with the benchmark's files, not in the user's cache.
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    if args.generated:
        photos = sorted((work / "photos").glob("*.jpg")) or make_photos(work / "photos", args.photos)
    else:
        photos = real_photos(args.data, args.work, args.photos, work / "photos")
    library = work / "library"
    build_library(library, photos, args.backbone, weights)

    env = {**os.environ}
    query = str(photos[len(photos) // 2])
    status = ["-m", "imagehash_app", "--library", str(library), "status"]
    search = ["-m", "imagehash_app", "--library", str(library), "search", query, "--top", "10"]
    compile_package(args.code)
    run_once(args.code, status, env)  # untimed: the page cache holds the files from here on
    _, first = run_once(args.code, search, env)
    answered = first.stdout.splitlines()
    # The query is a library photo: it must come back first (an empty library answers nothing).
    if len(answered) < 2 or answered[1].split()[-1] != str(Path(query).resolve()):
        raise SystemExit(f"the search did not find its own photo:\n{first.stdout}{first.stderr}")
    times: dict[str, list[float]] = {"status": [], "search": []}
    cpu: dict[str, list[float]] = {"status": [], "search": []}
    for _ in range(args.runs):
        times["status"].append(run_once(args.code, status, env, cpu["status"])[0])
        times["search"].append(run_once(args.code, search, env, cpu["search"])[0])
    _, traced = run_once(args.code, ["-X", "importtime", *search], env)
    torch_imported = any(
        line.rsplit("|", 1)[-1].strip() in ("torch", "torchvision")
        for line in traced.stderr.splitlines() if line.startswith("import time:")
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = med["search"] / med["status"]
    print(f"{args.backbone} ({Path(weights).name}), {len(photos)} photos, {args.runs} runs, "
          f"{os.cpu_count()} cores, code {args.code}")
    print(f"  status  median {med['status']:.3f} s  ({', '.join(f'{t:.2f}' for t in times['status'])})")
    print(f"  search  median {med['search']:.3f} s  ({', '.join(f'{t:.2f}' for t in times['search'])})")
    print(f"  CPU time (user+sys) median: status {med_cpu['status']:.3f} s, search "
          f"{med_cpu['search']:.3f} s ({med_cpu['search'] / med_cpu['status']:.2f}x)")
    print(f"  search / status = {ratio:.2f}x (goal <= 3x); torch imported by search: {torch_imported}")
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "cold_query", "backbone": args.backbone, "weights": Path(weights).name,
            "photos": len(photos), "runs": args.runs, "status_s": times["status"],
            "search_s": times["search"], "status_median_s": med["status"],
            "search_median_s": med["search"], "ratio": ratio, "torch_imported": torch_imported,
            "status_cpu_s": cpu["status"], "search_cpu_s": cpu["search"],
            "cpu_ratio": med_cpu["search"] / med_cpu["status"],
            "load_average": os.getloadavg(),
            "code": str(args.code), "cpus": os.cpu_count(), "machine": platform.platform(),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
