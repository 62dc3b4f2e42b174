"""A kill never changes the answers: `index` killed (-9) at each point of a run that trains its
first hashers beside embedding, then run again, leaves the library an uninterrupted run leaves:
the same versions trained on the same photos, byte-equal codes, reservoir and top-10 answers.

The run (48 photos, batches of 4, train_min 8, a reservoir of 40): URPH falls due at 8 photos
(trained beside the batches), again at 32 (4x growth), then the reservoir fills at 40 (the run
waits for the fit) and starts replacing. The process is killed where the indexer says
(IMAGEHASH_APP_TEST_KILL_AT, see indexer.py) — a real SIGKILL, so nothing is flushed or rolled
back by Python — and the next `index` runs as a person types it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from photos import PhotoSet, make_photo, make_photo_folder

from imagehash_app import cli
from imagehash_app.core.indexer import PENDING_FIT_KEY, Indexer
from imagehash_app.core.kill_points import TEST_KILL_ENV
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = LibrarySettings(
    backbone="tiny", weights="none", bits=32, device="cpu", batch_size=4, threads=1,
    train_min=8, reservoir_size=40,
    hasher_params={"urph": {"epochs": 2, "hidden": 16, "decoder_hidden": 16}},
)


def answers(lib_dir: Path, photos: PhotoSet) -> dict:
    """Everything a kill could change: versions, codes, reservoir, images, top-10 of each photo."""
    conn = sqlite3.connect(lib_dir / "catalog.sqlite3")
    try:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        state = {
            "models": conn.execute(
                "SELECT id, method, train_size, active, note FROM models ORDER BY id"
            ).fetchall(),
            "codes": conn.execute(
                "SELECT c.model_id, i.rel_path, c.code FROM codes c JOIN images i "
                "ON i.id = c.image_id ORDER BY c.model_id, i.rel_path"
            ).fetchall(),
            "reservoir": conn.execute(
                "SELECT i.rel_path, r.slot, r.feature FROM reservoir r JOIN images i "
                "ON i.id = r.image_id ORDER BY r.slot"
            ).fetchall(),
            "images": conn.execute(
                "SELECT id, rel_path, status, fingerprint FROM images ORDER BY id"
            ).fetchall(),
            "pending fit": conn.execute(
                "SELECT value FROM meta WHERE key = ?", (PENDING_FIT_KEY,)
            ).fetchall(),
        }
    finally:
        conn.close()
    with Library.open(lib_dir, read_only=True) as lib:
        state["top10"] = [
            [r.path.relative_to(photos.root).as_posix() for r in resp.results]
            for resp in lib.search(photos.all, top_k=10)
        ]
    return state


def index(lib_dir: Path, photos: PhotoSet) -> None:
    assert cli.main(["--library", str(lib_dir), "index", str(photos.root)]) == 0


def new_library(lib_dir: Path, settings: LibrarySettings = SETTINGS) -> None:
    Library.open(lib_dir, settings=settings).close()


def index_killed_at(lib_dir: Path, photos: PhotoSet, point: str) -> None:
    """`index` in a process of its own, killed (SIGKILL) at `point`; fails if it never got there."""
    env = {**os.environ, TEST_KILL_ENV: point, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-m", "imagehash_app", "--library", str(lib_dir), "index", str(photos.root)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert child.returncode == -signal.SIGKILL, f"never reached {point}: {child.stderr[-2000:]}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> PhotoSet:
    return make_photo_folder(tmp_path_factory.mktemp("resume") / "photos", groups=10, unrelated=8)


@pytest.fixture(scope="module")
def uninterrupted_dir(tmp_path_factory: pytest.TempPathFactory, photos: PhotoSet) -> Path:
    lib_dir = tmp_path_factory.mktemp("uninterrupted") / "lib"
    new_library(lib_dir)
    index(lib_dir, photos)
    return lib_dir


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_dir: Path, photos: PhotoSet) -> dict:
    state = answers(uninterrupted_dir, photos)
    assert len(photos.all) == 48
    assert [(m[1], m[2], m[3]) for m in state["models"]] == [("urph", 8, 0), ("urph", 32, 1)]
    assert len(state["reservoir"]) == 40 and state["pending fit"] == []
    assert sum(1 for c in state["codes"] if c[0] == state["models"][-1][0]) == 48
    return state


@pytest.mark.parametrize(
    "point",
    [
        "scanned",  # the scan committed, nothing embedded
        "batch:1",  # mid-embed, before any fit is due
        "due:1",  # the first fit just fell due and is running beside the batches
        "saved:1",  # its version's files written, not yet registered
        "encode:1",  # registering it: the snapshot's codes written, the transaction still open
        "activated:1",  # switched in, older versions not yet pruned
        "due:2",  # the 4x-growth retraining running
        "batch:11",  # past the reservoir's size: photos replace others in the sample
    ],
)
def test_a_kill_never_changes_the_answers(
    tmp_path: Path, photos: PhotoSet, uninterrupted: dict, point: str
) -> None:
    lib_dir = tmp_path / "lib"
    new_library(lib_dir)
    index_killed_at(lib_dir, photos, point)
    index(lib_dir, photos)
    resumed = answers(lib_dir, photos)
    for key, expected in uninterrupted.items():
        assert resumed[key] == expected, f"{key} differs after a kill at {point}"


def test_a_fit_killed_twice_is_still_the_one_that_fell_due(
    tmp_path: Path, photos: PhotoSet, uninterrupted: dict
) -> None:
    """Killed while the first fit runs, then again while the resumed run trains it again."""
    lib_dir = tmp_path / "lib"
    new_library(lib_dir)
    index_killed_at(lib_dir, photos, "due:1")
    index_killed_at(lib_dir, photos, "saved:1")
    index(lib_dir, photos)
    assert answers(lib_dir, photos) == uninterrupted


def test_a_recorded_fit_the_library_outgrew_is_dropped(tmp_path: Path) -> None:
    """Photos of its snapshot deleted before the resume: no exact fit is possible, so the record
    and its version's folder go, and the policy decides anew on the library as it is."""
    photos = make_photo_folder(tmp_path / "photos", groups=2, unrelated=2)
    lib_dir = tmp_path / "lib"
    new_library(lib_dir, dataclasses.replace(SETTINGS, train_min=1000))
    index_killed_at(lib_dir, photos, "saved:1")  # the end-of-run ITQ fit, its files written
    conn = sqlite3.connect(lib_dir / "catalog.sqlite3")
    (name,) = conn.execute(
        "SELECT json_extract(value, '$.name') FROM meta WHERE key = ?", (PENDING_FIT_KEY,)
    ).fetchone()
    conn.close()
    assert (lib_dir / "models" / name).is_dir()
    photos.unrelated[0].unlink()
    index(lib_dir, photos)
    conn = sqlite3.connect(lib_dir / "catalog.sqlite3")
    trained = conn.execute("SELECT method, train_size, active FROM models").fetchall()
    conn.close()
    assert trained == [("itq", len(photos.all) - 1, 1)]
    assert not (lib_dir / "models" / name).exists()


