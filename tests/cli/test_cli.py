"""The command line, driven as users and scripts drive it: exit codes, JSON shapes, messages."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from photos import PhotoSet, make_photo_folder

from imagehash_app import cli
from imagehash_app.core.indexer import IndexProgress
from imagehash_app.core.library import Library

TINY_FLAGS = ["--backbone", "tiny", "--weights", "none", "--bits", "32", "--device", "cpu"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhotoSet]:
    root = tmp_path_factory.mktemp("cli")
    photos = make_photo_folder(root / "photos", groups=2, unrelated=3)
    assert cli.main(["--library", str(root / "lib"), "index", str(photos.root), *TINY_FLAGS]) == 0
    return root / "lib", photos


def test_search_json_one_object_per_query_best_first(indexed, capsys) -> None:
    lib, photos = indexed
    queries = [photos.originals[0], photos.unrelated[1]]
    assert cli.main(["--library", str(lib), "search", *map(str, queries), "--top", "3", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for query, line in zip(queries, lines, strict=True):
        obj = json.loads(line)
        assert set(obj) == {"query", "query_b64", "in_library", "results"}
        assert obj["query"] == str(query) and obj["in_library"] == (query in photos.all)
        assert len(obj["results"]) == 3
        for r in obj["results"]:
            assert set(r) - {"copy_score", "is_copy"} == {"path", "path_b64", "score", "hamming"}
            assert ("copy_score" in r) == ("is_copy" in r)
            assert Path(r["path"]).is_absolute()
            assert isinstance(r["score"], float) and isinstance(r["hamming"], int)
        assert obj["results"][0]["path"] == str(query) and obj["results"][0]["hamming"] == 0
    first = json.loads(lines[0])["results"]
    assert {r["path"] for r in first[1:]} <= {str(p) for p in photos.copies[photos.originals[0]]}


def test_search_table_is_readable(indexed, capsys) -> None:
    lib, photos = indexed
    assert cli.main(["--library", str(lib), "search", str(photos.originals[1]), "--top", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(photos.originals[1])
    assert out[1].split()[0] == "1" and out[1].split()[-1] == str(photos.originals[1])
    assert out[1].split()[3] == "this"  # the query itself, as it is in the library
    assert len(out) == 3


def test_status_json_and_text(indexed, capsys) -> None:
    lib, photos = indexed
    assert cli.main(["--library", str(lib), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    for key in ("library", "indexed", "pending", "skipped", "offline", "skipped_reasons", "backbone",
                "weights", "bits", "hasher", "reservoir", "bytes_per_image", "folders"):
        assert key in status
    assert status["indexed"] == len(photos.all) and status["backbone"] == "tiny"
    assert status["hasher"].startswith("itq: fallback until 1,000 photos")
    assert cli.main(["--library", str(lib), "status"]) == 0
    text = capsys.readouterr().out
    assert f"{len(photos.all)} indexed" in text and "Hasher:    itq" in text


def test_status_json_through_the_installed_entry_point(indexed) -> None:
    lib, photos = indexed
    out = subprocess.run(
        [sys.executable, "-m", "imagehash_app", "--library", str(lib), "status", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert json.loads(out)["indexed"] == len(photos.all)


def test_changing_the_backbone_of_a_library_is_refused_with_advice(indexed, capsys) -> None:
    lib, photos = indexed
    code = cli.main(["--library", str(lib), "index", str(photos.root), "--backbone", "resnet50"])
    err = capsys.readouterr().err
    assert code == 1
    assert "created with backbone tiny" in err and "--library" in err and "Traceback" not in err


def test_locked_library_message(indexed, capsys) -> None:
    lib, photos = indexed
    with Library.open(lib):
        code = cli.main(["--library", str(lib), "index", str(photos.root)])
        err = capsys.readouterr().err
        assert cli.main(["--library", str(lib), "status", "--json"]) == 0  # readers still work
    assert code == 1
    assert "is in use by another imagehash-app process (pid" in err


def test_errors_are_messages_not_tracebacks(tmp_path: Path, capsys) -> None:
    assert cli.main(["--library", str(tmp_path / "none"), "search", str(tmp_path / "x.jpg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imagehash-app: There is no library") and "Traceback" not in err
    assert cli.main(["--library", str(tmp_path / "lib"), "index", str(tmp_path / "missing")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_folders_add_list_remove(tmp_path: Path, capsys) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=1, unrelated=0)
    lib = ["--library", str(tmp_path / "lib")]
    assert cli.main([*lib, "folders", "add", str(photos.root)]) == 0
    assert cli.main([*lib, "folders", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{photos.root}\t0 indexed\t0 pending" in out
    assert cli.main([*lib, "folders", "remove", str(photos.root)]) == 0
    capsys.readouterr()
    assert cli.main([*lib, "folders", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_no_subcommand_without_a_window_says_so(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "imagehash_app.gui.app", None)  # import fails
    assert cli.main([]) == 1
    assert "the window is not available" in capsys.readouterr().err


def test_every_subcommand_is_registered() -> None:
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert {"index", "search", "status", "folders", "eval", "finetune", "models"} <= set(sub.choices)


def test_progress_bar_on_a_terminal_and_lines_otherwise() -> None:
    events = [
        IndexProgress("embed", 0, 10, 0.0, None, "Indexing 10 photos"),
        IndexProgress("embed", 5, 10, 2.5, 2.0),
        IndexProgress("embed", 10, 10, 2.5, 0.0),
        IndexProgress("done", 10, 10, 2.5, 0.0, "10 indexed"),
    ]
    tty, plain = io.StringIO(), io.StringIO()
    for stream, is_tty in ((tty, True), (plain, False)):
        printer = cli.ProgressPrinter(stream, tty=is_tty)
        for ev in events:
            printer.update(ev)
        printer.close()
    assert "\r" in tty.getvalue() and "[##############--------------] 5/10  2.5/s  ETA 2s" in tty.getvalue()
    lines = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue()
    assert lines[0] == "embed: 0/10  Indexing 10 photos"
    assert lines[-2:] == ["embed: 10/10  2.5/s", "10 indexed"]
