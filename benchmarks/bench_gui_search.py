"""Time from dropping a photo on the window to its results shown, at 1 000, 10 000 and 100 000
photos by default, and at 1 000 000 with `--sizes 1000,1000000` (peak memory: docs/results-search.md).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui_search.py \\
        --backbone mobilenet_v2 --weights ../shared/data/weights/mobilenet_v2-imagenet.pth [--json OUT]

What is measured, per library size: a real QDropEvent carrying the photo's file URL is sent to the
real MainWindow; the clock stops when the results grid has been repainted with the new results
(`searchFinished`, then a synchronous repaint of the grid). That covers decoding the query photo,
the backbone (warm: a first query is made and not counted), the Hamming scan over every code, the
decoder re-rank of the top R and the Qt model/view update. Thumbnails then stream in off the GUI
thread and are not counted.

Library: a few real photos are indexed with the chosen backbone (so the hasher and the query's own
codes are real), then the catalogue is topped up to the target size with synthetic photos: image
rows and random codes written through the catalogue API (codes may be synthetic at these sizes; the
search cost does not depend on their values). Prints a table and, with --json, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image, ImageDraw  # noqa: E402
from PySide6.QtCore import QCoreApplication, QMimeData, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from imagehash_app.core import search  # noqa: E402
from imagehash_app.core.codes import words_for  # noqa: E402
from imagehash_app.core.library import Library  # noqa: E402
from imagehash_app.core.settings import LibrarySettings  # noqa: E402
from imagehash_app.core.store import CATALOG_FILE, Catalog  # noqa: E402
from imagehash_app.gui.app import create_application  # noqa: E402
from imagehash_app.gui.main_window import MainWindow  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
REAL_PHOTOS = 48


def make_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Distinct photo-like JPEGs (gradient + shapes), 320×240."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, 320)[None, :, None]
        base = (c0 * (1 - t) + c1 * t).repeat(240, axis=0).astype(np.uint8)
        img = Image.fromarray(base, "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 300, 2))
            w, h = (int(v) for v in rng.integers(20, 160, 2))
            draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        path = folder / f"real_{i:04d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def top_up(library: Path, target: int, seed: int = 0) -> int:
    """Add synthetic indexed photos with random codes until the active model has `target` codes."""
    cat = Catalog.open(library / CATALOG_FILE)
    try:
        model = cat.active_model()
        assert model is not None, "index some photos first"
        words = words_for(model.bits)
        have = cat.conn.execute(
            "SELECT COUNT(*) FROM codes WHERE model_id = ?", (model.id,)
        ).fetchone()[0]
        missing = target - have
        if missing <= 0:
            return have
        synthetic = library.parent / "synthetic"
        synthetic.mkdir(exist_ok=True)
        rng = np.random.default_rng(seed + target)
        with cat.transaction() as conn:
            folder = cat.folder_by_path(synthetic) or cat.add_folder(synthetic)
            start = conn.execute("SELECT COALESCE(MAX(id), 0) FROM images").fetchone()[0] + 1
            ids = list(range(start, start + missing))
            now = time.time()
            conn.executemany(
                "INSERT INTO images(id, folder_id, rel_path, size, mtime_ns, status, indexed_at) "
                "VALUES (?, ?, ?, 1000, 0, 'indexed', ?)",
                [(i, folder.id, f"s{i:07d}.jpg", now) for i in ids],
            )
            codes = rng.integers(0, 2**63, size=(missing, words), dtype=np.int64).astype(np.uint64)
            cat.put_codes(model.id, ids, codes)
        return target
    finally:
        cat.close()


def drop(window: MainWindow, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    center = window.rect().center()  # a drag-enter takes a QPoint, a drop a QPointF
    args = (
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, QDragEnterEvent(center, *args))
    QApplication.sendEvent(window, QDropEvent(QPointF(center), *args))


CPU_SECONDS: list[float] = []  # per timed drop: this process's CPU time (all threads)


def time_drop(window: MainWindow, path: Path, timeout_s: float = 300.0) -> float:
    """Seconds from the drop event to the grid repainted with the results (and the process's
    CPU seconds meanwhile appended to `CPU_SECONDS`: a shared machine inflates them less)."""
    got: list[object] = []
    window.searchFinished.connect(got.append)
    try:
        cpu = time.process_time()
        start = time.perf_counter()
        drop(window, path)
        end = start + timeout_s
        while not got:
            QCoreApplication.processEvents()
            if time.perf_counter() > end:
                raise SystemExit("timed out waiting for results")
            time.sleep(0.0005)
        window.results_view.viewport().repaint()
        elapsed = time.perf_counter() - start
        CPU_SECONDS.append(time.process_time() - cpu)
        return elapsed
    finally:
        window.searchFinished.disconnect(got.append)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--top", type=int, default=40, help="results shown (the window's default)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--stage1", choices=("auto", "scan"), default="auto",
        help="stage 1 as the app chooses it (auto: the exact scan whenever R > "
        f"{search.GRAPH_MAX_K}, as with the default R = 200; else a graph from "
        f"{search.GRAPH_MIN_SIZE:,} codes, built once and saved) or the exact scan at every size",
    )
    args = parser.parse_args(argv)
    if args.stage1 == "scan":  # read by search.choose_method when the window's reader loads codes
        search.GRAPH_MIN_SIZE = sys.maxsize

    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gui-"))
    library = work / "library"
    photos = make_photos(work / "photos", REAL_PHOTOS)
    t0 = time.perf_counter()
    with Library.open(
        library, settings=LibrarySettings(backbone=args.backbone, weights=args.weights)
    ) as lib:
        deque(lib.index([work / "photos"]), maxlen=0)  # run the index to the end
        settings = lib.settings
    print(
        f"indexed {REAL_PHOTOS} real photos in {time.perf_counter() - t0:.1f} s "
        f"({settings.backbone}, {settings.bits} bits, R={settings.rerank_depth})",
        file=sys.stderr,
    )

    app = create_application(sys.argv[:1])
    rows = []
    for size in sizes:
        top_up(library, size)
        window = MainWindow(
            library,
            qsettings=QSettings(str(work / "gui.ini"), QSettings.Format.IniFormat),
            watch=False,
            rescan=False,
        )
        window.count_spin.setValue(args.top)
        window.resize(1280, 800)
        window.show()
        warm = time_drop(window, photos[0])  # loads backbone and codes: not counted
        del CPU_SECONDS[:]
        times = [time_drop(window, photos[1 + i % (len(photos) - 1)]) for i in range(args.repeats)]
        cpu_ms = round(statistics.median(CPU_SECONDS) * 1000, 1)
        outcome = window.query
        assert (
            outcome is not None
            and outcome.results[0].path
            == photos[(args.repeats - 1) % (len(photos) - 1) + 1].resolve()
        )
        window.close()
        app.processEvents()
        rows.append(
            {
                "photos": size,
                "median_ms": round(statistics.median(times) * 1000, 1),
                "min_ms": round(min(times) * 1000, 1),
                "max_ms": round(max(times) * 1000, 1),
                "first_query_ms": round(warm * 1000, 1),
                "cpu_median_ms": cpu_ms,
                "load_average": os.getloadavg(),
                "repeats": args.repeats,
            }
        )
        print(f"{size:>8,} photos: median {rows[-1]['median_ms']} ms (CPU {cpu_ms} ms)", file=sys.stderr)

    print(
        f"\nDrop → results shown ({settings.backbone}, {settings.bits}-bit codes, R={settings.rerank_depth}, "
        f"stage 1 {args.stage1}, "
        f"top {args.top}, {os.cpu_count()} CPU cores, {platform.machine()})"
    )
    print(f"{'photos':>9} | {'median':>9} | {'min':>9} | {'max':>9} | {'first (cold)':>12} | {'CPU median':>10}")
    print("-" * 75)
    for r in rows:
        print(
            f"{r['photos']:>9,} | {r['median_ms']:>6.1f} ms | {r['min_ms']:>6.1f} ms | "
            f"{r['max_ms']:>6.1f} ms | {r['first_query_ms']:>9.1f} ms | {r['cpu_median_ms']:>7.1f} ms"
        )
    result = {
        "benchmark": "gui_drop_to_results",
        "stage1": args.stage1,
        "backbone": settings.backbone,
        "bits": settings.bits,
        "rerank_depth": settings.rerank_depth,
        "top": args.top,
        "cpu_cores": os.cpu_count(),
        "rows": rows,
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
