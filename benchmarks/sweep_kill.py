"""Kill -9 sweep: `index` killed at many points of a library's first run, then run again, must
leave the library an uninterrupted run leaves (issue 12, item 6).

Each round makes a new library, runs `imagehash-app index` in a process of its own and kills it
(SIGKILL): at a named point of the indexer (IMAGEHASH_APP_TEST_KILL_AT: after the scan, after
the Nth batch, right after a fit falls due, with its version saved but not registered, inside
the registering transaction, after the switch) or after a random delay. Then it checks the
catalogue (PRAGMA quick_check), runs `index` again to the end and compares with an uninterrupted
library: the versions (method, photos trained on), every code byte for byte, and the top-10 of
each query. Two uninterrupted libraries are compared first (the baseline: they must match).

The defaults are the issue's case: 1 200 photos, batches of 32, URPH due at 1 000 photos (so at
1 024), and a reservoir of 1 100 photos so that the run also waits for the fit and then samples.

    python -m benchmarks.sweep_kill --photos DIR --rounds 20 --json /tmp/sweep_kill.json
    python -m benchmarks.sweep_kill --generate 1200 --rounds 20 --json /tmp/sweep_kill.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagehash_app.core.kill_points import TEST_KILL_ENV
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

ROOT = Path(__file__).resolve().parents[1]
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
# Named points, each passed once per run that trains once (see indexer.py `_kill_point`).
NAMED_POINTS = ["scanned", "due:1", "saved:1", "encode:1", "activated:1"]


def generated_photos(out: Path, count: int, seed: int) -> None:
    """`count` small JPEGs: smooth random colour fields with grain (fast to make and decode)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(base, "RGB").resize((96, 96), Image.BICUBIC)
        arr = np.asarray(img, np.float32) + rng.normal(0, 8, size=(96, 96, 3))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out / f"p{i:05d}.jpg", quality=90)


