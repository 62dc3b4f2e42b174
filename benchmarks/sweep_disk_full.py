"""Full disks at many fill levels: does every failure say so in one sentence, and does the library
stay sound? Also what the catalogue's health check and backup cost at a given library size.

For each fill level a tmpfs is mounted (needs root; tmpfs is refused in some containers), a
library with some photos is made on it, the disk is filled until only FREE bytes are left, and more
photos are indexed. Each row records the exit code, whether stderr was one line without a traceback,
and, once the filler is removed, whether the catalogue passes quick_check, opens, indexes the rest
and finds a photo. Prints a table; --json writes the rows.

    python -m benchmarks.sweep_disk_full --levels 11 --json /tmp/sweep.json
    python -m benchmarks.sweep_disk_full --levels 0 --quick-check-photos 100000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

TINY = ["--backbone", "tiny", "--weights", "none", "--bits", "32", "--device", "cpu"]


def make_photos(folder: Path, count: int, seed: int) -> list[Path]:
    """Small distinct JPEGs (smooth colour fields), deterministic for `seed`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((160, 120), Image.Resampling.BICUBIC)
        path = folder / f"p{seed}_{i:04d}.jpg"
        img.save(path, quality=85)
        out.append(path)
    return out


def cli(*argv: str) -> tuple[int, str]:
    from imagehash_app import cli as app

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = app.main(list(argv))
    return code, err.getvalue()


@contextlib.contextmanager
def tmpfs(size_bytes: int):
    target = Path(tempfile.mkdtemp(prefix="sweep-disk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(target)],
        check=True, capture_output=True,
    )
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)
        target.rmdir()


def fill(folder: Path, leave: int) -> Path:
    filler = folder / "filler"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(free - leave, 0))
    return filler


def one_level(free: int, disk_size: int, first: Path, more: Path, query: Path) -> dict:
    with tmpfs(disk_size) as disk:
        lib = disk / "lib"
        code0, _ = cli("--library", str(lib), "index", str(first), *TINY)
        if code0 != 0:
            return {"free": free, "error": f"setup failed ({code0})"}
        filler = fill(disk, free)
        code, err = cli("--library", str(lib), "index", str(more))
        lines = [line for line in err.splitlines() if line.startswith("imagehash-app:")]
        message = lines[0] if lines else ""
        filler.unlink()
        conn = sqlite3.connect(lib / "catalog.sqlite3")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        conn.close()
        healed, _ = cli("--library", str(lib), "index", str(more))
        found, _ = cli("--library", str(lib), "search", str(query), "--top", "1")
        return {
            "free": free, "exit": code, "one_line": len(lines) == 1 or code == 0,
            "traceback": "Traceback" in err, "message": message[:160],
            "quick_check": check, "reindex_exit": healed, "search_exit": found,
            "consistent": check == "ok" and healed == 0 and found == 0,
        }


def sweep(levels: int, photos: int, workdir: Path) -> list[dict]:
    first = workdir / "first"
    more = workdir / "more"
    make_photos(first, photos, seed=1)
    query = make_photos(more, photos, seed=2)[0]
    # How much the run needs: index both into a roomy disk and measure.
    with tmpfs(64 << 20) as disk:
        cli("--library", str(disk / "lib"), "index", str(first), *TINY)
        base = sum(p.stat().st_size for p in (disk / "lib").rglob("*") if p.is_file())
        cli("--library", str(disk / "lib"), "index", str(more))
        after = sum(p.stat().st_size for p in (disk / "lib").rglob("*") if p.is_file())
    # From nothing free to twice the whole library (the WAL and the backup's temporary copy
    # come on top of what the second run adds), so that the last levels succeed.
    need = 2 * after
    disk_size = base + need + (4 << 20)
    frees = sorted({int(x) for x in np.linspace(0, need, levels)})
    rows = []
    for free in frees:
        started = time.perf_counter()
        row = one_level(free, disk_size, first, more, query)
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        print(_row(row), flush=True)
    return rows


