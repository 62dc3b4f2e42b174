"""The SQLite catalogue: schema migrations, WAL, codes round trip, read-only access."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.store import SCHEMA_VERSION, Catalog
from imagehash_app.core.store import schema as catalog_mod
from imagehash_app.core.stored_paths import b64, display, from_db, to_db

TABLES = {"folders", "images", "models", "codes", "reservoir", "meta"}


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrates_an_empty_database_and_reopens_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    sqlite3.connect(path).close()  # an empty file at schema version 0
    cat = Catalog.open(path)
    assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert tables(cat.conn) >= TABLES
    assert cat.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cat.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    cat.close()
    Catalog.open(path).close()  # nothing left to migrate


def test_migrations_apply_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalog.sqlite3"
    Catalog.open(path).close()
    extra = "CREATE TABLE extra(x INTEGER); INSERT INTO extra VALUES (42)"
    monkeypatch.setattr(catalog_mod, "MIGRATIONS", [*catalog_mod.MIGRATIONS, extra])
    monkeypatch.setattr(catalog_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    cat = Catalog.open(path)
    assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert cat.conn.execute("SELECT x FROM extra").fetchall() == [(42,)]
    cat.close()


def test_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(ImagehashError, match="newer imagehash-app"):
        Catalog.open(path)


def test_read_only_open_of_missing_library_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ImagehashError, match="index"):
        Catalog.open(tmp_path / "none" / "catalog.sqlite3", read_only=True)


def test_codes_round_trip_in_image_order(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite3")
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2**63, size=(5, 2), dtype=np.uint64) * np.uint64(2)
    with cat.transaction():
        folder = cat.add_folder(tmp_path)
        ids = [
            cat.conn.execute(
                "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status) "
                "VALUES (?, ?, 1, 1, 'indexed')", (folder.id, f"{i}.jpg"),
            ).lastrowid
            for i in range(5)
        ]
        model = cat.add_model("itq", 128, "tiny", "w", "models/x", 5, "test")
        cat.put_codes(model, ids[::-1], codes[::-1])
    got_ids, got = cat.load_codes(model, 2)
    assert got_ids.tolist() == ids
    np.testing.assert_array_equal(got, codes)
    assert got.dtype == np.uint64
    with cat.transaction():  # deleting an image drops its code
        cat.conn.execute("DELETE FROM images WHERE id = ?", (ids[0],))
    assert cat.load_codes(model, 2)[0].tolist() == ids[1:]
    cat.close()


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite3")
    with pytest.raises(RuntimeError), cat.transaction():
        cat.add_folder(tmp_path)
        raise RuntimeError("boom")
    assert cat.folders() == []
    cat.close()


def test_readers_see_commits_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    writer = Catalog.open(path)
    reader = Catalog.open(path, read_only=True)
    before = reader.change_token()
    with writer.transaction():
        writer.set_meta("k", "v")
    assert reader.get_meta("k") == "v"
    assert reader.change_token() != before
    with pytest.raises(sqlite3.OperationalError):
        reader.conn.execute("INSERT INTO meta VALUES ('a', 'b')")
    reader.close()
    writer.close()


ODD = os.fsdecode(b"/photos/caf\xe9/b\xff.jpg")  # Latin-1 bytes: not UTF-8


def test_stored_paths_are_text_when_utf8_and_exact_bytes_otherwise() -> None:
    assert to_db("/photos/été.jpg") == "/photos/été.jpg"
    assert to_db(Path(ODD)) == b"/photos/caf\xe9/b\xff.jpg"
    assert from_db(to_db(ODD)) == ODD and from_db("/a") == "/a"
    assert display(ODD) == "/photos/caf\ufffd/b\ufffd.jpg"
    assert base64.b64decode(b64(ODD)) == b"/photos/caf\xe9/b\xff.jpg"


def test_odd_paths_round_trip_through_the_catalogue(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite3")
    folder_path = Path(os.fsdecode(b"/photos/caf\xe9"))
    with cat.transaction():
        folder = cat.add_folder(folder_path)
        plain = cat.add_folder(Path("/photos/plain"))
        assert cat.add_folder(folder_path).id == folder.id  # one stored form: found again
        ids = [
            cat.conn.execute(
                "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status, reason) "
                "VALUES (?, ?, 1, 1, 'skipped', 'empty file')", (f.id, to_db(rel)),
            ).lastrowid
            for f, rel in ((folder, os.fsdecode(b"b\xff.jpg")), (plain, "a.jpg"))
        ]
        with pytest.raises(sqlite3.IntegrityError):  # UNIQUE holds for BLOB paths too
            cat.conn.execute(
                "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status) "
                "VALUES (?, ?, 1, 1, 'pending')", (folder.id, to_db(os.fsdecode(b"b\xff.jpg"))),
            )
        cat.set_unreadable(folder.id, [(os.fsdecode(b"sub\xfe"), "permission denied")])
    odd_file = Path(ODD)
    assert [f.path for f in cat.folders()] == [folder_path, Path("/photos/plain")]
    assert cat.folder_by_path(folder_path).id == folder.id
    assert cat.paths_of(ids) == {ids[0]: odd_file, ids[1]: Path("/photos/plain/a.jpg")}
    assert cat.image_id_for(odd_file) == ids[0]
    assert cat.skipped() == [(odd_file, "empty file"), (Path("/photos/plain/a.jpg"), "empty file")]
    assert cat.unreadable() == [(folder_path / os.fsdecode(b"sub\xfe"), "permission denied")]
    with cat.transaction():  # the folder's photos handed to a parent keep exact paths
        parent = cat.add_folder(Path("/photos"))
        cat.move_folder_images(folder.id, parent.id, os.fsdecode(b"caf\xe9") + "/")
    assert cat.paths_of(ids[:1]) == {ids[0]: odd_file}
    assert cat.conn.execute(
        "SELECT rel_path FROM images WHERE id = ?", (ids[0],)
    ).fetchone()[0] == b"caf\xe9/b\xff.jpg"
    cat.close()


def test_schema_2_catalogue_migrates_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in catalog_mod.MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO folders(path, added) VALUES ('/p', 1.0)")
    conn.execute(
        "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status) "
        "VALUES (1, 'x/été.jpg', 3, 4, 'indexed')"
    )
    conn.close()
    cat = Catalog.open(path)
    assert cat.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert cat.paths_of([1]) == {1: Path("/p/x/été.jpg")} and cat.unreadable() == []
    cat.close()
