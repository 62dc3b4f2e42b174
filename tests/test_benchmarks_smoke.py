"""Every benchmark command, run as docs/ and its docstring write it, with the smallest real work its
flags allow, so that none can rot unnoticed (issue 14, item 12).

Each runs in a new process from the repository root (the tiny random backbone, weights "none",
a few generated photos, JSON into tmp_path) and must exit 0 with the figures it promises.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared data beside the clone, as the benchmarks look for it (CI keeps a copy there); a
# worktree elsewhere names it with IMAGEHASH_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("IMAGEHASH_SHARED_DATA", REPO.parent / "shared" / "data"))


def bench(*argv: str | Path, timeout: float = 60) -> str:
    """Run `python ARGV...` from the repository root; its stdout, after asserting exit 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, *map(str, argv)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def camera_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two photos from `benchmarks/make_photos.py` (its smoke run; bench_indexing reads them)."""
    out = tmp_path_factory.mktemp("camera")
    printed = bench("benchmarks/make_photos.py", out, "--count", "2")
    assert "2 files" in printed
    assert len([p for p in out.iterdir() if p.is_file()]) == 2
    return out


def test_make_photos_and_bench_indexing(camera_photos: Path, tmp_path: Path) -> None:
    """bench_indexing over the make_photos folder with the tiny backbone, library timing included."""
    out = tmp_path / "indexing.json"
    bench("benchmarks/bench_indexing.py", camera_photos, "--backbones", "tiny", "--repeat", "1",
          "--batch-size", "2", "--decode-workers", "1", "--json", out)
    result = json.loads(out.read_text())
    assert result["files"] == 2
    [row] = result["results"]
    assert row["backbone"] == "tiny" and row["weights"] == "none (random)"
    assert row["B"] > 0 and row["D"] > 0 and row["pipeline"] > 0


def test_bench_gil(tmp_path: Path) -> None:
    """Eager vs traced forward with 0 and 1 busy threads, the tiny backbone, one rep."""
    out = tmp_path / "gil.json"
    bench("benchmarks/bench_gil.py", "--backbone", "tiny", "--hogs", "0", "1", "--reps", "1",
          "--batch", "1", "--json", out)
    result = json.loads(out.read_text())
    assert result["backbone"] == "tiny" and result["weights"] == "none"
    assert [r["busy_threads"] for r in result["rows"]] == [0, 1]
    assert all(r["eager_ms"] >= 0 and r["traced_ms"] >= 0 for r in result["rows"])


def test_bench_gui_search(tmp_path: Path) -> None:
    """A real drop on the offscreen window over a 60-photo library (48 indexed with tiny)."""
    out = tmp_path / "gui.json"
    printed = bench("benchmarks/bench_gui_search.py", "--backbone", "tiny", "--weights", "none",
                    "--sizes", "60", "--repeats", "1", "--workdir", tmp_path / "work",
                    "--stage1", "scan", "--json", out)
    assert "Drop → results shown" in printed
    result = json.loads(out.read_text())
    assert result["benchmark"] == "gui_drop_to_results" and result["backbone"] == "tiny"
    [row] = result["rows"]
    assert row["photos"] == 60 and row["repeats"] == 1 and row["cpu_median_ms"] > 0
    assert result["stage1"] == "scan"
    assert row["median_ms"] > 0 and row["first_query_ms"] > 0


def test_bench_memory() -> None:
    """Both subcommands: 2 small PNGs decoded, then a 4-photo tiny library searched (1 and 2 queries)."""
    decode = bench("-m", "benchmarks.bench_memory", "decode", "--side", "400", "--count", "2",
                   "--threads", "1")
    [row] = [json.loads(line) for line in decode.splitlines() if line.startswith("{")]
    assert row["decoded"] == 2 and "rss_growth_mb" in row
    search = bench("-m", "benchmarks.bench_memory", "search", "--photos", "4", "--queries", "1", "2")
    rows = [json.loads(line) for line in search.splitlines() if line.startswith("{")]
    assert [r["queries"] for r in rows] == [1, 2]
    assert all("rss_growth_mb" in r for r in rows)


def test_bench_search(tmp_path: Path) -> None:
    """Exact scan vs faiss on 2 000 codes and the graph-vs-scan crossover at one small size."""
    pytest.importorskip("faiss", reason="bench_search compares with faiss (the 'bench' extra)")
    out = tmp_path / "search.json"
    bench("-m", "benchmarks.bench_search", "--exact-n", "2000", "--exact-queries", "2",
          "--rounds", "1", "--sizes", "2000", "--ef-factors", "1", "--crossover-queries", "3",
          "--json", out)
    result = json.loads(out.read_text())
    assert {"command", "machine", "exact", "crossover"} <= result.keys()


def test_bench_train(tmp_path: Path) -> None:
    """Every method fit on 200 synthetic 64-d features (`--features-cache`: no shared data needed)."""
    cache = tmp_path / "features.npz"
    rng = np.random.default_rng(0)
    np.savez(cache, features=rng.standard_normal((300, 64)).astype(np.float32))
    out = tmp_path / "train.json"
    bench("-m", "benchmarks.bench_train", "--features-cache", cache, "--n", "200", "--bits", "16",
          "--threads", "1", "--json", out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["urph", "itq", "lsh"]
    assert all(r["n"] == 200 and r["dim"] == 64 and r["bits"] == 16 for r in rows)


def test_bench_finetune(tmp_path: Path) -> None:
    """`--help`, then main's own flow with both parts skipped. The real parts need CIFAR-10 and
    flowers5 features made with MobileNetV2 (minutes), far past a smoke test; the skipped run
    still checks the shared weights are found and the JSON is written (skipped without them)."""
    assert "--skip" in bench("-m", "benchmarks.bench_finetune", "--help")
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: bench_finetune needs the shared weights")
    out = tmp_path / "finetune.json"
    bench("-m", "benchmarks.bench_finetune", "--data", SHARED_DATA, "--work", tmp_path / "work",
          "--images", tmp_path, "--flowers", tmp_path / "f.npz", "--cifar", tmp_path / "c.npz",
          "--skip", "features", "--skip", "library", "--json", out)
    result = json.loads(out.read_text())
    assert result["bits"] == 64 and result["torch_threads"] >= 1


def test_data(tmp_path: Path) -> None:
    """`--help`, then the feature cache of the smallest data set (UKBench, 56 photos, about 5 s)
    from the shared data with the real MobileNetV2 weights (skipped without the shared data)."""
    assert "ukbench56" in bench("-m", "benchmarks.data", "--help")
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: benchmarks.data builds caches from the shared data")
    printed = bench("-m", "benchmarks.data", "ukbench56", "--data", SHARED_DATA,
                    "--work", tmp_path)
    cache = tmp_path / "ukbench56_mobilenet_v2.npz"
    assert printed.strip() == str(cache)
    with np.load(cache) as saved:
        assert saved["features"].shape == (56, 1280) and saved["labels"].shape == (56,)


def test_sweep_kill(tmp_path: Path) -> None:
    """One kill round over 24 generated photos, URPH due at 16: baseline and kill must match."""
    out = tmp_path / "kill.json"
    bench("-m", "benchmarks.sweep_kill", "--generate", "24", "--rounds", "1", "--queries", "3",
          "--batch-size", "8", "--train-min", "16", "--reservoir", "20", "--epochs", "1",
          "--work", tmp_path / "work", "--json", out, timeout=120)
    summary = json.loads(out.read_text())["summary"]
    assert summary["photos"] == 24 and summary["rounds"] == 1
    assert summary["baseline_identical"] and summary["identical"] == 1


def test_sweep_disk_full(tmp_path: Path) -> None:
    """One fill level (0 bytes free) on a tmpfs with 4 photos; skipped where tmpfs is refused."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("sweep_disk_full mounts a tmpfs, which needs root and `mount`")
    probe = tmp_path / "probe"
    probe.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs was refused here: {mounted.stderr.strip()}")
    subprocess.run(["umount", str(probe)], check=True)
    out = tmp_path / "disk.json"
    bench("-m", "benchmarks.sweep_disk_full", "--levels", "1", "--photos", "4", "--json", out)
    summary = json.loads(out.read_text())["summary"]
    assert summary["levels"] == 1 and summary["setup_failed"] == 0 and summary["tracebacks"] == 0 and summary["not_one_line"] == 0
    assert summary["consistent_after"] == 1


