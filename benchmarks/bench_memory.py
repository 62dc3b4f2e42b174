"""Peak memory of decoding many large images and of searching with many queries (run by hand).

Run from the repository root; each measurement runs in a fresh child process and reports the
growth of its peak RSS (VmHWM, Linux) over what it held before the measured call:

    .venv/bin/python -m benchmarks.bench_memory decode --side 9000 --count 24 --threads 16
    .venv/bin/python -m benchmarks.bench_memory decode --side 6000 --count 24 --threads 16 --budget-mp 1e9
    .venv/bin/python -m benchmarks.bench_memory search --photos 300 --queries 20 2000
    .venv/bin/python -m benchmarks.bench_memory search --photos 300 --queries 20 2000 --backbone mobilenet_v2

`decode`: `count` copies of a solid-colour side x side PNG (a few MB on disk) through the
pipeline's decode workers on `threads` threads, under the default pixel budget or `--budget-mp`
megapixels (1e9: in effect none). `search`: a library of `photos` generated photos (weights
"none": random, offline), then `imagehash-app search` with each count of queries (10 photos behind
symbolic links), after a one-query warm-up in the same process.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_RSS = """
from pathlib import Path
def _status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
def start():
    try:  # this source runs in bare child processes: no imports beyond Path
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:  # not Linux: the peak then counts from process start
        return _status("VmRSS")
    return _status("VmRSS")
def growth(before):
    return _status("VmHWM") - before
"""

_DECODE = """
import json, sys, time
from pathlib import Path
from imagehash_app.core import decode_budget
from imagehash_app.core.embedding import DecodeWorkers
from imagehash_app.core.preprocess import Preprocessing

folder, threads, total = Path(sys.argv[1]), int(sys.argv[2]), int(float(sys.argv[3]))
budget = decode_budget.PixelBudget(total)
decode_budget.use(budget)
prep = Preprocessing(256, 224, "bilinear")
paths = sorted(folder.glob("*.png"))
pool = DecodeWorkers(threads, processes=False)
pool.results(pool.submit(paths[:1], prep, 224), paths[:1], prep, 224)
budget.reset_peak()
before = start()
t = time.perf_counter()
futures = [(p, pool.submit([p], prep, 224)) for p in paths]
results = [pool.results(f, [p], prep, 224)[0] for p, f in futures]
pool.close()
print(json.dumps({
    "rss_growth_mb": round(growth(before) / 2**20), "budget_peak_mp": budget.peak / 1e6,
    "budget_mp": total / 1e6, "decoded": sum(not isinstance(r, str) for r in results),
    "seconds": round(time.perf_counter() - t, 1),
}))
"""

_SEARCH = """
import contextlib, io, json, sys, time
from pathlib import Path
from imagehash_app.cli import main

lib, n = sys.argv[1], int(sys.argv[3])
queries = sorted(str(p) for p in Path(sys.argv[2]).iterdir())[:n]
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["--library", lib, "search", queries[0]]) == 0
before = start()
t = time.perf_counter()
with contextlib.redirect_stdout(open(os.devnull, "w")):
    assert main(["--library", lib, "search", *queries]) == 0
print(json.dumps({"queries": n, "rss_growth_mb": round(growth(before) / 2**20),
                  "seconds": round(time.perf_counter() - t, 1)}))
"""


def _child(script: str, *args: object) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", "import os\n" + _RSS + script, *map(str, args)],
        capture_output=True, text=True, env=env, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_decode(args: argparse.Namespace, work: Path) -> list[dict]:
    from PIL import Image

    from imagehash_app.core.decode_budget import DECODE_BUDGET_PIXELS

    folder = work / "png"
    folder.mkdir()
    first = folder / "big00.png"
    Image.new("RGB", (args.side, args.side), (30, 120, 200)).save(first)
    for i in range(1, args.count):
        shutil.copyfile(first, folder / f"big{i:02d}.png")
    total = args.budget_mp * 1e6 if args.budget_mp else DECODE_BUDGET_PIXELS
    return [_child(_DECODE, folder, args.threads, total)]


def bench_search(args: argparse.Namespace, work: Path) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from photos import make_photo

    from imagehash_app.core.library import Library
    from imagehash_app.core.settings import LibrarySettings

    photos = work / "photos"
    photos.mkdir()
    for i in range(args.photos):
        make_photo(i, (64, 48)).save(photos / f"{i:04d}.jpg", quality=90)
    settings = LibrarySettings(
        backbone=args.backbone, weights="none", bits=32, device="cpu", batch_size=32, threads=2
    )
    with Library.open(work / "lib", settings=settings) as lib:
        collections.deque(lib.index([photos]), maxlen=0)  # run the index to the end
    queries = work / "queries"
    queries.mkdir()
    for i in range(max(args.queries)):
        (queries / f"q{i:05d}.jpg").symlink_to(photos / f"{i % 10:04d}.jpg")
    return [_child(_SEARCH, work / "lib", queries, n) for n in args.queries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("decode")
    d.add_argument("--side", type=int, default=9000)
    d.add_argument("--count", type=int, default=24)
    d.add_argument("--threads", type=int, default=16)
    d.add_argument("--budget-mp", type=float, default=0, help="0: the default budget")
    s = sub.add_parser("search")
    s.add_argument("--photos", type=int, default=300)
    s.add_argument("--queries", type=int, nargs="+", default=[20, 2000])
    s.add_argument("--backbone", default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runner = bench_decode if args.what == "decode" else bench_search
        for row in runner(args, Path(tmp)):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
