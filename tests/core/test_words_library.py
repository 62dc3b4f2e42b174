"""Words through the real indexer and the Library: read while indexing (paths and embedded XMP),
read again after an edit, counted in status, suggested while typing, learnt by UGACH in the
words fine-tune (kept or rolled back), and answering text queries with and without the words."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from photos import make_photo
from words_photos import save_jpeg

from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.core.words import crossmodal

TINY = LibrarySettings(backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2)
FOLDERS = {"2019 Lisbon Trams": 100, "Porto": 200, "GrandmasGarden": 300}


def make_library_photos(root: Path) -> Path:
    photos = root / "photos"
    for name, seed in FOLDERS.items():
        for i in range(6):
            save_jpeg(make_photo(seed + i, (64, 48)), photos / name / f"IMG_{1000 + i}.jpg")
    for i in range(4):  # camera folder, no words but the embedded ones on two of them
        keywords = ["tram", "yellow"] if i < 2 else None
        save_jpeg(make_photo(400 + i, (64, 48)), photos / "DCIM" / "100CANON" / f"DSC0{i}.jpg",
                  xmp_keywords=keywords)
    return photos


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("words")
    photos = make_library_photos(root)
    with Library.open(root / "library", settings=TINY) as lib:
        phases = [e.phase for e in lib.index([photos])]
    assert "words" in phases and phases[-1] == "done"
    return root / "library", photos


def test_words_are_read_while_indexing_and_counted(library) -> None:
    path, photos = library
    with Library.open(path, read_only=True) as lib:
        status = lib.status()
        vocab = dict(lib.vocabulary())
        carried = lib.words_of(photos / "DCIM" / "100CANON" / "DSC00.jpg")
        assert lib.words_of(photos / "DCIM" / "100CANON" / "DSC03.jpg") == []
    assert status.words["photos"] == 20  # 18 in named folders, 2 with embedded keywords
    assert vocab["lisbon"] == 6 and vocab["grandmas"] == 6 and vocab["tram"] == 2
    assert "img" not in vocab and "2019" not in vocab and "canon" not in vocab
    assert ("tram", "keyword") in carried and ("yellow", "keyword") in carried


def test_typing_suggests_words_from_the_vocabulary(library) -> None:
    path, _ = library
    with Library.open(path, read_only=True) as lib:
        assert lib.suggest_words("lis") == ["lisbon"]
        assert lib.suggest_words("tr") == ["trams", "tram"]  # most carried first
        assert lib.suggest_words("porto ga") == ["garden"]
        assert lib.suggest_words("porto ") == []


def test_without_a_words_version_text_finds_the_photos_carrying_the_words(library) -> None:
    path, photos = library
    with Library.open(path, read_only=True) as lib:
        answer = lib.search_text("Lisbon", top_k=20)
        assert not lib.words_finetune_plan().offered  # 20 photos carry words, 50 are needed
    assert answer.words == ["lisbon"] and "not learnt" in answer.note
    assert {r.path.parent.name for r in answer.results} == {"2019 Lisbon Trams"}
    assert len(answer.results) == 6 and all(r.has_words for r in answer.results)


def test_unknown_words_are_named(library) -> None:
    path, _ = library
    with Library.open(path, read_only=True) as lib:
        answer = lib.search_text("zanzibar", top_k=5)
    assert answer.results == [] and answer.unknown == ["zanzibar"]


def test_words_finetune_keep_search_and_roll_back(library, monkeypatch) -> None:
    path, photos = library
    monkeypatch.setattr(crossmodal, "MIN_PHOTOS_WITH_WORDS", 10)
    with Library.open(path) as lib:
        assert lib.words_finetune_plan().offered
        gen = lib.finetune_words(epochs=2)
        phases = []
        while True:
            try:
                phases.append(next(gen).phase)
            except StopIteration as stop:
                result = stop.value
                break
        assert "train" in phases and result.trained_on > 0
        assert lib.status().words["model"] is None  # inactive until kept
        lib.activate_words_model(result.model_id)
        assert lib.status().words["model"]["id"] == result.model_id
        answer = lib.search_text("porto", top_k=10)
        assert len(answer.results) == 10
        with_words = [r for r in answer.results if r.has_words]
        assert with_words and len(with_words) < 10  # photos with and without the word
        assert all(r.path.parent.name == "Porto" for r in with_words)
        suggested = lib.suggest_keywords(photos / "DCIM" / "100CANON" / "DSC03.jpg")
        assert suggested and all(0 < share <= 1 for _, share in suggested)
        lib.activate_words_model(None)  # roll back: carriers only again
        assert "not learnt" in lib.search_text("porto").note


def test_an_edited_photo_is_read_again_on_update(library) -> None:
    path, photos = library
    target = photos / "Porto" / "IMG_1000.jpg"
    save_jpeg(make_photo(200, (64, 48)), target, xmp_keywords=["Ribeira"])
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    with Library.open(path) as lib:
        list(lib.update())
        assert ("ribeira", "keyword") in lib.words_of(target)
        assert ("porto", "folder") in lib.words_of(target)


def test_a_library_indexed_before_words_gets_them_on_the_next_update(tmp_path: Path) -> None:
    """tests/fixtures/library_schema2 predates words (schema 2): opening it migrates, and the next
    update reads the words of the photos it already had, without re-embedding any."""
    import shutil
    import sqlite3

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "library_schema2"
    shutil.copytree(fixture, tmp_path, dirs_exist_ok=True)
    conn = sqlite3.connect(tmp_path / "lib" / "catalog.sqlite3")  # the test's move of the library
    conn.execute("UPDATE folders SET path = ?", (str(tmp_path / "photos"),))
    for rel, mtime_ns in conn.execute("SELECT rel_path, mtime_ns FROM images").fetchall():
        os.utime(tmp_path / "photos" / rel, ns=(mtime_ns, mtime_ns))
    conn.commit()
    conn.close()
    with Library.open(tmp_path / "lib") as lib:
        events = list(lib.update())
        status = lib.status()
        assert lib.words_of(tmp_path / "photos" / "misc" / "other0.jpg") == [("other", "file")]
        original = lib.words_of(tmp_path / "photos" / "group0" / "original.jpg")
        assert ("group", "folder") in original and ("original", "file") in original
    assert not any(e.phase == "embed" and e.done for e in events)  # nothing embedded again
    assert any(e.phase == "words" and e.done == e.total > 0 for e in events)
    assert status.words["photos"] == status.indexed > 0


def test_words_versions_never_touch_a_folder_the_app_did_not_make(tmp_path: Path, monkeypatch) -> None:
    """A catalogue naming a words version `../victim` (edited, or damaged): rolling back never
    removes that folder, and indexing turns the version off instead of loading from it."""
    from imagehash_app.core.store import Catalog
    from imagehash_app.core.versions import UnsafeLibraryPathError
    from imagehash_app.core.words import crossmodal

    root = tmp_path / "lib"
    root.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "photo.jpg").write_bytes(b"a person's file")
    cat = Catalog.open(root / "catalog.sqlite3")
    try:
        with cat.transaction():
            foreign = cat.add_word_model("../victim", 32, "")
            outside = cat.add_word_model(str(victim), 32, "")
            newest = cat.add_word_model("words/ugach-0123abcd", 32, "")
            cat.set_active_word_model(foreign)
        with pytest.raises(UnsafeLibraryPathError):
            crossmodal.words_path(root, "../victim")
        crossmodal.activate(cat, root, newest)  # keeps it and the newest other: drops `../victim`
        assert {m.id for m in cat.word_models()} == {outside, newest}
        with cat.transaction():
            latest = cat.add_word_model("words/ugach-0123abce", 32, "")
        crossmodal.activate(cat, root, latest)  # drops the absolute path's row
        assert {m.id for m in cat.word_models()} == {newest, latest}
        assert (victim / "photo.jpg").read_bytes() == b"a person's file"
        with cat.transaction():
            again = cat.add_word_model("words/../../victim", 32, "")
            cat.set_active_word_model(again)
        # One photo lacks its words code: indexing would load the version to encode it.
        monkeypatch.setattr(cat, "missing_word_codes", lambda _model_id: [1])
        assert crossmodal.encode_missing(cat, root, None, None) == 0
        assert cat.active_word_model() is None and outside != again
    finally:
        cat.close()
    assert victim.is_dir() and (victim / "photo.jpg").exists()