def test_bench_cold_query(tmp_path: Path) -> None:
    """A new process's search vs status over 6 generated photos (tiny backbone, its ONNX export)."""
    out = tmp_path / "cold.json"
    printed = bench("-m", "benchmarks.bench_cold_query", "--backbone", "tiny", "--weights", "none",
                    "--generated", "--photos", "6", "--runs", "1", "--workdir", tmp_path / "work",
                    "--json", out, timeout=120)
    assert "search / status" in printed
    result = json.loads(out.read_text())
    assert result["benchmark"] == "cold_query" and result["photos"] == 6
    assert result["status_median_s"] > 0 and result["search_median_s"] > 0
    assert result["torch_imported"] is False  # the recorded export answered, not PyTorch


def test_bench_first_drop(tmp_path: Path) -> None:
    """Launch → drop → results painted in a new process: 8 photos topped up to 12 (tiny backbone)."""
    out = tmp_path / "first.json"
    printed = bench("-m", "benchmarks.bench_first_drop", "--backbone", "tiny", "--weights", "none",
                    "--generated", "--real", "8", "--sizes", "12", "--runs", "1",
                    "--workdir", tmp_path / "work", "--json", out, timeout=180)
    assert "launch → results painted" in printed
    result = json.loads(out.read_text())
    assert result["benchmark"] == "first_drop"
    assert [r["photos"] for r in result["rows"]] == [12]
    for row in result["rows"]:
        assert 0 < row["median_shown_s"] < row["median_painted_s"]
        assert row["torch_imported"] is False


