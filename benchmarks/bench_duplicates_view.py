"""How live the duplicates view's threshold slider is: one slider step, from the value change to
the groups shown again, for reports of 1 000, 10 000 and 100 000 photos.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_duplicates_view.py [--json OUT]

A step regroups every scored pair (`DuplicateReport.at`: union-find and the keeper rule over all
groups) and rebuilds the first page of group widgets (`duplicates_view.PAGE` groups, thumbnails
from a warm pixmap cache, as after the first look). Reports are synthetic: a third of the photos
in groups of 2 to 6 copies, each group a chain of pairs scored 0.55-1.0, plus as many weak
pairs (0.4-0.55) between other photos, as a search keeps for the slider to reach.
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
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

from imagehash_app.core.duplicates.report import ScoredPair  # noqa: E402
from imagehash_app.core.library import CopyPhoto, DuplicateReport  # noqa: E402
from imagehash_app.gui.duplicates_view import DuplicatesDialog  # noqa: E402
from imagehash_app.gui.workers import EngineThread  # noqa: E402


def synthetic_report(n: int, seed: int = 0) -> DuplicateReport:
    rng = np.random.default_rng(seed)
    photos = [
        CopyPhoto(Path(f"/photos/{i // 1000:03d}/{i:06d}.jpg"), int(rng.integers(50_000, 5_000_000)),
                  int(rng.choice([1024, 2048, 4032])), int(rng.choice([768, 1536, 3024])), "JPEG",
                  1.6e9 + float(rng.integers(0, 10**8)))
        for i in range(n)
    ]
    pairs: list[ScoredPair] = []
    order = rng.permutation(n)
    at = 0
    while at < n // 3:
        size = int(rng.integers(2, 7))
        members = order[at: at + size]
        for a, b in zip(members[:-1], members[1:], strict=False):
            pairs.append(ScoredPair(int(min(a, b)), int(max(a, b)), float(rng.uniform(0.55, 1.0))))
        at += size
    for _ in range(len(pairs)):
        a, b = (int(x) for x in rng.choice(order[n // 3:], 2, replace=False))
        pairs.append(ScoredPair(min(a, b), max(a, b), float(rng.uniform(0.4, 0.55))))
    return DuplicateReport.build(photos, pairs, threshold=0.7, floor=0.4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="bench-dup-view-"))
    threads = [EngineThread(lambda: None, "unused-writer"), EngineThread(lambda: None, "unused-reader")]
    rows = []
    print("| photos | pairs | groups at 0.70 | slider step: regroup | + rebuild the page | total (median) |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        report = synthetic_report(n)
        dialog = DuplicatesDialog(tmp / "library", *threads)
        dialog.set_report(report)
        dialog.show()
        app.processEvents()
        regroup, rebuild = [], []
        values = [70, 71, 72, 71, 70, 69, 70] * (args.steps // 7 + 1)
        for value in values[: args.steps]:
            t0 = time.perf_counter()
            dialog.report = dialog.report.at(value / 100)
            t1 = time.perf_counter()
            dialog._rebuild()
            app.processEvents()
            t2 = time.perf_counter()
            regroup.append(t1 - t0)
            rebuild.append(t2 - t1)
        row = {"photos": n, "pairs": len(report.pairs), "groups": len(report.groups),
               "regroup_ms": 1000 * statistics.median(regroup), "rebuild_ms": 1000 * statistics.median(rebuild)}
        row["total_ms"] = row["regroup_ms"] + row["rebuild_ms"]
        rows.append(row)
        print(f"| {n:,} | {row['pairs']:,} | {row['groups']:,} | {row['regroup_ms']:.0f} ms | "
              f"{row['rebuild_ms']:.0f} ms | {row['total_ms']:.0f} ms |")
        dialog.shutdown()
        dialog.deleteLater()
        app.processEvents()
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
