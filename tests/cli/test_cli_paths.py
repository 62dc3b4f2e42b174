"""File names are bytes: odd names, unreadable folders, symbolic links and non-file queries,
driven through the command line as a person types it."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from photos import make_photo, make_photo_folder

from imagehash_app import cli
from imagehash_app.core.store import schema as catalog_mod

TINY_FLAGS = ["--backbone", "tiny", "--weights", "none", "--bits", "32", "--device", "cpu"]


def odd(path: Path, name: bytes) -> Path:
    """`path / name` where `name` is raw bytes (not valid UTF-8)."""
    return Path(os.fsdecode(os.fsencode(path) + b"/" + name))


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def strict_stdout(monkeypatch: pytest.MonkeyPatch) -> io.BytesIO:
    """Swap stdout for one that raises on anything not encodable as UTF-8 (LC_ALL=C.UTF-8 with
    PYTHONIOENCODING=utf-8:strict); returns the bytes written."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", errors="strict"))
    return raw


def printed(raw: io.BytesIO) -> str:
    sys.stdout.flush()
    return raw.getvalue().decode("utf-8")  # strict: what was written is valid UTF-8


@pytest.fixture(scope="module")
def odd_library(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A library over a folder whose own name, one subfolder's name and one file's name are not
    valid UTF-8."""
    tmp = tmp_path_factory.mktemp("odd")
    root = odd(tmp, b"photos\xff")
    photos = make_photo_folder(root, groups=2, unrelated=1)
    bad_file = odd(root / "group0", b"bad\xff.jpg")
    photos.originals[0].rename(bad_file)
    bad_dir = odd(root, b"group\xfe1")
    (root / "group1").rename(bad_dir)
    lib = tmp / "lib"
    assert cli.main(["--library", str(lib), "index", str(root), *TINY_FLAGS]) == 0
    return {"lib": lib, "root": root, "file": bad_file, "dir": bad_dir, "count": len(photos.all),
            "tmp": tmp}


def test_odd_names_are_indexed_and_status_names_them_exactly(odd_library, capsys) -> None:
    lib, root = odd_library["lib"], odd_library["root"]
    assert cli.main(["--library", str(lib), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["indexed"] == odd_library["count"] and status["skipped"] == 0
    (folder,) = status["folders"]
    assert unb64(folder["path_b64"]) == os.fsencode(root)
    assert folder["path"] == str(root) and folder["indexed"] == odd_library["count"]
    # In the catalogue the odd names are BLOBs of their bytes, the others plain TEXT.
    conn = sqlite3.connect(lib / "catalog.sqlite3")
    assert conn.execute("SELECT path, typeof(path) FROM folders").fetchall() == [
        (os.fsencode(root), "blob")
    ]
    kinds = dict(conn.execute("SELECT typeof(rel_path), COUNT(*) FROM images GROUP BY 1"))
    conn.close()
    assert kinds == {"blob": 5, "text": odd_library["count"] - 5}  # bad\xff.jpg + group\xfe1/*


def test_search_json_gives_the_exact_bytes_of_query_and_results(odd_library, capsys) -> None:
    lib, query = odd_library["lib"], odd_library["file"]
    assert cli.main(["--library", str(lib), "search", str(query), "--top", "20", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["query"] == str(query) and unb64(obj["query_b64"]) == os.fsencode(query)
    first = obj["results"][0]
    assert unb64(first["path_b64"]) == os.fsencode(query) and first["hamming"] == 0
    assert len(obj["results"]) == odd_library["count"]
    for r in obj["results"]:  # every path, odd or not, leads back to the very file
        assert os.fsdecode(unb64(r["path_b64"])) == r["path"]
        assert Path(r["path"]).is_file()
    under_bad_dir = [r for r in obj["results"] if r["path"].startswith(str(odd_library["dir"]))]
    assert len(under_bad_dir) == 4


def test_table_search_status_and_folders_print_under_a_strict_utf8_locale(
    odd_library, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib, query = odd_library["lib"], odd_library["file"]
    shown = os.fsencode(query).decode("utf-8", "replace")
    raw = strict_stdout(monkeypatch)
    assert cli.main(["--library", str(lib), "search", str(query), "--top", "3"]) == 0
    lines = printed(raw).splitlines()
    assert lines[0] == shown and "bad\ufffd.jpg" in lines[0]
    assert lines[1].split()[0] == "1" and lines[1].endswith(shown)
    assert len(lines) == 4

    raw = strict_stdout(monkeypatch)
    assert cli.main(["--library", str(lib), "status"]) == 0
    assert "photos\ufffd" in printed(raw)

    raw = strict_stdout(monkeypatch)
    assert cli.main(["--library", str(lib), "folders", "list"]) == 0
    assert printed(raw).startswith(os.fsencode(odd_library["root"]).decode("utf-8", "replace"))


def test_a_query_file_named_in_bytes_outside_the_library(odd_library, capsys) -> None:
    query = odd(odd_library["tmp"], b"query\xe9\xff.jpg")
    shutil.copyfile(odd_library["file"], query)
    lib = odd_library["lib"]
    assert cli.main(["--library", str(lib), "search", str(query), "--top", "2", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert unb64(obj["query_b64"]) == os.fsencode(query)
    assert unb64(obj["results"][0]["path_b64"]) == os.fsencode(odd_library["file"])


def test_a_folder_with_an_odd_name_is_absorbed_by_its_parent(tmp_path: Path, capsys) -> None:
    parent = tmp_path / "all"
    child = odd(parent, b"trip\xff")
    make_photo_folder(child, groups=1, unrelated=1)
    bad = odd(child / "group0", b"x\xfe.jpg")
    (child / "group0" / "original.jpg").rename(bad)
    lib = ["--library", str(tmp_path / "lib")]
    assert cli.main([*lib, "index", str(child), *TINY_FLAGS]) == 0
    assert cli.main([*lib, "folders", "add", str(parent)]) == 0  # the child's photos move over
    assert cli.main([*lib, "status", "--json"]) == 0
    capsys.readouterr()
    assert cli.main([*lib, "search", str(bad), "--top", "1", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)["results"]
    assert unb64(hit["path_b64"]) == os.fsencode(bad) and hit["hamming"] == 0
    assert cli.main([*lib, "status", "--json"]) == 0
    (folder,) = json.loads(capsys.readouterr().out)["folders"]
    assert unb64(folder["path_b64"]) == os.fsencode(parent) and folder["indexed"] == 5


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "library_schema2"


def catalogue_rows(path: Path) -> dict[str, list]:
    conn = sqlite3.connect(path)
    try:
        # images' columns as schema 2 had them: schema 5's format/taken/quality are filled in
        # by the index run's signature pass (checked below)
        columns = {"images": "id, folder_id, rel_path, size, mtime_ns, fingerprint, width, "
                             "height, status, reason, indexed_at"}
        return {
            table: conn.execute(
                f"SELECT {columns.get(table, '*')} FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("images", "models", "codes", "reservoir")
        }
    finally:
        conn.close()


def test_a_library_made_before_byte_safe_paths_opens_migrates_and_answers_the_same(
    tmp_path: Path, capsys
) -> None:
    """tests/fixtures/library_schema2 was written by commit ae96e08 (schema 2; how: its
    make_library_schema2.py). Opened by this version it keeps its photos, codes and answers."""
    expected = json.loads((FIXTURE / "expected.json").read_text())
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    catalogue = tmp_path / "lib" / "catalog.sqlite3"
    conn = sqlite3.connect(catalogue)  # the test's move of the library and its photos
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.execute("UPDATE folders SET path = ?", (str(tmp_path / "photos"),))
    for rel, mtime_ns in conn.execute("SELECT rel_path, mtime_ns FROM images").fetchall():
        os.utime(tmp_path / "photos" / rel, ns=(mtime_ns, mtime_ns))  # git keeps no mtimes
    conn.commit()
    conn.close()
    before = catalogue_rows(catalogue)

    lib = ["--library", str(tmp_path / "lib")]
    assert cli.main([*lib, "index", str(tmp_path / "photos")]) == 0  # a writer migrates
    assert "0 new, 0 changed, 0 moved, 0 deleted" in capsys.readouterr().err
    assert catalogue_rows(catalogue) == before
    conn = sqlite3.connect(catalogue)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == catalog_mod.SCHEMA_VERSION
    # photos indexed before copy signatures existed got theirs in that run (issue 15)
    assert conn.execute("SELECT COUNT(*) FROM signatures").fetchone()[0] == len(before["images"])
    conn.close()

    assert cli.main([*lib, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {k: status[k] for k in expected["status"]} == expected["status"]
    assert status["unreadable"] == []
    for query, answer in expected["search_top3"].items():
        assert cli.main([*lib, "search", str(tmp_path / query), "--top", "3", "--json"]) == 0
        results = json.loads(capsys.readouterr().out)["results"]
        got = [(str(Path(r["path"]).relative_to(tmp_path)), r["score"]) for r in results]
        assert got[0] == (query, 1.0) and answer[0][:2] == [query, 1.0]
        assert {p for p, _ in got} == {p for p, _, _ in answer}
        assert sorted(s for _, s in got) == pytest.approx(sorted(s for _, s, _ in answer), abs=1e-3)


def deny(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make listing `folder` fail as `chmod 000` would for a user who is not root."""
    real = os.scandir

    def scandir(path=".", *args, **kwargs):
        if os.fsencode(os.fspath(path)) == os.fsencode(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)


def test_an_unreadable_folder_is_reported_and_its_photos_wait_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=2, unrelated=1)
    locked = photos.root / "group1"
    lib = ["--library", str(tmp_path / "lib")]
    with monkeypatch.context() as m:
        deny(m, locked)
        assert cli.main([*lib, "index", str(photos.root), *TINY_FLAGS]) == 0
        assert "1 could not be read" in capsys.readouterr().err
    assert cli.main([*lib, "status"]) == 0
    text = capsys.readouterr().out
    assert "5 indexed" in text
    assert "1 folder could not be read" in text and f"  {locked} (permission denied)" in text
    assert cli.main([*lib, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(u["path"], u["reason"]) for u in status["unreadable"]] == [
        (str(locked), "permission denied")
    ]
    assert unb64(status["unreadable"][0]["path_b64"]) == os.fsencode(locked)

    assert cli.main([*lib, "index", str(photos.root)]) == 0  # readable again: indexed, no longer reported
    capsys.readouterr()
    assert cli.main([*lib, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["indexed"] == 9 and status["unreadable"] == []

    with monkeypatch.context() as m:  # unreadable once more: its photos are kept, offline
        deny(m, locked)
        assert cli.main([*lib, "index", str(photos.root)]) == 0
    capsys.readouterr()
    assert cli.main([*lib, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["indexed"], status["offline"]) == (5, 4)
    assert cli.main([*lib, "search", str(photos.originals[1]), "--top", "1", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)["results"]
    assert hit["path"] == str(photos.originals[1])  # still found while its folder is locked
    assert cli.main([*lib, "index", str(photos.root)]) == 0
    capsys.readouterr()
    assert cli.main([*lib, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["indexed"], status["offline"], status["unreadable"]) == (9, 0, [])


def test_symbolic_links_stay_inside_their_folder_and_index_a_file_once(
    tmp_path: Path, capsys
) -> None:
    a, b, outside = tmp_path / "a", tmp_path / "b", tmp_path / "outside"
    for folder, seed in ((a, 1), (b, 2), (outside, 3)):
        folder.mkdir()
        make_photo(seed).save(folder / "own.jpg")
    (a / "sub").mkdir()
    make_photo(4).save(a / "sub" / "deep.jpg")
    (a / "to_outside").symlink_to(outside, target_is_directory=True)  # out of a: not followed
    (a / "to_b").symlink_to(b, target_is_directory=True)  # b is a folder of its own: not twice
    (a / "outside.jpg").symlink_to(outside / "own.jpg")  # a file out of a: not followed
    (a / "again.jpg").symlink_to(a / "own.jpg")  # reachable directly: indexed once
    (a / "alias").symlink_to(a / "sub", target_is_directory=True)  # same
    (a / "sub" / "loop").symlink_to(a, target_is_directory=True)
    lib = ["--library", str(tmp_path / "lib")]
    assert cli.main([*lib, "index", str(a), str(b), *TINY_FLAGS]) == 0
    capsys.readouterr()
    assert cli.main([*lib, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    counts = {Path(f["path"]).name: f["indexed"] for f in status["folders"]}
    assert counts == {"a": 2, "b": 1} and status["indexed"] == 3
    assert cli.main([*lib, "search", str(a / "own.jpg"), "--top", "10", "--json"]) == 0
    paths = sorted(r["path"] for r in json.loads(capsys.readouterr().out)["results"])
    assert paths == sorted(map(str, [a / "own.jpg", a / "sub" / "deep.jpg", b / "own.jpg"]))


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "missing"])
def test_a_query_that_is_not_a_photo_file_says_what_it_is(
    odd_library, tmp_path: Path, kind: str, capsys
) -> None:
    query = {"folder": tmp_path, "fifo": tmp_path / "pipe.jpg", "device": Path("/dev/null"),
             "missing": tmp_path / "gone.jpg"}[kind]
    if kind == "fifo":
        os.mkfifo(query)  # opening it would hang: the test finishing shows it is not opened
    code = cli.main(["--library", str(odd_library["lib"]), "search", str(query)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    expected = {
        "folder": f"{query} is a folder, not a photo",
        "fifo": f"{query} is not a regular file",
        "device": "/dev/null is not a regular file",
        "missing": f"Cannot search with {query}: there is no such file.",
    }[kind]
    assert expected in err


def test_a_chosen_folder_that_cannot_be_listed_is_reported_not_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=1, unrelated=1)
    lib = ["--library", str(tmp_path / "lib")]
    assert cli.main([*lib, "index", str(photos.root), *TINY_FLAGS]) == 0
    with monkeypatch.context() as m:
        deny(m, photos.root)
        assert cli.main([*lib, "index", str(photos.root)]) == 0
    capsys.readouterr()
    assert cli.main([*lib, "status"]) == 0
    text = capsys.readouterr().out
    assert "0 indexed, 0 pending, 0 skipped, 5 offline" in text
    assert f"1 folder could not be read (let this user read it, then run index again):\n" \
        f"  {photos.root} (permission denied)" in text
