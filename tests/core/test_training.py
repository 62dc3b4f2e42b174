"""The fine-tune lifecycle on a seeded synthetic library (features written straight to the catalogue,
no backbone): improvement on held-out data, activation rules, roll back, kill and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from photos import make_photo_folder

from imagehash_app.core.codes import words_for
from imagehash_app.core.embedding import iter_embeddings
from imagehash_app.core.errors import CancelledError
from imagehash_app.core.hashing import load_hasher, make_hasher
from imagehash_app.core.library import Library
from imagehash_app.core.reservoir import FEATURE_DTYPE, reservoir_add
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.core.store import CATALOG_FILE, Catalog
from imagehash_app.core.training import PENDING_KEY, held_out_mask

DIM, BITS = 32, 16
N_PHOTOS, RESERVOIR = 400, 300
PARAMS = {"urph": {"hidden": 64, "decoder_hidden": 64, "epochs": 30, "batch_size": 128,
                   "input_dim": 32, "neighbours": 20}}


def clustered(n: int, dims: slice, seed: int, clusters: int = 20) -> np.ndarray:
    """Unit features whose structure lives in `dims` (cluster centres + noise), faint elsewhere."""
    rng = np.random.default_rng(seed)
    width = dims.stop - dims.start
    centres = rng.standard_normal((clusters, width))
    X = 0.15 * rng.standard_normal((n, DIM))
    X[:, dims] += centres[rng.integers(clusters, size=n)] + 0.35 * rng.standard_normal((n, width))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(FEATURE_DTYPE).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These networks are tiny: one thread is several times faster on a shared 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def foreign_hasher():
    """A hasher trained on another collection: its structure is in the other half of the dims."""
    h = make_hasher("urph", BITS, DIM, **PARAMS["urph"])
    h.fit(clustered(500, slice(0, 16), seed=1), seed=0, epochs=10)
    h.meta["backbone"] = "tiny"
    return h


def build_library(root: Path, hasher) -> tuple[Library, np.ndarray]:
    """A library of N_PHOTOS indexed photos whose active version is `hasher`; returns it and the
    photos' features (rows in image-id order)."""
    settings = LibrarySettings(
        backbone="tiny", weights="none", bits=BITS, device="cpu", reservoir_size=RESERVOIR,
        hasher_params=PARAMS, rerank_depth=50,
    )
    lib = Library.open(root, settings=settings)
    X = clustered(N_PHOTOS, slice(16, 32), seed=2)
    cat = Catalog.open(root / CATALOG_FILE)
    try:
        with cat.transaction() as conn:
            folder = cat.add_folder(root.parent / "photos")
            conn.executemany(
                "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status, indexed_at) "
                "VALUES (?, ?, 1, 1, 'indexed', 1.0)",
                [(folder.id, f"img{i:04d}.jpg") for i in range(N_PHOTOS)],
            )
            ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id")]
            reservoir_add(cat, ids, X, RESERVOIR, seed=0)
            cat.set_meta("weights_id", "test")
            hasher.save(root / "models" / "urph-f0f0f0f0f0f0")
            model = cat.add_model("urph", BITS, "tiny", "test", "models/urph-f0f0f0f0f0f0", 500, "foreign")
            cat.put_codes(model, ids, hasher.encode(X))
            cat.set_active_model(model)
    finally:
        cat.close()
    return lib, X


