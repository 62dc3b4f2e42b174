"""Hostile libraries and failing disks through the command line: one sentence, an exit code, never
a traceback; damaged catalogues come with the way out, broken hasher versions are set aside."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from photos import PhotoSet, make_photo_folder
from safetensors.numpy import load_file, save_file

from imagehash_app import cli
from imagehash_app.core import health
from imagehash_app.failures import EXIT_DAMAGED, EXIT_DISK_FULL, EXIT_ERROR

TINY_FLAGS = ["--backbone", "tiny", "--weights", "none", "--bits", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhotoSet]:
    root = tmp_path_factory.mktemp("hostile")
    photos = make_photo_folder(root / "photos", groups=2, unrelated=3)
    assert cli.main(["--library", str(root / "lib"), "index", str(photos.root), *TINY_FLAGS]) == 0
    return root / "lib", photos


@pytest.fixture
def lib(made, tmp_path: Path) -> Path:
    """A private copy of the indexed library, to damage."""
    copy = tmp_path / "lib"
    shutil.copytree(made[0], copy)
    return copy


@pytest.fixture
def photos(made) -> PhotoSet:
    return made[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_sentence(err: str) -> str:
    """stderr holds exactly one line, from us, and no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("imagehash-app:")]
    assert len(lines) == 1, err
    return lines[0]


def model_dir(lib: Path) -> Path:
    (row,) = sqlite3.connect(lib / "catalog.sqlite3").execute(
        "SELECT dir FROM models WHERE active"
    ).fetchall()
    return lib / row[0]


def sound(lib: Path) -> bool:
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    try:
        return health.quick_check(conn) is None
    finally:
        conn.close()


# --- damaged catalogues ------------------------------------------------------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database " * 400)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_garbage, _truncated, _zero], ids=["garbage", "truncated", "zero-byte"])
@pytest.mark.parametrize("command", ["search", "status", "index", "folders-add"])
def test_damaged_catalogue_says_so_and_how_to_repair(lib, photos, capsys, damage, command) -> None:
    for side in ("-wal", "-shm"):
        (lib / f"catalog.sqlite3{side}").unlink(missing_ok=True)
    damage(lib / "catalog.sqlite3")
    argv = {
        "search": ["search", str(photos.originals[0])],
        "status": ["status"],
        "index": ["index", str(photos.root)],
        "folders-add": ["folders", "add", str(photos.root)],
    }[command]
    code, out, err = run(capsys, "--library", str(lib), *argv)
    assert code == EXIT_DAMAGED
    line = one_sentence(err)
    assert "is damaged" in line and "repair --restore-backup" in line and "repair --rebuild" in line
    assert "details in" in line


