"""Launch the real window, drop a photo, wait for its results, quit — N times, counting crashes.

    nice -n 5 .venv/bin/python benchmarks/cycle_launch.py --cycles 300 [--photos 150] \\
        [--out benchmarks/results/cycle_launch] [--display :9]

Each cycle is a new process (`imagehash-app-gui --library LIB`) on an X server (Xvfb is started on
`--display` unless one answers there). The program drops a real photo on itself through its
environment-driven test hook (imagehash_app/gui/drop_hook.py: a QDragEnterEvent then a QDropEvent
carrying the photo's file URL, delivered as soon as the event loop runs, which is the moment a
person's drop could land) and quits once the results are painted. At start the window also brings
the library up to date (a scan on the writer thread), as every launch does, so the first search
races with that, with the reader's first backbone load and with the thumbnail pool.

A cycle is a crash when the process ends by a signal (or with no results line); its faulthandler
log (imagehash_app/failures.py, `<log dir>/faults/window-<pid>.log`) and its stderr are copied to
`--out`. The library is `--photos` real flowers5 photos (benchmarks/data.py), the shared
MobileNetV2 weights, indexed once before the first cycle. Writes `<out>/summary.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import data  # noqa: E402

LAUNCH = "import sys; from imagehash_app.gui.app import main; sys.exit(main(sys.argv[1:]))"


def build_library(library: Path, photos: list[Path], weights: Path) -> None:
    """A library of `photos` (copied into one folder), indexed with the shared weights."""
    from imagehash_app.core.library import Library
    from imagehash_app.core.settings import LibrarySettings

    if (library / "catalog.sqlite3").is_file():
        return
    folder = library.parent / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        shutil.copy2(p, folder / f"{p.parent.name}_{p.name}")
    settings = LibrarySettings(backbone="mobilenet_v2", weights=str(weights))
    with Library.open(library, settings=settings) as lib:
        lib.add_folder(folder)
        list(lib.update(None))


def ensure_display(display: str) -> subprocess.Popen | None:
    """Start Xvfb on `display` unless an X server answers there."""
    env = {**os.environ, "DISPLAY": display}
    if subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0:
        return None
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        if subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0:
            return server
        time.sleep(0.1)
    server.kill()
    raise SystemExit(f"Xvfb did not start on {display}")


def one_cycle(library: Path, photo: Path, display: str, work: Path, timeout: float) -> dict:
    """Launch, drop `photo`, wait, quit; what happened."""
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    env = {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "xcb",
        "IMAGEHASH_APP_DROP": str(photo),
        "IMAGEHASH_APP_QUIT_AFTER_RESULTS": "1",
        "IMAGEHASH_APP_LOG_DIR": str(logs),
        "XDG_CONFIG_HOME": str(work / "config"),  # the window's QSettings, not the person's
        "PYTHONPATH": str(REPO),
    }
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", LAUNCH, "--library", str(library)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, err = "timeout", (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    wall = time.perf_counter() - start
    line = next((ln for ln in err.splitlines() if ln.startswith("drop-hook:")), "")
    results = int(line.split("results=")[1].split()[0]) if "results=" in line else None
    ms = float(line.split("ms=")[1].split()[0]) if "ms=" in line else None
    faults = sorted((logs / "faults").glob("*.log")) if (logs / "faults").is_dir() else []
    return {"rc": rc, "wall_s": round(wall, 2), "results": results, "drop_to_results_ms": ms,
            "hook": line, "stderr": err, "faults": [f.read_text(errors="replace") for f in faults]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--photos", type=int, default=150, help="real flowers5 photos in the library")
    parser.add_argument("--display", default=":9")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per cycle")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cycle_launch")
    data.add_arguments(parser)
    args = parser.parse_args(argv)

    flowers = sorted(data.photos("flowers5", args.data, args.work).rglob("*.jpg"))
    in_library = flowers[:: max(1, len(flowers) // args.photos)][: args.photos]
    queries = [p for p in flowers[7::53] if p not in set(in_library)]  # photos from outside it
    work = Path(tempfile.mkdtemp(prefix="cycle-launch-"))
    library = args.work / f"cycle-launch-{args.photos}" / "library"
    build_library(library, in_library, data.weights(args.data))
    args.out.mkdir(parents=True, exist_ok=True)
    server = ensure_display(args.display)
    outcomes: list[dict] = []
    try:
        for i in range(args.cycles):
            out = one_cycle(library, queries[i % len(queries)], args.display, work, args.timeout)
            crashed = not isinstance(out["rc"], int) or out["rc"] != 0 or out["results"] is None
            if crashed:
                stem = args.out / f"crash-{i:04d}"
                stem.with_suffix(".stderr.txt").write_text(out["stderr"])
                for k, text in enumerate(out["faults"]):
                    stem.with_name(f"{stem.name}-fault{k}.log").write_text(text)
            outcomes.append({k: v for k, v in out.items() if k not in ("stderr", "faults")}
                            | {"cycle": i, "crashed": crashed})
            print(f"cycle {i + 1}/{args.cycles}: rc={out['rc']} results={out['results']} "
                  f"{out['drop_to_results_ms']} ms, {out['wall_s']} s{'  CRASH' if crashed else ''}",
                  flush=True)
            summary = summarise(outcomes, args.photos)  # kept current: a run may be stopped early
            (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(outcomes, args.photos)
    print(json.dumps({k: v for k, v in summary.items() if k != "cycles_detail"}))
    return 0


def summarise(outcomes: list[dict], photos: int) -> dict:
    """Counts, exits and medians of the cycles so far."""
    times = [o["drop_to_results_ms"] for o in outcomes if o["drop_to_results_ms"] is not None]
    return {
        "cycles": len(outcomes),
        "crashes": sum(o["crashed"] for o in outcomes),
        "by_exit": {str(rc): sum(1 for o in outcomes if str(o["rc"]) == str(rc))
                    for rc in sorted({str(o["rc"]) for o in outcomes})},
        "photos": photos,
        "drop_to_results_ms_median": statistics.median(times) if times else None,
        "wall_s_median": statistics.median(o["wall_s"] for o in outcomes) if outcomes else None,
        "cycles_detail": outcomes,
    }


if __name__ == "__main__":
    raise SystemExit(main())