def test_bench_words(tmp_path: Path) -> None:
    """bench_words on a small synthetic stand-in for the flowers5 feature cache (5 classes), one
    draw, one epoch each way: every method scored in both scenarios."""
    from imagehash_app.core.evaluation import FeatureSet

    rng = np.random.default_rng(0)
    labels = np.arange(100) % 5
    feats = np.abs(rng.normal(size=(5, 32)))[labels] + 0.3 * np.abs(rng.normal(size=(100, 32)))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    classes = ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    FeatureSet(feats.astype(np.float32), labels.astype(np.int32), classes,
               [f"{i}.jpg" for i in range(100)], {}).save(tmp_path / "work" / "flowers5_mobilenet_v2.npz")
    out = tmp_path / "words.json"
    bench("-m", "benchmarks.bench_words", "--work", tmp_path / "work", "--draws", "1", "--jobs", "1",
          "--pretrain-epochs", "1", "--epochs", "1", "--share", "0.3", "--out", out, timeout=180)
    result = json.loads(out.read_text())
    for scenario in ("keywords", "folders"):
        summary = result["scenarios"][scenario]["summary"]
        assert set(summary) >= {"mean feature", "kNN vote", "UGACH no adversarial", "UGACH"}
        assert all(0 <= row["mAP"][0] <= 1 for row in summary.values())


def test_seed_table(tmp_path: Path) -> None:
    """The seed hashers' table and plot from the committed flowers5 eval JSON of 16 bits."""
    runs = REPO / "benchmarks" / "results" / "seed-hashers" / "flowers5-gpu-run2"
    plot = tmp_path / "seed.png"
    printed = bench("-m", "benchmarks.seed_table", "flowers5", plot,
                    runs / "flowers5-16-urph.json", runs / "flowers5-16-deepquan.json")
    rows = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 11  # the header and one row per method at 16 bits
    assert "| urph | 16 |" in printed and "| deepquan (ADC) | 16 |" in printed
    assert "Float ceiling: mAP@1000 0.421" in printed and plot.stat().st_size > 10_000