def run(gen):
    """Drain a fine-tune generator; returns (events, result)."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def codes_of(root: Path, model_id: int) -> tuple[np.ndarray, np.ndarray]:
    cat = Catalog.open(root / CATALOG_FILE, read_only=True)
    try:
        return cat.load_codes(model_id, words_for(BITS))
    finally:
        cat.close()


def answers(lib: Library, queries: np.ndarray) -> list:
    return [[(r.path, round(r.score, 6), r.hamming) for r in row]
            for row in lib.search_features(queries, top_k=10)]


def test_held_out_set_is_stable_and_about_a_tenth() -> None:
    ids = np.arange(1, 5001)
    mask = held_out_mask(ids, seed=0)
    assert mask.sum() == 500
    half = held_out_mask(ids[::2], seed=0)  # chosen per image id, not per position
    assert (half & mask[::2]).sum() > 200
    assert held_out_mask(np.arange(1, 31), seed=0).sum() == 10  # a third of a small library


def test_finetune_improves_held_out_recall_and_records_it(tmp_path: Path, foreign_hasher) -> None:
    lib, X = build_library(tmp_path / "lib", foreign_hasher)
    with lib:
        before = answers(lib, X[:5])
        p = lib.finetune_plan()
        assert p.warm_start and not p.problem and p.reservoir == RESERVOIR
        events, result = run(lib.finetune(epochs=20))
        phases = {e.phase for e in events}
        assert {"train", "evaluate", "encode", "swap", "done"} <= phases
        train = [e for e in events if e.phase == "train"]
        assert train[-1].done == train[-1].total == 20 and train[-1].loss is not None
        assert result.better and result.activated
        assert result.new_metrics["rerank_10@10"] > result.old_metrics["rerank_10@10"] + 0.1
        assert result.new_metrics["hamming_10@10"] > result.old_metrics["hamming_10@10"]
        # Reservoir photos are re-encoded exactly, the others from their old codes.
        assert result.exact_codes == RESERVOIR and result.approx_codes == N_PHOTOS - RESERVOIR
        ids, _ = codes_of(lib.path, result.new_model)
        assert len(ids) == N_PHOTOS
        info = {m.id: m for m in lib.models()}
        assert info[result.new_model].active and info[result.new_model].complete
        recorded = info[result.new_model].metrics["finetune"]
        assert recorded["old"] == result.old_metrics and recorded["new"] == result.new_metrics
        assert answers(lib, X[:5]) != before  # the new version answers now


def test_not_better_is_kept_but_not_activated_unless_forced(tmp_path: Path, foreign_hasher) -> None:
    lib, X = build_library(tmp_path / "lib", foreign_hasher)
    with lib:
        first = lib.status().model["id"]
        # Zero epochs from a warm start: the same hasher again, so not better.
        _, result = run(lib.finetune(epochs=0))
        assert not result.better and not result.activated
        assert lib.status().model["id"] == first
        assert "stays active" in result.message
        _, forced = run(lib.finetune(epochs=0, force=True))
        assert forced.activated and lib.status().model["id"] == forced.new_model
        kept = [m.id for m in lib.models()]
        assert len(kept) == 2 and forced.new_model in kept  # the last 2 versions by default


def test_roll_back_restores_previous_answers_exactly(tmp_path: Path, foreign_hasher) -> None:
    lib, X = build_library(tmp_path / "lib", foreign_hasher)
    queries = X[::40]
    with lib:
        old = lib.status().model["id"]
        before = answers(lib, queries)
        _, result = run(lib.finetune(epochs=10, force=True))
        assert answers(lib, queries) != before
        lib.activate_model(old)
        assert lib.status().model["id"] == old
        assert answers(lib, queries) == before
        lib.activate_model(result.new_model)  # and forward again
        assert lib.status().model["id"] == result.new_model


def test_search_answers_with_the_old_version_during_the_reencode(tmp_path: Path, foreign_hasher) -> None:
    lib, X = build_library(tmp_path / "lib", foreign_hasher)
    with lib:
        before = answers(lib, X[:3])
        gen = lib.finetune(epochs=5, batch_size=16)
        seen_encode = 0
        for event in gen:
            if event.phase == "encode" and 0 < event.done < event.total:
                seen_encode += 1
                assert answers(lib, X[:3]) == before
        assert seen_encode >= 2
        assert answers(lib, X[:3]) != before


def test_cancel_during_training_keeps_nothing(tmp_path: Path, foreign_hasher) -> None:
    lib, _ = build_library(tmp_path / "lib", foreign_hasher)
    with lib:
        seen: list[str] = []
        gen = lib.finetune(epochs=30, should_stop=lambda: "train" in seen)
        with pytest.raises(CancelledError):
            for event in gen:
                seen.append(event.phase)
        assert len(lib.models()) == 1
        assert not lib.finetune_plan().resumable
        assert sorted(p.name for p in (lib.path / "models").iterdir()) == ["urph-f0f0f0f0f0f0"]


KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from imagehash_app.core.library import Library
    from imagehash_app.core.training import finetune
    lib = Library.open(sys.argv[1])
    for event in lib.finetune(epochs=5, batch_size=16):
        if event.phase == "encode" and event.done >= 48:
            os.kill(os.getpid(), signal.SIGKILL)
""")