def copied_photos(source: Path, out: Path, count: int) -> None:
    """The first `count` photos under `source` (sorted), copied flat into `out`."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)[:count]
    if len(files) < count:
        raise SystemExit(f"{source} holds {len(files)} photos, fewer than --count {count}.")
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        shutil.copyfile(path, out / f"p{i:05d}{path.suffix.lower()}")


def index_command(lib: Path, photos: Path) -> list[str]:
    return [sys.executable, "-m", "imagehash_app", "--library", str(lib), "index", str(photos)]


APP_ROOT = ROOT  # whose code `index` runs (--app-root: e.g. a checkout of older code, to compare)


def run_index(lib: Path, photos: Path, point: str | None = None, delay: float | None = None) -> dict:
    """`index` in its own process, killed at `point` or after `delay` seconds (if still running)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(APP_ROOT), os.environ.get("PYTHONPATH")) if p
    )}
    env.pop(TEST_KILL_ENV, None)
    if point:
        env[TEST_KILL_ENV] = point
    started = time.perf_counter()
    child = subprocess.Popen(
        index_command(lib, photos), cwd=APP_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    if delay is not None:
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
    _, err = child.communicate()
    return {
        "rc": child.returncode, "killed": child.returncode == -signal.SIGKILL,
        "seconds": round(time.perf_counter() - started, 2), "stderr": err[-1000:],
    }


def answers(lib: Path, photos: Path, queries: list[Path]) -> dict[str, Any]:
    """Catalogue integrity, versions, codes and the top-10 of each query."""
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        models = conn.execute("SELECT id, method, train_size, active FROM models ORDER BY id").fetchall()
        codes = {
            (model, path): code for model, path, code in conn.execute(
                "SELECT c.model_id, i.rel_path, c.code FROM codes c JOIN images i ON i.id = c.image_id"
            )
        }
    finally:
        conn.close()
    with Library.open(lib, read_only=True) as library:
        top = [
            [r.path.relative_to(photos).as_posix() for r in resp.results]
            for resp in library.search(queries, top_k=10)
        ]
    order = {m[0]: n for n, m in enumerate(models)}  # versions compared by position, not row id
    return {
        "quick_check": check,
        "models": [list(m[1:]) for m in models],
        "codes": {(order[m], p): c for (m, p), c in codes.items()},
        "top10": top,
    }


def compare(got: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    same_codes = sum(1 for k, c in ref["codes"].items() if got["codes"].get(k) == c)
    same_top = sum(1 for a, b in zip(got["top10"], ref["top10"], strict=True) if a == b)
    return {
        "quick_check": got["quick_check"],
        "models": got["models"],
        "same_models": got["models"] == ref["models"],
        "same_codes": same_codes, "codes": len(ref["codes"]),
        "extra_codes": len(set(got["codes"]) - set(ref["codes"])),
        "same_top10": same_top, "queries": len(ref["top10"]),
        "identical": got["models"] == ref["models"] and got["codes"] == ref["codes"]
        and got["top10"] == ref["top10"],
    }


def print_row(row: dict[str, Any]) -> None:
    print(f"{row['round']:>5}  {row['kill']:<14.14} {row['killed']!s:<6} "
          f"{row.get('check_after_kill', row['quick_check']):<5} {row['same_models']!s:<9} "
          f"{row['same_codes']:>5}/{row['codes']:<5} {row['same_top10']:>3}/{row['queries']:<3}  "
          f"{row['identical']}", flush=True)


def kill_plan(rounds: int, batches: int, rng: random.Random, timed_only: bool = False) -> list[dict]:
    """Every named point once, then kills after random batches or at a random moment (a share
    of an uninterrupted run's time), shuffled."""
    plan = [] if timed_only else [{"point": p} for p in NAMED_POINTS]
    while len(plan) < rounds:
        if rng.random() < 0.5 and not timed_only:
            plan.append({"point": f"batch:{rng.randint(1, max(1, batches - 1))}"})
        else:
            plan.append({"share": round(rng.uniform(0.05, 0.95), 3)})
    rng.shuffle(plan)
    return plan[:rounds]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--photos", type=Path, help="a folder of real photos (the first --count, sorted)")
    src.add_argument("--generate", type=int, metavar="N", help="generate N small photos instead")
    ap.add_argument("--count", type=int, default=1200, help="photos taken from --photos")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="of the kill plan and generated photos")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: the backbone and fits on the GPU "
                    "(fits beside embedding then run in a process of their own)")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-min", type=int, default=1000)
    ap.add_argument("--reservoir", type=int, default=1100)
    ap.add_argument("--epochs", type=int, default=10, help="URPH epochs (training time per fit)")
    ap.add_argument("--app-root", type=Path, help="run `index` from this checkout's code (older "
                    "code has no kill points: use with --timed-only)")
    ap.add_argument("--timed-only", action="store_true", help="kill at random moments only")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, help="write the rounds and the summary here")
    args = ap.parse_args(argv)
    global APP_ROOT
    APP_ROOT = (args.app_root or ROOT).resolve()

    work = args.work or Path(tempfile.mkdtemp(prefix="sweep_kill-"))
    photos = work / "photos"
    if not photos.is_dir():
        if args.generate:
            generated_photos(photos, args.generate, args.seed)
        else:
            copied_photos(args.photos, photos, args.count)
    all_photos = sorted(photos.iterdir())
    queries = random.Random(args.seed).sample(all_photos, min(args.queries, len(all_photos)))
    settings = LibrarySettings(
        backbone=args.backbone, weights=args.weights, bits=args.bits, device=args.device,
        batch_size=args.batch_size, train_min=args.train_min, reservoir_size=args.reservoir,
        hasher_params={"urph": {"epochs": args.epochs}},
    )

    def new_library(name: str) -> Path:
        lib = work / name
        shutil.rmtree(lib, ignore_errors=True)
        Library.open(lib, settings=settings).close()
        return lib

    ref_lib = new_library("uninterrupted")
    ref_run = run_index(ref_lib, photos)
    if ref_run["rc"] != 0:
        raise SystemExit(f"the uninterrupted run failed: {ref_run['stderr']}")
    ref = answers(ref_lib, photos, queries)
    print(f"{len(all_photos)} photos, {len(queries)} queries; uninterrupted run "
          f"{ref_run['seconds']} s, versions {ref['models']}", flush=True)
    print(f"{'round':>5}  {'kill at':<14} {'killed':<6} {'check':<5} {'versions':<9} "
          f"{'codes':>11} {'top-10':>7}  identical", flush=True)
    rows: list[dict[str, Any]] = []
    again = new_library("uninterrupted-2")
    again_run = run_index(again, photos)
    rows.append({"round": 0, "kill": "none (2nd run)", "killed": False,
                 **compare(answers(again, photos, queries), ref)})
    print_row(rows[-1])
    batches = -(-len(all_photos) // args.batch_size)
    plan = kill_plan(args.rounds, batches, random.Random(args.seed), args.timed_only)
    # The machine's load changes: a timed kill takes its share of the quickest whole run seen.
    whole = min(ref_run["seconds"], again_run["seconds"])
    for n, kill in enumerate(plan, 1):
        lib = new_library("killed")
        if "share" in kill:
            kill["delay"] = round(kill["share"] * whole, 2)
        killed = run_index(lib, photos, kill.get("point"), kill.get("delay"))
        if not killed["killed"]:
            whole = min(whole, killed["seconds"])
        conn = sqlite3.connect(lib / "catalog.sqlite3")
        after_kill = conn.execute("PRAGMA quick_check").fetchone()[0]
        conn.close()
        resumed = run_index(lib, photos)
        row = {
            "round": n, "kill": kill.get("point") or f"after {kill['delay']} s",
            "killed": killed["killed"], "check_after_kill": after_kill, "resume_rc": resumed["rc"],
            **compare(answers(lib, photos, queries), ref),
        }
        rows.append(row)
        print_row(row)
    kills = rows[1:]
    summary = {
        "photos": len(all_photos), "queries": len(queries), "rounds": len(kills),
        "killed": sum(r["killed"] for r in kills),
        "intact_after_kill": sum(r["check_after_kill"] == "ok" for r in kills),
        "identical": sum(r["identical"] for r in kills),
        "same_top10_queries": sum(r["same_top10"] for r in kills),
        "all_queries": sum(r["queries"] for r in kills),
        "baseline_identical": rows[0]["identical"],
        "reference_versions": ref["models"], "reference_seconds": ref_run["seconds"],
        "settings": settings.to_dict(), "command": " ".join(sys.argv), "app_root": str(APP_ROOT),
    }
    print(f"identical answers after a kill: {summary['identical']}/{summary['rounds']} rounds "
          f"({summary['killed']} killed before the end; catalogue intact after the kill "
          f"{summary['intact_after_kill']}/{summary['rounds']}; top-10 same for "
          f"{summary['same_top10_queries']}/{summary['all_queries']} queries); two uninterrupted "
          f"runs identical: {summary['baseline_identical']}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rows}, indent=1) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["identical"] == summary["rounds"] and summary["baseline_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