def test_harr_views(tmp_path: Path) -> None:
    """HARR's image views vs feature views on 30 UKBench photos, one view each, 16 bits, one
    epoch (skipped without the shared data: it runs the real MobileNetV2)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the views come from the real backbone")
    out = tmp_path / "views.json"
    bench("-m", "benchmarks.harr_views", "--dataset", "ukbench56", "--data", SHARED_DATA,
          "--work", tmp_path, "--queries-per-class", "1", "--limit", "30", "--views", "1",
          "--bits", "16", "--epochs", "1", "--rerank", "10", "--json", out, timeout=180)
    result = json.loads(out.read_text())
    assert result["views"] == 1 and result["database"] == 30 and result["ms_per_photo_per_view"] > 0
    assert {(r["variant"], r["refine"]) for r in result["rows"]} == {
        (v, r) for v in ("feature", "image", "image+feature") for r in ("none", "decoder")}


@pytest.mark.skipif(not (SHARED_DATA / "flowers5.tar.gz").is_file(), reason="no shared data")
def test_bench_copies_and_bench_duplicates(tmp_path: Path) -> None:
    """The copy score's test set on 6 originals, and grouping 300 signatures (issue 15)."""
    out = tmp_path / "copies.json"
    bench("-m", "benchmarks.bench_copies", "--originals", "6", "--data", SHARED_DATA,
          "--work", tmp_path / "work", "--json", out, timeout=240)
    result = json.loads(out.read_text())
    assert result["copies"] > 0 and 0 <= result["held_out"]["recall"] <= 1
    out = tmp_path / "duplicates.json"
    bench("-m", "benchmarks.bench_duplicates", "--photos", "300", "--real", "200", "--repeat",
          "1", "--data", SHARED_DATA, "--work", tmp_path / "work", "--json", out, timeout=240)
    [row] = json.loads(out.read_text())["rows"]
    assert row["photos"] == 300 and row["seconds"] > 0 and row["candidates"] > 0


def test_bench_duplicates_view(tmp_path: Path) -> None:
    """One slider step on a 300-photo synthetic report (the real dialog, offscreen)."""
    out = tmp_path / "view.json"
    printed = bench("benchmarks/bench_duplicates_view.py", "--sizes", "300", "--steps", "1",
                    "--json", out)
    assert "| 300 |" in printed
    [row] = json.loads(out.read_text())["rows"]
    assert row["photos"] == 300 and row["groups"] > 0 and row["regroup_ms"] > 0


def test_finetune_supervised(tmp_path: Path) -> None:
    """One supervised method fine-tuned from a tiny-backbone library's folders and marks."""
    from photos import make_photo_folder

    from imagehash_app.core.library import Library
    from imagehash_app.core.settings import LibrarySettings

    photos = make_photo_folder(tmp_path / "photos", groups=5, unrelated=5)
    settings = LibrarySettings(
        backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=1,
        hasher_params={"urph": {"hidden": 32, "decoder_hidden": 32, "input_dim": 32}})
    with Library.open(tmp_path / "library", settings=settings) as lib:
        list(lib.index([photos.root]))
    out = tmp_path / "supervised.json"
    bench("-m", "benchmarks.finetune_supervised", tmp_path / "library", "--methods", "dpsh",
          "--queries", "3", "--marks", "1", "--json", out, timeout=180)
    result = json.loads(out.read_text())
    assert [r["stage"] for r in result["rows"]] == ["before", "after"]
    assert result["rows"][1]["method"] == "dpsh" and result["held_out"] > 0
def test_cycle_launch(tmp_path: Path) -> None:
    """One launch → drop → results → quit cycle of the real window under Xvfb, on 8 flowers5 photos
    with the real MobileNetV2 weights (skipped without the shared data or Xvfb)."""
    assert "--cycles" in bench("benchmarks/cycle_launch.py", "--help")
    if not SHARED_DATA.is_dir() or shutil.which("Xvfb") is None or shutil.which("xdpyinfo") is None:
        pytest.skip("cycle_launch needs the shared data (flowers5, weights) and Xvfb")
    out = tmp_path / "out"
    bench("benchmarks/cycle_launch.py", "--cycles", "1", "--photos", "8", "--display", ":93",
          "--data", SHARED_DATA, "--work", tmp_path / "work", "--out", out, timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cycles"] == 1 and summary["crashes"] == 0 and summary["by_exit"] == {"0": 1}
    [cycle] = summary["cycles_detail"]
    assert cycle["results"] and cycle["drop_to_results_ms"] > 0
