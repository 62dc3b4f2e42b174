"""Nothing lost, ever: the app deletes only what it created, refuses folders that are not its own,
keeps a library private, and read-only commands write nothing. Driven through `cli.main` as typed."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from photos import PhotoSet, make_photo_folder

from imagehash_app import cli
from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.library import Library
from imagehash_app.core.store import CATALOG_FILE, Catalog
from imagehash_app.core.versions import (
    VERSIONS_STARTED_KEY,
    UnsafeLibraryPathError,
    prune_models,
    save_version,
    version_path,
)

TINY_FLAGS = ["--backbone", "tiny", "--weights", "none", "--bits", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> PhotoSet:
    return make_photo_folder(tmp_path_factory.mktemp("safety") / "photos", groups=2, unrelated=2)


@pytest.fixture
def indexed(tmp_path: Path, photos: PhotoSet) -> Path:
    lib = tmp_path / "lib"
    assert cli.main(["--library", str(lib), "index", str(photos.root), *TINY_FLAGS]) == 0
    return lib


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` with its size and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def test_a_folder_that_is_not_a_library_is_refused_and_left_alone(tmp_path, photos, capsys) -> None:
    """The issue's repro: --library at someone's folder with models/ and graph/ of their own."""
    x = tmp_path / "x"
    (x / "models" / "mywork").mkdir(parents=True)
    (x / "graph").mkdir()
    (x / "models" / "mywork" / "f").write_text("data")
    (x / "graph" / "g").write_text("n")
    before = tree(x)
    assert cli.main(["--library", str(x), "folders", "add", str(photos.root)]) == 1
    err = capsys.readouterr().err
    assert "is not an imagehash-app library and is not empty" in err and "Traceback" not in err
    assert tree(x) == before
    assert cli.main(["--library", str(x), "index", str(photos.root), *TINY_FLAGS]) == 1
    assert tree(x) == before


@pytest.mark.parametrize("argv", [["--library", ""], ["--library", "  "]])
def test_an_empty_library_location_is_a_usage_error(tmp_path, monkeypatch, photos, argv, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "folders", "add", str(photos.root)])
    assert exc.value.code == 2
    assert "library location is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ImagehashError, match="location is empty"):
        Library.open("")


def test_a_file_as_the_library_is_refused(tmp_path, capsys) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert cli.main(["--library", str(f), "folders", "add", str(tmp_path)]) == 1
    assert cli.main(["--library", str(f), "status"]) == 1
    err = capsys.readouterr().err
    assert err.count("is a file, not a library folder") == 2
    assert f.read_text() == "mine"


def test_an_empty_folder_becomes_a_private_library(tmp_path, photos) -> None:
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    assert cli.main(["--library", str(empty), "folders", "add", str(photos.root)]) == 0
    assert (empty / CATALOG_FILE).is_file()
    assert stat.S_IMODE(empty.stat().st_mode) == 0o700
    fresh = tmp_path / "new" / "lib"
    assert cli.main(["--library", str(fresh), "folders", "add", str(photos.root)]) == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_status_warns_when_others_can_read_the_library(indexed, capsys) -> None:
    assert cli.main(["--library", str(indexed), "status"]) == 0
    assert "Warning" not in capsys.readouterr().out
    indexed.chmod(0o755)
    assert cli.main(["--library", str(indexed), "status"]) == 0
    out = capsys.readouterr().out
    assert "Other users of this computer can read this library" in out
    assert f"chmod 700 {indexed}" in out


def test_opening_keeps_files_the_app_did_not_make(indexed, photos) -> None:
    """An existing library with a person's own files in models/ and graph/: all survive a writer."""
    mine = {
        indexed / "models" / "mywork" / "f": "data",
        indexed / "models" / "urph-aaaaaaaaaaaa" / "weights.safetensors": "looks like ours",
        indexed / "graph" / "g": "n",
        indexed / "graph" / "notes.hnsw.txt": "n",
    }
    for path, text in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert cli.main(["--library", str(indexed), "index", str(photos.root)]) == 0
    assert cli.main(["--library", str(indexed), "folders", "add", str(photos.root)]) == 0
    for path, text in mine.items():
        assert path.read_text() == text


