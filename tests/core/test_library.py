"""The Library facade: search quality on near-copies, caching, lock, settings, folders, status."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from photos import PhotoSet, make_photo, make_photo_folder

from imagehash_app.core.errors import ImagehashError, LibraryLockedError
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

TINY = LibrarySettings(backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2)


def run_index(lib: Library, paths=None) -> list:
    return list(lib.index(paths))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhotoSet]:
    """One library over the generated photo folder, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("lib")
    photos = make_photo_folder(root / "photos", groups=4, unrelated=6)
    with Library.open(root / "library", settings=TINY) as lib:
        events = run_index(lib, [photos.root])
    assert events[-1].phase == "done"
    return root / "library", photos


def test_query_first_then_its_near_copies_then_unrelated(indexed) -> None:
    path, photos = indexed
    with Library.open(path, read_only=True) as lib:
        responses = lib.search(photos.originals, top_k=len(photos.all))
    for original, resp in zip(photos.originals, responses, strict=True):
        ranked = [r.path for r in resp.results]
        assert resp.query == original
        assert ranked[0] == original
        copies = {ranked.index(c) for c in photos.copies[original]}
        others = {ranked.index(u) for u in photos.unrelated}
        assert max(copies) < min(others), (original, ranked)
        assert resp.results[0].hamming == 0
        scores = [r.score for r in resp.results]
        assert scores == sorted(scores, reverse=True) or ranked[0] == original


def test_query_outside_the_library_finds_its_copies(indexed, tmp_path: Path) -> None:
    path, photos = indexed
    outside = tmp_path / "outside.jpg"
    make_photo(2).resize((160, 120)).save(outside, quality=70)  # group2's photo, resized again
    with Library.open(path, read_only=True) as lib:
        (resp,) = lib.search([outside], top_k=4)
    group = {photos.originals[2], *photos.copies[photos.originals[2]]}
    assert {r.path for r in resp.results} == group


def test_search_features_matches_search(indexed, tmp_path: Path) -> None:
    path, photos = indexed
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    with Library.open(path, read_only=True) as lib:
        features, ok, failures = lib.embed([photos.unrelated[0], bad])
        assert ok == [photos.unrelated[0]] and failures == [(bad, "not an image")]
        direct = lib.search_features(features, top_k=5)[0]
        own_first = lib.search_features(features, top_k=5, query_paths=ok)[0]
        via_image = lib.search([photos.unrelated[0]], top_k=5)[0].results
    assert [r.path for r in own_first] == [r.path for r in via_image]
    assert {r.path for r in direct} == {r.path for r in via_image}
    assert via_image[0].path == photos.unrelated[0]


def test_search_cache_follows_new_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    make_photo(1).save(photos / "one.jpg")
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        assert lib.search([photos / "one.jpg"])[0].results == []  # empty library answers too
        run_index(lib, [photos])
        first = lib.search([photos / "one.jpg"])[0].results
        assert [r.path for r in first] == [photos / "one.jpg"]  # a library of one photo
        make_photo(2).save(photos / "two.jpg")
        run_index(lib)
        again = lib.search([photos / "one.jpg"])[0].results
    assert [r.path for r in again] == [photos / "one.jpg", photos / "two.jpg"]


def test_missing_query_file_is_a_clear_error(indexed, tmp_path: Path) -> None:
    with Library.open(indexed[0], read_only=True) as lib, pytest.raises(ImagehashError, match="no such file"):
        lib.search([tmp_path / "nope.jpg"]).check()


def test_second_writer_gets_a_clear_message_readers_still_work(tmp_path: Path) -> None:
    with Library.open(tmp_path / "lib", settings=TINY):
        with pytest.raises(LibraryLockedError) as info:
            Library.open(tmp_path / "lib")
        message = str(info.value)
        assert "in use by another imagehash-app process" in message
        assert f"pid {__import__('os').getpid()}" in message
        with Library.open(tmp_path / "lib", read_only=True) as reader:
            assert reader.status().indexed == 0
    Library.open(tmp_path / "lib").close()  # released on close