def test_a_kill_after_the_last_batch_still_refits_the_fallback(tmp_path: Path) -> None:
    """PCA-ITQ is refit at the end of each run that changed the library: killed right after its
    last batch, the run that resumes (nothing left to embed) must still refit it."""
    photos = make_photo_folder(tmp_path / "photos", groups=2, unrelated=2)
    settings = dataclasses.replace(SETTINGS, train_min=1000)
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    for lib_dir in (uninterrupted, killed):
        new_library(lib_dir, settings)
        index(lib_dir, photos)
    (photos.root / "later").mkdir()
    for n in range(4):
        make_photo(900 + n).save(photos.root / "later" / f"new{n}.jpg")
    index(uninterrupted, photos)
    index_killed_at(killed, photos, "batch:1")
    index(killed, photos)
    expected = answers(uninterrupted, photos)
    assert [(m[1], m[2], m[3]) for m in expected["models"]] == [("itq", 10, 0), ("itq", 14, 1)]
    assert answers(killed, photos) == expected


def test_a_fit_in_its_own_process_killed_at_the_end_is_trained_there_again(
    tmp_path: Path, photos: PhotoSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a GPU a fit beside the batches runs in a process of its own (forced here on the CPU).
    Killed while the run waits for it after the last batch, the resumed run, with nothing left
    to embed, trains it in such a process too: the same numbers as the run never interrupted."""
    monkeypatch.setattr(Indexer, "fit_in_process", True)
    settings = dataclasses.replace(SETTINGS, reservoir_size=1000)  # no wait before the end
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    new_library(reference, settings)
    index(reference, photos)
    expected = answers(reference, photos)
    assert [(m[1], m[2], m[3]) for m in expected["models"]] == [("urph", 8, 0), ("urph", 32, 1)]
    new_library(killed, settings)
    index_killed_at(killed, photos, "batch:12")  # the last batch: the 32-photo fit is recorded
    conn = sqlite3.connect(killed / "catalog.sqlite3")
    recorded = conn.execute(
        "SELECT json_array_length(value, '$.ids') FROM meta WHERE key = ?", (PENDING_FIT_KEY,)
    ).fetchall()
    conn.close()
    assert recorded == [(32,)]
    index(killed, photos)
    assert answers(killed, photos) == expected


FINETUNE_CHILD = """
import sys
from pathlib import Path
from imagehash_app.core.library import Library
with Library.open(Path(sys.argv[1])) as lib:
    list(lib.finetune(epochs=2, batch_size=2, force=True))
"""


def finetune(lib_dir: Path) -> None:
    with Library.open(lib_dir) as lib:
        gen = lib.finetune(epochs=2, batch_size=2, force=True)
        list(gen)


@pytest.fixture(scope="module")
def finetuned(
    tmp_path_factory: pytest.TempPathFactory, uninterrupted_dir: Path, photos: PhotoSet
) -> dict:
    reference = tmp_path_factory.mktemp("finetuned") / "lib"
    shutil.copytree(uninterrupted_dir, reference)
    finetune(reference)
    state = answers(reference, photos)
    assert [(m[1], m[3]) for m in state["models"]] == [("urph", 0), ("urph", 1)]
    assert state["pending fit"] == []
    return state


@pytest.mark.parametrize("point", ["finetune-saved", "reencoded:2"])
def test_a_killed_finetune_ends_as_an_uninterrupted_one(
    tmp_path: Path, uninterrupted_dir: Path, photos: PhotoSet, finetuned: dict, point: str
) -> None:
    """The 8 photos outside the reservoir are re-encoded 2 per transaction by running the
    backbone again; killed before the new version is registered or after 2 of those batches,
    `finetune` run again ends with the versions, codes and answers of one never interrupted."""
    killed = tmp_path / "killed"
    shutil.copytree(uninterrupted_dir, killed)
    env = {**os.environ, TEST_KILL_ENV: point, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", FINETUNE_CHILD, str(killed)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert child.returncode == -signal.SIGKILL, f"never reached {point}: {child.stderr[-2000:]}"
    finetune(killed)
    assert answers(killed, photos) == finetuned


def test_a_fit_is_the_same_while_another_thread_loads_versions(tmp_path: Path) -> None:
    """A resumed fit starts as the run loads its active version (and a window may search): the
    networks' seeded initial weights must not take draws from a version loaded meanwhile."""
    import threading

    import numpy as np

    from imagehash_app.core.hashing import load_hasher, make_hasher

    X = np.random.default_rng(1).normal(size=(300, 48)).astype(np.float32)
    params = {"epochs": 1, "hidden": 64, "decoder_hidden": 64}
    alone = make_hasher("urph", 32, 48, **params).fit(X, seed=3)
    alone.save(tmp_path / "version")
    stop = threading.Event()

    def load_versions() -> None:
        while not stop.is_set():
            load_hasher(tmp_path / "version")

    loader = threading.Thread(target=load_versions)
    loader.start()
    try:
        beside = [make_hasher("urph", 32, 48, **params).fit(X, seed=3) for _ in range(5)]
    finally:
        stop.set()
        loader.join()
    for fitted in beside:
        for key, value in alone.state_dict().items():
            np.testing.assert_array_equal(fitted.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        '["a list"]',
        '{"method": "urph", "why": "x", "ids": [1, 2], "seed": "x", "active": null, '
        '"name": "urph-0123456789ab"}',
        '{"method": "urph", "why": "x", "ids": [1, 2], "seed": 0, "active": null, '
        '"name": "../../victim"}',
    ],
)
def test_a_broken_fit_record_is_dropped_and_nothing_outside_is_touched(
    tmp_path: Path, record: str
) -> None:
    """The catalogue is input: a record that is not one the indexer wrote is dropped, and a name
    that would reach out of models/ is never written to nor deleted."""
    photos = make_photo_folder(tmp_path / "photos", groups=1, unrelated=2)
    lib_dir, victim = tmp_path / "lib", tmp_path / "victim"  # models/../../victim
    new_library(lib_dir)
    victim.mkdir()
    (victim / "keep").write_text("mine")
    conn = sqlite3.connect(lib_dir / "catalog.sqlite3")
    with conn:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (PENDING_FIT_KEY, record))
    conn.close()
    index(lib_dir, photos)
    state = answers(lib_dir, photos)
    assert state["pending fit"] == [] and [(m[1], m[3]) for m in state["models"]] == [("itq", 1)]
    assert (victim / "keep").read_text() == "mine"
