"""Incremental indexing: scan diffing, bad files, offline folders, kill + resume, hasher lifecycle."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from photos import make_photo, make_photo_folder

from imagehash_app.core.hashing import fit_process
from imagehash_app.core.hashing.urph import URPHHasher
from imagehash_app.core.indexer import Indexer, plan_training
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.core.store import ModelRow

TINY = LibrarySettings(backbone="tiny", weights="none", bits=32, device="cpu", batch_size=4, threads=1)
ROOT = Path(__file__).resolve().parents[2]


def phases(events) -> list[str]:
    return [e.phase for e in events]


def embed_total(events) -> int:
    return max((e.total for e in events if e.phase == "embed"), default=0)


def trainings_started(events) -> list[str]:
    """The message of each fit begun (a fit still running when the batches end also says that
    the run now waits for it: that one is not a new fit)."""
    return [
        e.message for e in events
        if e.phase == "train" and e.total == 0 and not e.message.endswith(": finishing")
    ]


def rows(lib_dir: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(lib_dir / "catalog.sqlite3")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_rescan_embeds_only_new_and_changed_and_keeps_moved_codes(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=2, unrelated=2)
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, settings=TINY) as lib:
        first = list(lib.index([photos.root]))
        assert embed_total(first) == len(photos.all) and first[-1].phase == "done"
        changed, deleted, moved = photos.unrelated[0], photos.unrelated[1], photos.originals[0]
        make_photo(99).save(changed)
        deleted.unlink()
        before = dict(rows(lib_dir, "SELECT rel_path, id FROM images"))
        code_before = rows(lib_dir, f"SELECT code FROM codes WHERE image_id = {before['group0/original.jpg']}")
        (photos.root / "moved").mkdir()
        moved.rename(photos.root / "moved" / "renamed.jpg")
        make_photo(100).save(photos.root / "new.jpg")
        second = list(lib.index())
        assert embed_total(second) == 2  # the changed file and the new one; the move is free
        scan = next(e for e in second if e.phase == "scan" and e.total)
        assert "1 new, 1 changed, 1 moved, 1 deleted" in scan.message
        after = dict(rows(lib_dir, "SELECT rel_path, id FROM images"))
        assert after["moved/renamed.jpg"] == before["group0/original.jpg"]
        assert "misc/other1.jpg" not in after and "group0/original.jpg" not in after
        # the itq fallback is refit after the change; the moved photo still has a code
        moved_code = rows(lib_dir, f"SELECT code FROM codes c JOIN models m ON m.id = c.model_id "
                                   f"WHERE m.active = 1 AND image_id = {after['moved/renamed.jpg']}")
        assert len(moved_code) == 1 and len(code_before) == 1
        status = lib.status()
        assert status.indexed == len(photos.all) and status.reservoir["count"] == status.indexed
        third = list(lib.index())
        assert embed_total(third) == 0 and "train" not in phases(third)  # nothing to do


def test_every_bad_file_is_skipped_with_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    make_photo(1).save(folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    good = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.jpg").write_text("this is not a photo\n" * 10)
    make_photo(2).save(folder / "vanishing.jpg")
    locked = folder / "locked.jpg"
    make_photo(3).save(locked)
    locked.chmod(0)
    as_root = os.geteuid() == 0  # root reads files whatever their mode: that kind cannot be made
    expected = {
        "empty.jpg": "empty file",
        "truncated.jpg": "corrupt or truncated",
        "notes.jpg": "not an image",
        "vanishing.jpg": "vanished",
    }
    if not as_root:
        expected["locked.jpg"] = "unreadable: permission denied"
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        for event in lib.index([folder]):
            if event.phase == "scan" and event.total:
                (folder / "vanishing.jpg").unlink()  # gone between the scan and decoding
        skipped = {p.name: reason for p, reason in lib.skipped()}
        status = lib.status()
    assert {k: skipped[k] for k in expected} == expected
    assert status.indexed == (2 if as_root else 1)
    assert status.skipped_reasons["empty file"] == 1
    locked.chmod(0o644)


def test_offline_folder_is_kept_and_comes_back_without_reembedding(tmp_path: Path) -> None:
    a = make_photo_folder(tmp_path / "a", groups=1, unrelated=1, seed=1)
    b = make_photo_folder(tmp_path / "b", groups=1, unrelated=1, seed=2)
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        list(lib.index([a.root, b.root]))
        b.root.rename(tmp_path / "unplugged")
        list(lib.index())
        status = lib.status()
        assert (status.indexed, status.offline) == (len(a.all), len(b.all))
        assert [f.online for f in lib.folders()] == [True, False]
        hits = lib.search([tmp_path / "unplugged" / "group0" / "original.jpg"], top_k=1)[0]
        assert hits.results[0].path == b.originals[0]  # offline photos still answer
        (tmp_path / "unplugged").rename(b.root)
        back = list(lib.index())
        assert embed_total(back) == 0
        assert lib.status().indexed == len(a.all) + len(b.all)


KILL_CHILD = """
import os, signal, sys
from pathlib import Path
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.core.library import Library
phase, after = sys.argv[3], int(sys.argv[4])
settings = LibrarySettings(backbone="tiny", weights="none", bits=32, device="cpu", batch_size=4, threads=1)
lib = Library.open(Path(sys.argv[1]), settings=settings)
for ev in lib.index([Path(sys.argv[2])]):
    if ev.phase == phase and ev.done >= after:
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(("phase", "after"), [("embed", 8), ("encode", 0)])
def test_kill_then_resume_without_redoing_finished_images(
    tmp_path: Path, phase: str, after: int
) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=3, unrelated=2)
    lib_dir = tmp_path / "lib"
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    child = subprocess.run(
        [sys.executable, str(script), str(lib_dir), str(photos.root), phase, str(after)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    done = dict(rows(lib_dir, "SELECT id, indexed_at FROM images WHERE status = 'indexed'"))
    assert len(done) == (8 if phase == "embed" else len(photos.all))
    with Library.open(lib_dir, settings=TINY) as lib:  # the kernel released the dead writer's lock
        events = list(lib.index())
        assert embed_total(events) == len(photos.all) - len(done)
        status = lib.status()
        assert status.indexed == len(photos.all) and status.pending == 0
        assert status.model is not None
        results = lib.search([photos.originals[1]], top_k=1)[0].results
    again = dict(rows(lib_dir, "SELECT id, indexed_at FROM images"))
    assert all(again[i] == t for i, t in done.items())  # finished images were not re-embedded
    assert results[0].path == photos.originals[1]
    assert len(list((lib_dir / "models").iterdir())) == 1  # a killed training left nothing behind
    codes = rows(lib_dir, "SELECT COUNT(*) FROM codes c JOIN models m ON m.id = c.model_id WHERE m.active")
    assert codes == [(len(photos.all),)]


def test_stop_between_batches_and_close_leave_a_resumable_library(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=3, unrelated=2)
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        embedded: list = []
        events = []
        for e in lib.index([photos.root], should_stop=lambda: bool(embedded)):
            events.append(e)
            if e.phase == "embed" and e.done:
                embedded.append(e)
        assert events[-1].phase == "done" and "Stopped" in events[-1].message
        assert (lib.status().indexed, lib.status().pending) == (4, len(photos.all) - 4)
        gen = lib.index()
        for e in gen:
            if e.phase == "embed" and e.done:
                break
        gen.close()  # what a GUI does when the window closes mid-run
        assert lib.status().indexed == 8
        final = list(lib.index())
        assert embed_total(final) == len(photos.all) - 8
        assert final[-1].phase == "done" and lib.status().indexed == len(photos.all)


def model(train_size: int, method: str = "itq") -> ModelRow:
    return ModelRow(1, method, 64, "tiny", "w", 0.0, True, "models/m", train_size, "")


@pytest.mark.parametrize(
    ("population", "sampled", "active", "kwargs", "expected"),
    [
        (0, 0, None, {"end_of_run": True}, None),
        (10, 10, None, {"end_of_run": False, "upcoming": 8}, None),
        (10, 10, None, {"end_of_run": True}, "itq"),
        (10, 10, None, {"end_of_run": False, "upcoming": 20_000}, "itq"),  # before the reservoir drops any
        (1000, 1000, None, {"end_of_run": False}, "urph"),
        (500, 500, model(400), {"end_of_run": True, "changed": True}, "itq"),
        (500, 500, model(400), {"end_of_run": True, "changed": False}, None),
        (500, 500, model(400), {"end_of_run": False, "changed": True}, None),
        (1000, 1000, model(400), {"end_of_run": False}, "urph"),
        (3999, 3999, model(1000, "urph"), {"end_of_run": True, "changed": True}, None),
        (4000, 4000, model(1000, "urph"), {"end_of_run": False}, "urph"),
        (90_000, 20_000, model(16_000, "urph"), {"end_of_run": True, "changed": True}, None),
    ],
)
def test_training_policy(population, sampled, active, kwargs, expected) -> None:
    kwargs = {"changed": False, **kwargs}
    plan = plan_training(population, sampled, active, LibrarySettings(), **kwargs)
    assert (plan[0] if plan else None) == expected


def test_urph_after_train_min_and_retrained_on_growth(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=3, unrelated=4)  # 16 photos
    settings = dataclasses.replace(
        TINY, train_min=4, hasher_params={"urph": {"epochs": 1, "hidden": 32, "decoder_hidden": 32}}
    )
    with Library.open(tmp_path / "lib", settings=settings) as lib:
        events = list(lib.index([photos.root]))
        trainings = trainings_started(events)
        assert len(trainings) == 2, trainings  # at 4 photos (mid-run), then at 16 (4x growth)
        assert "urph on 4 photos" in trainings[0] and "urph on 16 photos" in trainings[1]
        status = lib.status()
        assert status.hasher == "urph trained on 16 photos"
        assert len(list((tmp_path / "lib" / "models").iterdir())) == 2  # active + previous
        results = lib.search([photos.originals[0]], top_k=1)[0].results
        assert results[0].path == photos.originals[0]


def test_indexing_goes_on_while_the_hasher_trains(tmp_path: Path, monkeypatch) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=3, unrelated=4)  # 16 photos
    settings = dataclasses.replace(
        TINY, train_min=4, hasher_params={"urph": {"epochs": 1, "hidden": 32, "decoder_hidden": 32}}
    )
    release = threading.Event()
    real_fit = URPHHasher.fit

    def held_fit(self, X, **kwargs):
        if len(X) == 4:  # the first training waits until the test lets it finish
            assert release.wait(60)
        return real_fit(self, X, **kwargs)

    monkeypatch.setattr(URPHHasher, "fit", held_fit)
    events = []
    with Library.open(tmp_path / "lib", settings=settings) as lib:
        for e in lib.index([photos.root]):
            events.append(e)
            if e.phase == "embed" and e.done == 8:
                release.set()
                while any(t.name == "hasher-fit" for t in threading.enumerate()):
                    time.sleep(0.01)
    models = dict(rows(tmp_path / "lib", "SELECT train_size, id FROM models"))
    start = next(i for i, e in enumerate(events) if e.phase == "train" and "4 photos" in e.message)
    switched = next(i for i, e in enumerate(events) if "Now searching" in e.message)
    between = [e.done for e in events[start:switched] if e.phase == "embed"]
    assert between == [8], between  # a batch was embedded while the hasher trained
    assert events[switched].phase == "embed" and events[switched].done == 12
    assert sorted(models) == [4, 16]  # then the 4x growth retrained at the end of the run
    for model_id in models.values():  # each version holds a code of every photo
        assert rows(tmp_path / "lib", f"SELECT COUNT(*) FROM codes WHERE model_id = {model_id}") == [(16,)]


def test_a_fit_beside_embedding_can_run_in_its_own_process(tmp_path: Path, monkeypatch) -> None:
    """The GPU arrangement (a fit process), forced on the CPU: the version trained in the child
    codes every photo and is the one the library searches with."""
    photos = make_photo_folder(tmp_path / "photos", groups=3, unrelated=3)  # 15: no 4x growth
    settings = dataclasses.replace(
        TINY, train_min=4, hasher_params={"urph": {"epochs": 1, "hidden": 32, "decoder_hidden": 32}}
    )
    monkeypatch.setattr(Indexer, "fit_in_process", True)
    log: list[tuple] = []
    real_init, real_start = fit_process.FitProcess.__init__, fit_process.FitProcess.start

    def logged_init(self, *args, **kwargs):
        log.append(("new process",))
        real_init(self, *args, **kwargs)

    def logged_start(self, hasher, X, **kwargs):
        log.append(("fit", len(X)))
        return real_start(self, hasher, X, **kwargs)

    monkeypatch.setattr(fit_process.FitProcess, "__init__", logged_init)
    monkeypatch.setattr(fit_process.FitProcess, "start", logged_start)
    with Library.open(tmp_path / "lib", settings=settings) as lib:
        for e in lib.index([photos.root]):
            if e.phase == "embed" and e.done:
                log.append(("embedded", e.done))
        query = photos.originals[0]
        best = lib.search([query], top_k=4)[0].results[0]
        assert best.path == query and best.hamming == 0
    # One child, started before the first photo was embedded; its fit came after the first batch.
    assert log[:3] == [("new process",), ("embedded", 4), ("fit", 4)], log
    assert log.count(("new process",)) == 1
    assert rows(tmp_path / "lib", "SELECT train_size, active FROM models") == [(4, 1)]
    assert rows(tmp_path / "lib", "SELECT COUNT(*) FROM codes") == [(15,)]


def test_small_reservoir_forces_an_early_model_and_every_photo_gets_a_code(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=3, unrelated=4)  # 16 photos
    settings = dataclasses.replace(TINY, reservoir_size=6)
    with Library.open(tmp_path / "lib", settings=settings) as lib:
        events = list(lib.index([photos.root]))
        trainings = trainings_started(events)
        assert len(trainings) == 1 and "itq on 4 photos" in trainings[0]
        status = lib.status()
        assert status.reservoir["count"] == 6 and status.indexed == 16
    codes = rows(tmp_path / "lib", "SELECT COUNT(*) FROM codes")
    assert codes == [(16,)]
    shutil.rmtree(photos.root)
