"""The engine's side of failures: disk-full recognised, the real error kept, the rolling backup,
repair, and broken hasher versions set aside without leaving the library."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from imagehash_app.core import health, versions
from imagehash_app.core.errors import (
    DiskFullError,
    ImagehashError,
    IncompatibleModelError,
    LibraryDamagedError,
    is_disk_full,
)
from imagehash_app.core.store import Catalog


class SafetensorLike(Exception):
    """safetensors turns the OS error into its own type, keeping the words."""


def _chained() -> Exception:
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as inner:
        try:
            raise RuntimeError("saving failed") from inner
        except RuntimeError as outer:
            return outer


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    sqlite3.OperationalError("database or disk is full"),
    SafetensorLike("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                   "message: \"No space left on device\" })"),
    _chained(),
    DiskFullError("x"),
], ids=["enospc", "edquot", "sqlite-full", "safetensors", "chained", "ours"])
def test_disk_full_is_recognised(exc) -> None:
    assert is_disk_full(exc)


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOENT, "No such file"),
    sqlite3.OperationalError("database is locked"),
    ValueError("full of surprises"),
])
def test_other_errors_are_not_disk_full(exc) -> None:
    assert not is_disk_full(exc)


def _catalog(tmp_path: Path) -> Catalog:
    return Catalog.open(tmp_path / "lib" / "catalog.sqlite3")


def test_sqlite_full_inside_a_transaction_is_reported_as_a_full_disk(tmp_path: Path) -> None:
    """SQLITE_FULL (made real with max_page_count) rolls the transaction back inside SQLite; the
    error people see is the full disk, not "cannot rollback - no transaction is active"."""
    cat = _catalog(tmp_path)
    with cat.transaction():
        cat.set_meta("kept", "yes")
    pages = cat.conn.execute("PRAGMA page_count").fetchone()[0]
    cat.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(DiskFullError) as info, cat.transaction():
        for i in range(2000):
            cat.set_meta(f"k{i}", "x" * 500)
    assert "full" in str(info.value) and "cannot rollback" not in str(info.value)
    assert not cat.conn.in_transaction
    assert cat.get_meta("kept") == "yes" and cat.get_meta("k0") is None
    assert health.quick_check(cat.conn) is None
    cat.close()


def test_a_failing_block_is_rolled_back_and_its_error_kept(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    with pytest.raises(KeyError, match="mine"), cat.transaction():
        cat.set_meta("a", "1")
        raise KeyError("mine")
    assert cat.get_meta("a") is None
    cat.close()


def test_backup_is_a_sound_copy_replaced_whole(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    lib = tmp_path / "lib"
    with cat.transaction():
        cat.add_folder(Path("/photos/one"))
    target = health.make_backup(cat.conn, lib)
    assert target == lib / health.BACKUP_FILE and health.check_file(target) is None
    with cat.transaction():
        cat.add_folder(Path("/photos/two"))
    health.make_backup(cat.conn, lib)
    folders, _ = health.salvage(target)
    assert folders == ["/photos/one", "/photos/two"]
    assert not list(lib.glob(f"{health.BACKUP_FILE}.tmp*"))
    cat.close()


def _corrupt_page(path: Path, page: int) -> None:
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    data[(page - 1) * size : page * size] = b"\xa5" * size
    path.write_bytes(bytes(data))


def _filled(tmp_path: Path) -> tuple[Catalog, Path]:
    cat = _catalog(tmp_path)
    with cat.transaction():
        cat.add_folder(Path("/photos/kept"))
        for i in range(300):
            cat.set_meta(f"row{i}", "x" * 200)
        cat.set_json("settings", {"backbone": "tiny", "bits": 32})
    cat.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return cat, tmp_path / "lib"


def test_a_damaged_catalogue_never_replaces_the_backup(tmp_path: Path) -> None:
    cat, lib = _filled(tmp_path)
    health.make_backup(cat.conn, lib)
    before = (lib / health.BACKUP_FILE).read_bytes()
    cat.close()
    pages = (lib / "catalog.sqlite3").stat().st_size // 4096
    _corrupt_page(lib / "catalog.sqlite3", pages - 1)
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    with pytest.raises(LibraryDamagedError, match="repair --restore-backup"):
        health.make_backup(conn, lib)
    conn.close()
    assert (lib / health.BACKUP_FILE).read_bytes() == before


def test_restore_puts_the_backup_back_and_keeps_the_damaged_file(tmp_path: Path) -> None:
    cat, lib = _filled(tmp_path)
    health.make_backup(cat.conn, lib)
    cat.close()
    (lib / "catalog.sqlite3").write_bytes(b"junk" * 100)
    kept = health.restore_backup(lib)
    assert kept.read_bytes() == b"junk" * 100
    cat = Catalog.open(lib / "catalog.sqlite3")
    assert [f.path for f in cat.folders()] == [Path("/photos/kept")]
    cat.close()


def test_restore_without_a_usable_backup_says_rebuild(tmp_path: Path) -> None:
    cat, lib = _filled(tmp_path)
    cat.close()
    with pytest.raises(LibraryDamagedError, match="repair --rebuild"):
        health.restore_backup(lib)
    assert (lib / "catalog.sqlite3").exists()  # untouched


def test_rebuild_salvages_folders_and_settings_from_the_damaged_catalogue(tmp_path: Path) -> None:
    cat, lib = _filled(tmp_path)
    cat.close()
    pages = (lib / "catalog.sqlite3").stat().st_size // 4096
    _corrupt_page(lib / "catalog.sqlite3", pages - 1)  # a meta page; folders survive
    assert health.check_file(lib / "catalog.sqlite3") is not None
    kept, folders = health.rebuild_catalog(lib)
    assert folders == ["/photos/kept"] and kept.exists()
    cat = Catalog.open(lib / "catalog.sqlite3")
    assert [f.path for f in cat.folders()] == [Path("/photos/kept")]
    assert health.quick_check(cat.conn) is None
    cat.close()


def test_open_names_a_damaged_catalogue(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "catalog.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    for read_only in (False, True):
        with pytest.raises(LibraryDamagedError, match="is damaged"):
            Catalog.open(lib / "catalog.sqlite3", read_only=read_only)


def test_translate_leaves_unknown_errors_alone(tmp_path: Path) -> None:
    assert health.translate(ValueError("x"), tmp_path) is None
    assert isinstance(health.translate(ValueError("x"), tmp_path, opening=True), ImagehashError)
    err = health.translate(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert "read-only" in str(err)


class _Model:
    def __init__(self, id: int, dir: str, active: bool = True) -> None:
        self.id, self.dir, self.active, self.method = id, dir, active, "itq"


def test_set_aside_renames_inside_the_library_only(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    lib = tmp_path / "lib"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("mine")
    mid = cat.add_model("itq", 32, "tiny", "w", "../victim", 1, "")
    cat.set_active_model(mid)
    model = cat.models()[0]
    assert versions.set_aside_model(cat, lib, model, "broken") == ""
    assert (victim / "precious").read_text() == "mine" and not (tmp_path / "victim.broken").exists()
    assert cat.models() == []
    (record,) = cat.get_json(versions.SET_ASIDE_KEY)
    assert record["dir"] == "../victim" and record["kept_as"] == ""
    cat.close()


def test_usable_model_falls_back_and_sets_aside(tmp_path: Path) -> None:
    cat = _catalog(tmp_path)
    lib = tmp_path / "lib"
    for name in ("itq-00000000000a", "itq-00000000000b"):
        (lib / "models" / name).mkdir(parents=True)
    old = cat.add_model("itq", 32, "tiny", "w", "models/itq-00000000000a", 1, "")
    new = cat.add_model("itq", 32, "tiny", "w", "models/itq-00000000000b", 1, "")
    cat.set_active_model(new)

    def load(m):
        if m.id == new:
            raise IncompatibleModelError("bad weights")
        return "hasher"

    # read-only: skipped, nothing written
    model, hasher = versions.usable_model(cat, lib, load, writable=False)
    assert model.id == old and hasher == "hasher" and cat.active_model().id == new
    model, _ = versions.usable_model(cat, lib, load, writable=True)
    assert model.id == old and cat.active_model().id == old
    assert (lib / "models" / "itq-00000000000b.broken").is_dir() and not (lib / "models" / "itq-00000000000b").exists()
    cat.close()