def test_kill_during_reencode_then_resume_gives_the_same_codes(tmp_path: Path, foreign_hasher) -> None:
    lib, _ = build_library(tmp_path / "lib", foreign_hasher)
    lib.close()
    shutil.copytree(tmp_path / "lib", tmp_path / "ref", ignore=shutil.ignore_patterns("lock*"))
    with Library.open(tmp_path / "ref") as ref:
        _, uninterrupted = run(ref.finetune(epochs=5, batch_size=16))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path / "lib")], env=env, capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    cat = Catalog.open(tmp_path / "lib" / CATALOG_FILE, read_only=True)
    pending = json.loads(cat.get_meta(PENDING_KEY))
    cat.close()
    partial, _ = codes_of(tmp_path / "lib", pending["new"])
    assert RESERVOIR < len(partial) < N_PHOTOS  # killed in the middle of the re-encode
    with Library.open(tmp_path / "lib") as lib:
        assert lib.finetune_plan().resumable
        events, resumed = run(lib.finetune(epochs=99))  # options of a resumed run are ignored
        assert not any(e.phase == "train" for e in events)
        assert resumed.activated and resumed.new_model == pending["new"]
    ids_a, codes_a = codes_of(tmp_path / "lib", resumed.new_model)
    ids_b, codes_b = codes_of(tmp_path / "ref", uninterrupted.new_model)
    assert len(ids_a) == N_PHOTOS
    assert np.array_equal(ids_a, ids_b) and np.array_equal(codes_a, codes_b)


def test_suggests_a_fine_tune_once_the_library_doubled(tmp_path: Path, foreign_hasher) -> None:
    lib, _ = build_library(tmp_path / "lib", foreign_hasher)
    with lib:
        _, result = run(lib.finetune(epochs=2, force=True))
        assert lib.finetune_suggestion() is None
        cat = Catalog.open(lib.path / CATALOG_FILE)
        with cat.transaction() as conn:
            folder = cat.folders()[0]
            conn.executemany(
                "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status, indexed_at) "
                "VALUES (?, ?, 1, 1, 'indexed', ?)",
                [(folder.id, f"new{i:04d}.jpg", time.time() + 1) for i in range(N_PHOTOS)],
            )
        cat.close()
        text = lib.finetune_suggestion()
        assert text is not None and "Improve search" in text


def test_photos_outside_the_reservoir_are_re_embedded_exactly(tmp_path: Path) -> None:
    """The backbone runs again over photos whose features were not kept; a file that cannot be
    read falls back to its decoded old code."""
    settings = LibrarySettings(
        backbone="tiny", weights="none", bits=BITS, device="cpu", batch_size=8, threads=1,
        reservoir_size=24, hasher_params=PARAMS,
    )
    photos = make_photo_folder(tmp_path / "photos", groups=6, unrelated=6)
    with Library.open(tmp_path / "lib", settings=settings) as lib:
        list(lib.index([photos.root]))
        cat = Catalog.open(lib.path / CATALOG_FILE, read_only=True)
        res_ids, _ = cat.load_reservoir()
        paths = cat.paths_of([r[0] for r in cat.conn.execute("SELECT id FROM images")])
        cat.close()
        outside = sorted(i for i in paths if i not in set(res_ids.tolist()))
        assert len(paths) == 30 and len(outside) == 6
        gone = paths[outside[0]]
        gone.unlink()
        _, result = run(lib.finetune(epochs=3, force=True))
        assert result.exact_codes == 29 and result.approx_codes == 1
        model = next(m for m in lib.models() if m.id == result.new_model)
        assert model.active and model.complete
        cat = Catalog.open(lib.path / CATALOG_FILE, read_only=True)
        row = next(m for m in cat.models() if m.id == result.new_model)
        cat.close()
        hasher = load_hasher(lib.path / row.dir)
        ids, codes = codes_of(lib.path, result.new_model)
        stored = dict(zip(ids.tolist(), codes, strict=True))
        wanted = [paths[i] for i in outside[1:]]
        feats = np.concatenate([b.features for b in iter_embeddings(wanted, lib.backbone())])
        expected = hasher.encode(feats.astype(FEATURE_DTYPE).astype(np.float32))
        assert np.array_equal(np.stack([stored[i] for i in outside[1:]]), expected)