def test_restore_backup_brings_the_library_back_and_keeps_the_damaged_file(lib, photos, capsys) -> None:
    _garbage(lib / "catalog.sqlite3")
    code, out, _ = run(capsys, "--library", str(lib), "repair", "--restore-backup")
    assert code == 0 and "kept as" in out
    kept = list(lib.glob("catalog.damaged-*.sqlite3"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")
    assert sound(lib)
    code, out, _ = run(capsys, "--library", str(lib), "search", str(photos.originals[0]), "--top", "1")
    assert code == 0 and str(photos.originals[0]) in out


def test_without_a_backup_only_rebuild_is_offered(lib, photos, capsys) -> None:
    _truncated(lib / "catalog.sqlite3")
    (lib / health.BACKUP_FILE).unlink()
    code, _, err = run(capsys, "--library", str(lib), "search", str(photos.originals[0]))
    assert code == EXIT_DAMAGED and "--restore-backup" not in one_sentence(err)
    assert "repair --rebuild" in one_sentence(err)


def test_rebuild_keeps_the_folders_and_indexes_them_again(lib, photos, capsys) -> None:
    _garbage(lib / "catalog.sqlite3")  # nothing to read in it: folders and settings from the backup
    code, out, _ = run(capsys, "--library", str(lib), "repair", "--rebuild")
    assert code == 0 and "1 folder(s)" in out
    assert list(lib.glob("catalog.damaged-*.sqlite3"))
    code, out, _ = run(capsys, "--library", str(lib), "folders", "list")
    assert code == 0 and f"{photos.root}\t{len(photos.all)} indexed" in out


def test_repair_without_a_library_is_refused(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "--library", str(tmp_path / "none"), "repair", "--rebuild")
    assert code == EXIT_ERROR and "no library" in one_sentence(err)


def test_library_that_is_a_regular_file(tmp_path, photos, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    for argv in (["index", str(photos.root)], ["search", str(photos.originals[0])], ["status"]):
        code, _, err = run(capsys, "--library", str(path), *argv)
        assert code == EXIT_ERROR
        assert "not a library folder" in one_sentence(err) or "no library" in one_sentence(err)
    assert path.read_text() == "mine"


# --- broken hasher versions --------------------------------------------------------------------
def _garbage_weights(folder: Path) -> None:
    (folder / "weights.safetensors").write_bytes(b"\x00garbage" * 50)


def _empty_weights(folder: Path) -> None:
    (folder / "weights.safetensors").write_bytes(b"")


def _wrong_shape_weights(folder: Path) -> None:
    tensors = load_file(str(folder / "weights.safetensors"))
    save_file({k: np.zeros((3, 5), v.dtype) for k, v in tensors.items()}, str(folder / "weights.safetensors"))


def _nonsense_json(folder: Path) -> None:
    (folder / "hasher.json").write_text('["not", "a", "hasher"]')


def _nonsense_values(folder: Path) -> None:
    (folder / "hasher.json").write_text('{"method": "itq", "bits": "many", "feature_dim": "x"}')


@pytest.mark.parametrize(
    "damage", [_garbage_weights, _empty_weights, _wrong_shape_weights, _nonsense_json, _nonsense_values],
    ids=["garbage-weights", "empty-weights", "wrong-shape", "nonsense-json", "nonsense-values"],
)
def test_broken_hasher_is_set_aside_and_index_heals(lib, photos, capsys, damage) -> None:
    folder = model_dir(lib)
    damage(folder)
    code, _, err = run(capsys, "--library", str(lib), "search", str(photos.originals[0]))
    assert code == EXIT_DAMAGED
    assert "cannot be loaded" in one_sentence(err) and "index" in one_sentence(err)

    code, _, err = run(capsys, "--library", str(lib), "index", str(photos.root))
    assert code == 0 and "Traceback" not in err and "Set aside hasher" in err
    assert not folder.exists() and folder.with_name(folder.name + ".broken").is_dir()  # kept
    code, out, _ = run(capsys, "--library", str(lib), "status")
    assert code == 0 and "Set aside: hasher" in out and ".broken" in out
    code, out, _ = run(capsys, "--library", str(lib), "search", str(photos.originals[0]), "--top", "1")
    assert code == 0 and str(photos.originals[0]) in out


def test_previous_hasher_version_takes_over_when_the_active_one_breaks(lib, photos, capsys) -> None:
    # A second version, made by indexing one more photo: the first stays kept as the previous one.
    extra = photos.root / "extra"
    extra.mkdir()
    shutil.copy(photos.unrelated[0], extra / "copy.jpg")
    try:
        assert run(capsys, "--library", str(lib), "index", str(photos.root))[0] == 0
        conn = sqlite3.connect(lib / "catalog.sqlite3")
        models = conn.execute("SELECT id, active FROM models ORDER BY id").fetchall()
        conn.close()
        assert len(models) == 2 and models[1][1] == 1
        _garbage_weights(model_dir(lib))
        code, _, err = run(capsys, "--library", str(lib), "folders", "list")
        assert code == 0
        assert run(capsys, "--library", str(lib), "index", str(photos.root))[0] == 0
        conn = sqlite3.connect(lib / "catalog.sqlite3")
        rows = conn.execute("SELECT id, active FROM models ORDER BY id").fetchall()
        conn.close()
        assert models[1][0] not in [r[0] for r in rows]  # the broken one is gone from the catalogue
        code, out, _ = run(capsys, "--library", str(lib), "search", str(extra / "copy.jpg"), "--top", "1")
        assert code == 0 and str(extra / "copy.jpg") in out
    finally:
        shutil.rmtree(extra)


# --- broken rows -------------------------------------------------------------------------------
def test_broken_code_row_is_left_out_of_search_and_healed_by_index(lib, photos, capsys) -> None:
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    victim = conn.execute("SELECT image_id FROM codes ORDER BY image_id LIMIT 1").fetchone()[0]
    conn.execute("UPDATE codes SET code = x'0102' WHERE image_id = ?", (victim,))
    conn.commit()
    conn.close()
    code, out, err = run(capsys, "--library", str(lib), "search", str(photos.unrelated[0]), "--top", "3")
    assert code == 0 and "Traceback" not in err
    assert run(capsys, "--library", str(lib), "index", str(photos.root))[0] == 0
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    lengths = {r[0] for r in conn.execute("SELECT LENGTH(code) FROM codes")}
    coded = conn.execute("SELECT COUNT(*) FROM codes WHERE image_id = ?", (victim,)).fetchone()[0]
    conn.close()
    assert lengths == {8} and coded == 1


def test_broken_reservoir_row_is_dropped_and_the_photo_embedded_again(lib, photos, capsys) -> None:
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    victim = conn.execute("SELECT image_id FROM reservoir ORDER BY image_id LIMIT 1").fetchone()[0]
    conn.execute("UPDATE reservoir SET feature = x'010203' WHERE image_id = ?", (victim,))
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "--library", str(lib), "status")
    assert code == 0 and "Traceback" not in err
    code, _, err = run(capsys, "--library", str(lib), "index", str(photos.root))
    assert code == 0 and "Traceback" not in err
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    lengths = {r[0] for r in conn.execute("SELECT LENGTH(feature) FROM reservoir")}
    status = conn.execute("SELECT status FROM images WHERE id = ?", (victim,)).fetchone()[0]
    conn.close()
    assert len(lengths) == 1 and status == "indexed"


# --- read-only libraries -----------------------------------------------------------------------
@contextlib.contextmanager
def read_only_mount(source: Path, target: Path) -> Iterator[Path]:
    target.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot bind-mount here ({exc}); the monkeypatched test covers read-only")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True, capture_output=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)


def test_read_only_mount_searches_and_refuses_changes(lib, photos, capsys, tmp_path) -> None:
    assert not (lib / "catalog.sqlite3-shm").exists()  # the writer closed cleanly
    with read_only_mount(lib, tmp_path / "ro") as ro:
        code, out, err = run(capsys, "--library", str(ro), "search", str(photos.originals[0]), "--top", "1")
        assert code == 0, err
        assert str(photos.originals[0]) in out
        assert run(capsys, "--library", str(ro), "status")[0] == 0
        code, _, err = run(capsys, "--library", str(ro), "index", str(photos.root))
        assert code == EXIT_ERROR and "read-only" in one_sentence(err)


def test_read_only_folder_falls_back_to_immutable(lib, photos, capsys, monkeypatch) -> None:
    """Where no mount is allowed: SQLite cannot make the -shm, so `mode=ro` fails as it does on a
    read-only folder; the catalogue is then opened immutable and search still works."""
    from imagehash_app.core.store import catalog

    real = sqlite3.connect
    seen: list[str] = []

    def connect(target, *args, **kwargs):
        seen.append(str(target))
        if str(target).endswith("?mode=ro"):
            conn = real(target, *args, **kwargs)
            conn.close()
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(catalog.sqlite3, "connect", connect)
    code, out, err = run(capsys, "--library", str(lib), "search", str(photos.originals[0]), "--top", "1")
    assert code == 0, err
    assert any(s.endswith("?immutable=1") for s in seen)


# --- the unexpected ----------------------------------------------------------------------------
def test_unexpected_error_is_one_line_with_the_log(lib, capsys, monkeypatch, _log_dir) -> None:
    from imagehash_app.core.library import Library

    def boom(self):
        raise RuntimeError("something odd\non two lines")

    monkeypatch.setattr(Library, "status", boom)
    code, _, err = run(capsys, "--library", str(lib), "status")
    assert code == EXIT_ERROR
    line = one_sentence(err)
    assert "failed unexpectedly: RuntimeError: something odd on two lines" in line
    log = _log_dir / "imagehash-app.log"
    assert str(log) in line
    assert "Traceback" in log.read_text() and "something odd" in log.read_text()


def test_unwritable_log_still_gives_the_sentence(lib, capsys, monkeypatch, tmp_path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("IMAGEHASH_APP_LOG_DIR", str(blocker / "logs"))  # under a file: cannot exist
    _garbage(lib / "catalog.sqlite3")
    code, _, err = run(capsys, "--library", str(lib), "status")
    assert code == EXIT_DAMAGED and "details in" not in one_sentence(err)


# --- full disks (injected; the real one is below) ----------------------------------------------
def _disk_full_sqlite(*args, **kwargs):
    raise sqlite3.OperationalError("database or disk is full")


def test_disk_full_at_a_catalogue_write(lib, photos, capsys, monkeypatch, tmp_path) -> None:
    from imagehash_app.core import indexer

    more = make_photo_folder(tmp_path / "more", groups=1, unrelated=2, seed=7)
    monkeypatch.setattr(indexer, "reservoir_add", _disk_full_sqlite)
    code, _, err = run(capsys, "--library", str(lib), "index", str(more.root))
    assert code == EXIT_DISK_FULL
    assert "disk" in one_sentence(err) and "full" in one_sentence(err)
    monkeypatch.undo()
    assert sound(lib)
    assert run(capsys, "--library", str(lib), "index", str(more.root))[0] == 0  # it goes on
    code, out, _ = run(capsys, "--library", str(lib), "search", str(more.originals[0]), "--top", "1")
    assert code == 0 and str(more.originals[0]) in out


def test_disk_full_while_saving_a_hasher(lib, photos, capsys, monkeypatch, tmp_path) -> None:
    from imagehash_app.core.hashing.base import Hasher

    def full(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    more = make_photo_folder(tmp_path / "more", groups=1, unrelated=2, seed=8)
    monkeypatch.setattr(Hasher, "save", full)
    code, _, err = run(capsys, "--library", str(lib), "index", str(more.root))
    assert code == EXIT_DISK_FULL and "full" in one_sentence(err)
    monkeypatch.undo()
    assert sound(lib)
    assert run(capsys, "--library", str(lib), "index", str(more.root))[0] == 0
    assert run(capsys, "--library", str(lib), "search", str(more.originals[0]))[0] == 0


def test_disk_full_while_writing_the_backup_keeps_the_previous_one(lib, photos, capsys, monkeypatch, tmp_path) -> None:
    before = (lib / health.BACKUP_FILE).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    more = make_photo_folder(tmp_path / "more", groups=1, unrelated=1, seed=9)
    monkeypatch.setattr(health.os, "fsync", full)
    code, _, err = run(capsys, "--library", str(lib), "index", str(more.root))
    assert code == EXIT_DISK_FULL and "previous backup is kept" in one_sentence(err)
    monkeypatch.undo()
    assert (lib / health.BACKUP_FILE).read_bytes() == before
    assert not list(lib.glob(f"{health.BACKUP_FILE}.tmp*"))
    assert sound(lib)
    assert run(capsys, "--library", str(lib), "search", str(more.originals[0]))[0] == 0


# --- a real full disk --------------------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(target: Path, size: str) -> Iterator[Path]:
    target.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
            check=True, capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the injected full-disk tests cover the rest")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` until `leave` bytes are free; returns the filler file."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(free - leave, 0))
    return filler


def test_real_enospc_indexing_into_a_full_tmpfs(photos, capsys, tmp_path) -> None:
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        lib = disk / "lib"
        assert run(capsys, "--library", str(lib), "index", str(photos.root), *TINY_FLAGS)[0] == 0
        many = make_photo_folder(tmp_path / "many", groups=6, unrelated=20, seed=3)
        filler = fill(disk, leave=40_000)
        code, _, err = run(capsys, "--library", str(lib), "index", str(many.root))
        assert code == EXIT_DISK_FULL, err
        line = one_sentence(err)
        assert "full" in line and "free some space" in line
        filler.unlink()
        assert sound(lib)
        assert run(capsys, "--library", str(lib), "index", str(many.root))[0] == 0
        code, out, _ = run(capsys, "--library", str(lib), "search", str(many.originals[0]), "--top", "1")
        assert code == 0 and str(many.originals[0]) in out


def test_disk_full_outside_the_library_names_that_place(lib, capsys, monkeypatch, tmp_path) -> None:
    """An export (or any file the user chose) on a full disk: exit 4, naming where it was."""
    from imagehash_app.core.library import Library

    out = tmp_path / "exports" / "result.json"

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(Library, "status", full)
    code, _, err = run(capsys, "--library", str(lib), "status")
    line = one_sentence(err)
    assert code == EXIT_DISK_FULL and f"disk holding {out.parent} is full" in line
    assert str(lib) not in line.split("details in")[0]


def test_usage_errors_are_argparse_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["search"])
    assert info.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_interrupted_is_130_and_one_sentence(lib, capsys, monkeypatch) -> None:
    from imagehash_app.core.library import Library

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Library, "status", interrupted)
    code, _, err = run(capsys, "--library", str(lib), "status")
    assert code == 130 and "interrupted" in one_sentence(err)