def test_settings_are_stored_and_identity_is_fixed_once_indexed(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    make_photo(0).save(photos / "a.jpg")
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        lib.update_settings(rerank_depth=50, bits=16)  # allowed: nothing indexed yet
        run_index(lib, [photos])
        with pytest.raises(ImagehashError, match="cannot change once photos are indexed"):
            lib.update_settings(backbone="resnet50")
        with pytest.raises(ImagehashError, match="Unknown setting"):
            lib.update_settings(colour="blue")
    with Library.open(tmp_path / "lib", read_only=True) as lib:
        assert (lib.settings.rerank_depth, lib.settings.bits, lib.settings.backbone) == (50, 16, "tiny")
    with pytest.raises(ImagehashError, match="backbone"):
        Library.open(tmp_path / "lib", settings=dataclasses.replace(TINY, bits=16, backbone="resnet50"))


def test_folders_nested_and_removed(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=2, unrelated=1)
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        run_index(lib, [photos.root / "group0"])
        assert [f.path for f in lib.folders()] == [photos.root / "group0"]
        parent = lib.add_folder(photos.root)  # absorbs group0, keeps its photos
        assert [f.path for f in lib.folders()] == [photos.root]
        assert parent.indexed == 4
        assert lib.add_folder(photos.root / "group1").path == photos.root  # already covered
        run_index(lib)
        assert lib.status().indexed == len(photos.all)
        lib.remove_folder(photos.root)
        status = lib.status()
        assert (status.indexed, status.reservoir["count"], lib.folders()) == (0, 0, [])
        with pytest.raises(ImagehashError, match="not a folder of this library"):
            lib.remove_folder(photos.root)
        with pytest.raises(ImagehashError, match="is not a folder"):
            lib.add_folder(tmp_path / "missing")


def test_status_reports_counts_hasher_and_reservoir(indexed) -> None:
    path, photos = indexed
    with Library.open(path, read_only=True) as lib:
        d = lib.status().to_dict()
    assert d["indexed"] == len(photos.all) and d["pending"] == d["skipped"] == d["offline"] == 0
    assert d["backbone"] == "tiny" and d["bits"] == 32
    assert d["hasher"] == f"itq: fallback until 1,000 photos are indexed ({len(photos.all)} now)"
    assert d["model"]["method"] == "itq"
    assert d["reservoir"] == {
        "count": len(photos.all), "capacity": 20000, "bytes": len(photos.all) * 64 * 2,
        "dtype": "float16",
    }
    assert d["bytes_per_image"]["code"] == 4
    assert d["library"] == str(path)
    assert d["folders"][0]["path"] == str(photos.root)


def test_query_that_is_a_library_photo_comes_first_even_among_equal_codes(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    img = make_photo(5)
    for name in ("a.png", "b.png", "c.png"):  # identical pixels: identical codes and scores
        img.save(photos / name)
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        run_index(lib, [photos])
        for name in ("c.png", "b.png", "a.png"):
            results = lib.search([photos / name], top_k=1)[0].results
            assert [r.path for r in results] == [photos / name]
            assert results[0].hamming == 0
            assert np.isclose(results[0].score, 1.0, atol=1e-3)


def test_search_answers_readable_queries_and_lists_the_others(indexed, tmp_path: Path) -> None:
    """One failure policy: a query that cannot be searched is a failure beside the others'
    responses (never raised by `search`); `check()` raises the first for the command line."""
    path, photos = indexed
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    missing = tmp_path / "gone.jpg"
    good = photos.originals[1]
    with Library.open(path, read_only=True) as lib:
        answer = lib.search([good, bad, missing], top_k=3)
        alone = lib.search([good], top_k=3)
    assert [r.query for r in answer] == [good]
    assert answer[0].results == alone[0].results and answer[0].results[0].path == good
    assert answer[0].features is not None and answer[0].features.shape[0] > 0
    failed = {f.path: f for f in answer.failures}
    assert set(failed) == {bad, missing}
    assert failed[bad].decode and failed[bad].reason == "not an image"
    assert "bad.jpg cannot be searched: not an image" in failed[bad].message
    assert not failed[missing].decode and "no such file" in failed[missing].message
    with pytest.raises(ImagehashError, match="not an image"):
        answer.check()
    assert alone.check() is alone


def test_requery_changes_the_count_from_kept_features(indexed, monkeypatch) -> None:
    """A new result count reads no photo and runs no backbone, and keeps the engine's order."""
    path, photos = indexed
    with Library.open(path, read_only=True) as lib:
        wide = lib.search(photos.originals[:2], top_k=len(photos.all))
        monkeypatch.setattr(lib, "backbone", lambda: pytest.fail("requery ran the backbone"))
        narrow = lib.requery(wide, 3)
    assert [r.query for r in narrow] == photos.originals[:2]
    for w, n in zip(wide, narrow, strict=True):
        assert n.results == w.results[:3]


def test_iter_search_reports_non_photo_paths_before_reading_any(indexed, tmp_path: Path) -> None:
    path, photos = indexed
    with Library.open(path, read_only=True) as lib:
        answers = iter(lib.iter_search([photos.originals[0], tmp_path], top_k=2))
        first = next(answers)
        assert first.responses == [] and [f.path for f in first.failures] == [tmp_path]
        assert "is a folder, not a photo" in first.failures[0].message
        rest = list(answers)
    assert [r.query for a in rest for r in a] == [photos.originals[0]]


def test_an_undecodable_query_fails_even_in_an_empty_library(tmp_path: Path) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"definitely not a jpeg")
    make_photo(3).save(tmp_path / "real.jpg")
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        answer = lib.search([fake, tmp_path / "real.jpg"])
    assert [r.query for r in answer] == [tmp_path / "real.jpg"] and answer[0].results == []
    assert [f.path for f in answer.failures] == [fake] and answer.failures[0].decode


def test_update_indexes_known_folders_only(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", groups=1, unrelated=1)
    other = make_photo_folder(tmp_path / "other", groups=1, unrelated=0)
    with Library.open(tmp_path / "lib", settings=TINY) as lib:
        lib.add_folder(photos.root)
        events = list(lib.update([photos.root / "group0", other.root]))  # other: not a folder
        assert events[-1].phase == "done"
        (folder,) = lib.folders()
    assert folder.path == photos.root and folder.indexed == len(photos.all)
