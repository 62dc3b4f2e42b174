"""Launch → first results: a new process opens the real window, a photo is dropped as soon as it
shows, and the clock stops when the results grid is painted (goal: ≤ 1 s on 2 cores).

    QT_QPA_PLATFORM=offscreen nice -n 5 .venv/bin/python -m benchmarks.bench_first_drop \\
        --weights ../shared/data/weights/mobilenet_v2-imagenet.pth --real 1000 \\
        --sizes 1000,100000 --runs 5 [--json OUT]

Library: `--real` photos of the shared flowers5 set are indexed once with the chosen backbone (the
writer checks the ONNX export and records it for queries), then the catalogue is topped up to each
size with synthetic photos and random codes (`bench_gui_search.top_up`), smallest size first.

Each run is a new Python process (files in the page cache: one untimed launch per size first; the
package byte-compiled first, as an installed one is). Its
clock starts in this process just before the spawn; the child builds `MainWindow` as
`imagehash-app-gui` does (file watcher on; no rescan at start, which would drop the synthetic
photos), shows it, and from the next turn of the event loop sends a real drag-enter and drop of a
library photo. It reports: window shown, results painted (the `searchFinished` signal, then a
synchronous repaint of the grid), the drop → painted part, the CPU time the process used until
then (user + sys: a machine shared with other work inflates it less than the wall time), and
whether PyTorch was imported.
Thumbnails then stream in and are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import data

REPO = Path(__file__).resolve().parents[1]
T0_ENV = "BENCH_FIRST_DROP_T0_NS"


def child(library: Path, query: Path, ini: Path) -> int:
    """One launch: window, drop as soon as it shows, results painted; one JSON line out."""
    t0 = int(os.environ[T0_ENV])
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QSettings, QTimer

    from benchmarks.bench_gui_search import drop
    from imagehash_app.gui.app import create_application
    from imagehash_app.gui.main_window import MainWindow

    def since_start() -> float:
        return (time.time_ns() - t0) / 1e9

    app = create_application(sys.argv[:1])
    window = MainWindow(
        library, qsettings=QSettings(str(ini), QSettings.Format.IniFormat), watch=True, rescan=False
    )
    got: list[object] = []
    window.searchFinished.connect(got.append)
    marks: dict[str, float] = {}

    def inject() -> None:
        marks["shown_s"] = since_start()
        drop(window, query)

    window.resize(1280, 800)
    window.show()
    QTimer.singleShot(0, inject)
    deadline = time.monotonic() + 300
    while not got:
        QCoreApplication.processEvents()
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for results")
        time.sleep(0.0005)
    window.results_view.viewport().repaint()
    marks["painted_s"] = since_start()
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all its threads, up to the painted grid
    marks["cpu_s"] = usage.ru_utime + usage.ru_stime
    outcome = got[0]
    first = str(outcome.results[0].path) if outcome.results else ""
    print(json.dumps({
        **marks, "drop_to_painted_s": marks["painted_s"] - marks["shown_s"],
        "results": len(outcome.results), "first": first,
        "torch_imported": "torch" in sys.modules,
    }), flush=True)
    window.close()
    app.processEvents()
    return 0


def launch(library: Path, query: Path, ini: Path, code: Path = REPO) -> dict:
    """One timed launch; `code`: the checkout whose package the window comes from (this file
    runs by its path, so that another checkout's `imagehash_app` and `benchmarks` are imported)."""
    env = {**os.environ, "PYTHONPATH": str(code), "QT_QPA_PLATFORM": "offscreen"}
    env[T0_ENV] = str(time.time_ns())
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(library), str(query),
         str(ini)],
        capture_output=True, text=True, env=env, cwd=code, check=False, timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"the launch failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if row["first"] != str(query.resolve()):
        raise SystemExit(f"the first result is not the dropped library photo: {row}")
    return row


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--child":
        return child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--weights", default=None, help="state dict file (default: the shared data's)")
    ap.add_argument("--real", type=int, default=1000, help="real photos indexed (flowers5)")
    ap.add_argument("--generated", action="store_true", help="generated photos, not flowers5")
    ap.add_argument("--sizes", default="1000,100000", help="library sizes, comma-separated")
    ap.add_argument("--runs", type=int, default=5, help="timed launches per size")
    ap.add_argument("--workdir", type=Path, default=data.DEFAULT_WORK / "first-drop")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose window is launched")
    data.add_arguments(ap)
    args = ap.parse_args(argv)

    from benchmarks.bench_cold_query import build_library, compile_package, real_photos
    from benchmarks.bench_gui_search import make_photos, top_up

    weights = args.weights or str(data.weights(args.data))
    tag = f"{args.backbone}-{Path(weights).name}-{args.real}{'-gen' if args.generated else ''}"
    work = args.workdir / tag
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # the export, with the benchmark's files
    if args.generated:
        photos = sorted((work / "photos").glob("*.jpg")) or make_photos(work / "photos", args.real)
    else:
        photos = real_photos(args.data, args.work, args.real, work / "photos")
    library = work / "library"
    t = time.perf_counter()
    build_library(library, photos, args.backbone, weights)
    print(f"library ready ({len(photos)} real photos) in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    compile_package(args.code)
    query = photos[len(photos) // 3]
    rows = []
    for size in sorted(int(s) for s in args.sizes.split(",")):
        top_up(library, size)
        ini = work / "gui.ini"
        launch(library, query, ini, args.code)  # untimed: page cache; a graph built is saved
        runs = [launch(library, query, ini, args.code) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("shown_s", "painted_s", "drop_to_painted_s", "cpu_s")}
        rows.append({"photos": size, "runs": runs, **{f"median_{k}": v for k, v in med.items()},
                     "torch_imported": any(r["torch_imported"] for r in runs)})
        each = ", ".join(f"{r['painted_s']:.2f}" for r in runs)
        print(f"{size:>9,} photos: launch → results painted median {med['painted_s']:.3f} s "
              f"(window shown {med['shown_s']:.3f} s, drop → painted {med['drop_to_painted_s']:.3f} s; "
              f"each: {each}); "
              f"CPU {med['cpu_s']:.3f} s; torch imported: {rows[-1]['torch_imported']}")
    print(f"({args.backbone}, {Path(weights).name}, {args.real} real photos, {os.cpu_count()} cores, "
          f"{platform.machine()})")
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "first_drop", "backbone": args.backbone, "weights": Path(weights).name,
            "real_photos": len(photos), "cpus": os.cpu_count(), "machine": platform.platform(),
            "load_average": os.getloadavg(), "code": str(args.code),
            "rows": rows,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
