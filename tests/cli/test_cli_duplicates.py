"""`imagehash-app duplicates`: the table, JSON lines with exactly one keep per group, --trash."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from duplicate_photos import make_copy_folder

from imagehash_app.cli import main
from imagehash_app.core.duplicates import library_ops
from imagehash_app.core.library import Library


@pytest.fixture
def indexed(tmp_path: Path, tiny_settings, library_dir: Path):
    copies = make_copy_folder(tmp_path / "photos", originals=1,
                              edits=("q30", "quarter", "rot90", "mirror", "png"))
    with Library.open(library_dir, settings=tiny_settings) as lib:
        list(lib.index([copies.root]))
    return copies


def test_json_lines_one_keeper_each(indexed, capsys):
    assert main(["duplicates", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    photos = json.loads(lines[0])["photos"]
    assert {Path(p["path"]) for p in photos} == indexed.group_of(indexed.originals[0])
    assert sum(p["keep"] for p in photos) == 1
    assert {"bytes", "width", "height", "score"} <= set(photos[0])


def test_table_and_keep_rule(indexed, capsys):
    assert main(["duplicates", "--keep", "date,pixels", "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "Group 1: 6 photos" in out and "Keep the older photo" in out
    with pytest.raises(SystemExit) as usage:
        main(["duplicates", "--keep", "size"])
    assert usage.value.code == 2


def test_trash_asks_first_and_moves_the_others(indexed, capsys, monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(library_ops, "system_trash", sent.append)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["duplicates", "--trash"]) == 1
    assert sent == [] and "Nothing was moved" in capsys.readouterr().err
    assert main(["duplicates", "--trash", "--yes"]) == 0
    assert len(sent) == 5 and "Moved 5 files to the trash" in capsys.readouterr().err
    assert main(["duplicates", "--json"]) == 0
    assert capsys.readouterr().out.strip() == ""


def test_trash_failure_exits_1_and_says_where(indexed, capsys, monkeypatch):
    def refuse(path: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(library_ops, "system_trash", refuse)
    assert main(["duplicates", "--trash", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "Permission denied" in err and "left in place" in err


def test_search_marks_copies_and_the_query_itself(indexed, tmp_path, capsys):
    """A rotated, re-saved copy from outside the library finds its copies marked as such; the
    library's own photo as a query is marked "this"."""
    from PIL import Image

    original = indexed.originals[0]
    outside = tmp_path / "turned.jpg"
    Image.open(original).rotate(270, expand=True).save(outside, quality=80)
    assert main(["search", str(outside), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["in_library"] is False
    copies = {Path(r["path"]) for r in answer["results"] if r.get("is_copy")}
    assert original in copies and copies <= indexed.group_of(original)
    assert all(0.0 <= r["copy_score"] <= 1.0 for r in answer["results"] if "copy_score" in r)
    assert main(["search", str(original)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(original)
    assert sum(" this " in line for line in lines[1:]) == 1
    assert any(" copy " in line for line in lines[1:])