def _row(r: dict) -> str:
    if "error" in r:
        return f"{r['free']:>9}  {r['error']}"
    return (f"{r['free']:>9}  {r['exit']:>4}  {str(r['one_line']):>8}  {str(r['traceback']):>9}  "
            f"{r['quick_check']:>5}  {r['reindex_exit']:>7}  {r['search_exit']:>6}  {r['message'][:70]}")


def quick_check_cost(photos: int, reservoir: int, dim: int, workdir: Path) -> dict:
    """A synthetic catalogue of `photos` images with 64-bit codes and a full reservoir of
    `dim`-d float16 features: how long quick_check and a backup take."""
    from imagehash_app.core import health
    from imagehash_app.core.store import Catalog

    lib = workdir / "qc"
    shutil.rmtree(lib, ignore_errors=True)
    cat = Catalog.open(lib / "catalog.sqlite3")
    rng = np.random.default_rng(0)
    with cat.transaction() as conn:
        folder = cat.add_folder(Path("/photos"))
        conn.executemany(
            "INSERT INTO images(id, folder_id, rel_path, size, mtime_ns, fingerprint, width, height, "
            "status, indexed_at) VALUES (?, ?, ?, 1000, 0, 'f', 4000, 3000, 'indexed', 1.0)",
            [(i, folder.id, f"2024/{i // 1000:03d}/IMG_{i:06d}.jpg") for i in range(1, photos + 1)],
        )
        mid = cat.add_model("urph", 64, "mobilenet_v2", "w", "models/x", photos, "")
        codes = rng.integers(0, 2**63, size=(photos, 1), dtype=np.uint64)
        cat.put_codes(mid, list(range(1, photos + 1)), codes)
        feats = rng.standard_normal((reservoir, dim)).astype("<f2")
        conn.executemany(
            "INSERT INTO reservoir(image_id, slot, feature) VALUES (?, ?, ?)",
            [(i + 1, i, feats[i].tobytes()) for i in range(min(reservoir, photos))],
        )
    cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = (lib / "catalog.sqlite3").stat().st_size
    times = []
    for _ in range(3):
        started = time.perf_counter()
        assert health.quick_check(cat.conn) is None
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    health.make_backup(cat.conn, lib)
    backup = time.perf_counter() - started
    cat.close()
    shutil.rmtree(lib, ignore_errors=True)
    return {
        "photos": photos, "reservoir": reservoir, "dim": dim, "catalog_mb": round(size / 1e6, 1),
        "quick_check_s": round(float(np.median(times)), 3), "backup_s": round(backup, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=11, help="fill levels (0: skip the sweep)")
    parser.add_argument("--photos", type=int, default=40, help="photos indexed before and after filling")
    parser.add_argument("--quick-check-photos", type=int, default=0, metavar="N",
                        help="also time quick_check and a backup on a synthetic N-photo catalogue")
    parser.add_argument("--dim", type=int, default=1280, help="feature size of the synthetic reservoir")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("IMAGEHASH_APP_LOG_DIR", tempfile.mkdtemp(prefix="sweep-log-"))
    result: dict = {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        work = Path(tmp)
        if args.levels:
            print(f"{'free B':>9}  {'exit':>4}  {'one line':>8}  {'traceback':>9}  {'check':>5}  "
                  f"{'reindex':>7}  {'search':>6}  message")
            rows = sweep(args.levels, args.photos, work)
            result["levels"] = rows
            ok = [r for r in rows if "error" not in r]
            result["summary"] = {
                "levels": len(rows),
                "disk_full_exits": sum(r["exit"] == 4 for r in ok),
                "succeeded": sum(r["exit"] == 0 for r in ok),
                "other_exits": sum(r["exit"] not in (0, 4) for r in ok),
                "tracebacks": sum(r["traceback"] for r in ok),
                "not_one_line": sum(not r["one_line"] for r in ok),
                "consistent_after": sum(r["consistent"] for r in ok),
                "setup_failed": len(rows) - len(ok),
            }
            print(json.dumps(result["summary"]))
        if args.quick_check_photos:
            cost = quick_check_cost(args.quick_check_photos, 20_000, args.dim, work)
            result["quick_check"] = cost
            print(json.dumps(cost))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