def test_a_killed_trainings_folder_is_removed_and_only_that(indexed) -> None:
    """A version folder recorded as started but never registered (a kill) goes at the next open;
    a graph file of a version that no longer exists too; names the app never makes stay."""
    with Library.open(indexed) as lib:
        cat = Catalog.open(indexed / CATALOG_FILE)
        try:
            model = cat.active_model()
            from imagehash_app.core.hashing import load_hasher

            hasher = load_hasher(version_path(indexed, model.dir))
            orphan = save_version(cat, indexed, hasher)  # then "killed" before registering
        finally:
            cat.close()
        assert lib.status().model is not None
    stale_graph = indexed / "graph" / "999.hnsw"
    stale_graph.parent.mkdir(exist_ok=True)
    stale_graph.write_bytes(b"old")
    keep = indexed / "graph" / "999.hnsw.bak"
    keep.write_bytes(b"mine")
    assert (indexed / orphan).is_dir()
    with Library.open(indexed) as lib:
        assert not (indexed / orphan).exists()
        assert not stale_graph.exists() and keep.read_bytes() == b"mine"
        assert (indexed / model.dir).is_dir()  # the registered version stays
        assert lib._cat.get_json(VERSIONS_STARTED_KEY, []) == []


@pytest.mark.parametrize("hostile", ["../victim", "{victim}", "models/../../victim", "models/x/.."])
def test_a_catalogue_path_never_leads_a_deletion_out_of_the_library(
    indexed, tmp_path, hostile, capsys
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.jpg").write_bytes(b"photo")
    dir_value = hostile.format(victim=victim)
    conn = sqlite3.connect(indexed / CATALOG_FILE)
    with conn:
        conn.execute(
            "INSERT INTO models(method, bits, backbone, weights_id, created, active, dir) "
            "VALUES ('urph', 32, 'tiny', 'x', 0, 0, ?)", (dir_value,),
        )
    conn.close()
    with pytest.raises(UnsafeLibraryPathError):
        version_path(indexed, dir_value)
    # A routine command reads the versions: one message, no traceback, nothing deleted.
    assert cli.main(["--library", str(indexed), "models", "list"]) == 0
    hostile_id = max(m.id for m in Catalog.open(indexed / CATALOG_FILE, read_only=True).models())
    assert cli.main(["--library", str(indexed), "models", "activate", str(hostile_id)]) == 1
    assert "does not make" in capsys.readouterr().err
    # Pruning drops the row but never touches what it names.
    cat = Catalog.open(indexed / CATALOG_FILE)
    try:
        assert hostile_id in prune_models(cat, indexed, keep=1)
    finally:
        cat.close()
    assert (victim / "precious.jpg").read_bytes() == b"photo"
    assert (indexed / "models").is_dir() and any((indexed / "models").iterdir())


def test_read_only_commands_write_nothing(indexed, photos, capsys) -> None:
    before = tree(indexed)
    assert not (indexed / "graph").exists()
    for argv in (
        ["status"], ["status", "--json"], ["folders", "list"], ["models", "list"],
        ["search", str(photos.originals[0]), "--top", "3"],
    ):
        assert cli.main(["--library", str(indexed), *argv]) == 0, argv
    capsys.readouterr()
    after = tree(indexed)
    assert after == before


@pytest.mark.parametrize("top", ["0", "-5", "many"])
def test_top_must_be_a_count(indexed, photos, top, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--library", str(indexed), "search", str(photos.originals[0]), "--top", top])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--top" in err and "no indexed photos" not in err


def test_no_results_say_why(indexed, photos, tmp_path, capsys) -> None:
    conn = sqlite3.connect(indexed / CATALOG_FILE)
    with conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM models")
    conn.close()
    # With no hasher, a search ranks by the stored features (issue 14): results, no reason.
    assert cli.main(["--library", str(indexed), "search", str(photos.originals[0])]) == 0
    out = capsys.readouterr().out
    assert str(photos.originals[0].name) in out and "no results" not in out
    conn = sqlite3.connect(indexed / CATALOG_FILE)
    with conn:
        conn.execute("DELETE FROM reservoir")
    conn.close()
    assert cli.main(["--library", str(indexed), "search", str(photos.originals[0])]) == 0
    out = capsys.readouterr().out
    assert "have no hasher yet" in out and "no indexed photos" not in out
    empty = tmp_path / "empty-lib"
    assert cli.main(["--library", str(empty), "folders", "add", str(photos.root)]) == 0
    assert cli.main(["--library", str(empty), "search", str(photos.originals[0])]) == 0
    assert "has no indexed photos yet" in capsys.readouterr().out


def test_warnings_of_libraries_go_to_the_log_not_the_terminal(indexed, photos, monkeypatch, capsys) -> None:
    """Pillow warns about odd files ("possibly corrupt EXIF data"): details for the log."""
    import warnings

    from PIL import Image

    from imagehash_app import failures

    real_open = Image.open

    def warning_open(*args, **kwargs):
        warnings.warn("Possibly corrupt EXIF data.", UserWarning, stacklevel=2)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", warning_open)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["--library", str(indexed), "search", str(photos.originals[0])]) == 0
    assert "corrupt EXIF" not in capsys.readouterr().err
    assert "UserWarning: Possibly corrupt EXIF data." in failures.log_path().read_text()
