"""Duplicates end to end on generated copies: signatures at index time, groups, the keeper rule,
reference folders, "not duplicates", trashing, and a score that does not depend on the hasher."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from duplicate_photos import CopySet, make_copy_folder, scene
from PIL import Image

from imagehash_app.core.duplicates import score as score_mod
from imagehash_app.core.duplicates import signature as sig
from imagehash_app.core.duplicates.report import TRANSFORMS, KeeperRule
from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.library import Library, LibrarySettings

PIL_TRANSPOSE = {
    "mirror": Image.Transpose.FLIP_LEFT_RIGHT, "flip": Image.Transpose.FLIP_TOP_BOTTOM,
    "rot90": Image.Transpose.ROTATE_90, "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270, "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}


@pytest.fixture
def copies(tmp_path: Path) -> CopySet:
    """One scene with a copy per edit, its other shot and near-miss, two unrelated scenes."""
    return make_copy_folder(tmp_path / "photos", originals=1)


def _indexed(path: Path, settings: LibrarySettings, *folders: Path) -> Library:
    lib = Library.open(path, settings=settings)
    list(lib.index(list(folders)))
    return lib


def test_symmetries_match_pillow_on_thumbnails_and_dct_blocks():
    img = scene(3, size=(64, 64))
    base = sig.thumbs([sig.thumbnail_of(img)])
    for name, how in PIL_TRANSPOSE.items():
        turned = sig.thumbs([sig.thumbnail_of(img.transpose(how))])
        assert np.abs(sig.transform(name, base) - turned).max() <= 1.0, name
        analytic = sig.transform_dct(name, sig.dct_blocks(base))
        assert np.abs(analytic - sig.dct_blocks(turned)).max() < 0.02, name
    vectors = sig.invariant_vectors(sig.dct_blocks(np.concatenate(
        [sig.transform(t, base) for t in TRANSFORMS])))
    assert np.abs(vectors - vectors[0]).max() < 1e-5


def test_every_edit_is_grouped_and_other_shots_are_not(tiny_settings, tmp_path):
    copies = make_copy_folder(tmp_path / "photos", originals=2)
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        report = lib.duplicates()
    groups = [set(g.paths) for g in report.groups]
    expected = [copies.group_of(o) for o in copies.originals]
    assert sorted(groups, key=sorted) == sorted(expected, key=sorted)
    for group in report.groups:
        assert sum(p.keep for p in group.photos) == 1
        rotated = {p.path.stem.split("-")[-1]: p.transform for p in group.photos}
        assert rotated.get("rot90") in ("rot90", "rot270")  # relative to the keeper, either way
    assert report.searched == len(list(copies.root.iterdir())) and report.unsigned == 0
    assert report.candidates < report.searched * (report.searched - 1) // 2
    keeper = report.groups[0].keeper
    assert keeper.format == "JPEG" and keeper.quality is not None and keeper.width == 240


def test_keeper_rule_and_threshold_slider(copies, tiny_settings, tmp_path):
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        report = lib.duplicates()
        by_pixels = {g.keeper.path.name for g in report.groups}
        assert all(g.keeper.pixels == 240 * 180 for g in report.groups), by_pixels
        # Oldest first: make each quarter-size copy the oldest file, then ask again.
        for original in copies.originals:
            small = next(p for p in copies.copies[original] if "quarter" in p.name)
            import os
            os.utime(small, (1_000_000, 1_000_000))
        list(lib.update())
        dated = lib.duplicates(rule=KeeperRule.parse("date,pixels"))
        assert {g.keeper.path.stem.split("-")[-1] for g in dated.groups} == {"quarter"}
        lib.update_settings(duplicate_keep="date")
        assert {g.keeper.path.stem.split("-")[-1] for g in lib.duplicates().groups} == {"quarter"}
        with pytest.raises(ImagehashError, match="comma-separated"):
            lib.update_settings(duplicate_keep="size")
        strict = report.at(0.999)
        assert sum(len(g.photos) for g in strict.groups) < sum(len(g.photos) for g in report.groups)


def test_reference_folders_are_kept_and_never_trashed(tmp_path, tiny_settings):
    ref = tmp_path / "photos" / "archive"
    make_copy_folder(ref, originals=1, edits=("q95",))
    extra = tmp_path / "photos" / "inbox"
    extra.mkdir(parents=True)
    scene(0).resize((480, 360)).save(extra / "bigger.jpg", quality=95)
    trashed: list[str] = []
    with _indexed(tmp_path / "lib", tiny_settings, tmp_path / "photos") as lib:
        lib.update_settings(reference_folders=[str(ref)])
        report = lib.duplicates()
        [group] = report.groups
        assert group.keeper.reference and group.keeper.path.parent == ref
        assert [p.path.name for p in group.removable] == ["bigger.jpg"]
        outcome = lib.trash([p.path for p in group.photos], trash_fn=trashed.append)
    assert trashed == [str(extra / "bigger.jpg")]
    assert {p.name for p, _ in outcome.skipped} == {"scene0.jpg", "scene0-q95.jpg"}
    assert all("reference folder" in why for _, why in outcome.skipped)


def test_not_duplicates_are_remembered_across_reopen(copies, tiny_settings, tmp_path):
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        first = lib.duplicates().groups
        marked = sorted(first[0].paths)
        lib.mark_not_duplicates(marked)
    with Library.open(tmp_path / "lib") as lib:
        again = lib.duplicates()
    assert all(not (set(g.paths) & set(marked)) or len(g.paths & set(marked)) <= 1
               for g in again.groups)
    assert len(again.groups) == len(first) - 1


def test_trash_updates_the_catalogue_and_records_each_file(copies, tiny_settings, tmp_path):
    sent: list[str] = []
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        before = lib.status().indexed
        group = lib.duplicates().groups[0]
        removable = [p.path for p in group.removable]
        outcome = lib.trash(removable, trash_fn=sent.append,
                            keepers={p: group.keeper.path for p in removable})
        assert outcome.ok and list(outcome.trashed) == removable and sent == list(map(str, removable))
        assert lib.status().indexed == before - len(removable)
        assert [r.path for r in lib.trashed()] == removable
        assert {r.keeper for r in lib.trashed()} == {group.keeper.path}
        assert all(group.keeper.path not in g.paths for g in lib.duplicates().groups)
        refused = lib.trash([group.keeper.path], trash_fn=sent.append,
                            keepers={removable[0]: group.keeper.path})
        assert not refused.trashed and refused.skipped[0][1] == "is the copy kept"


def test_a_file_changed_since_indexing_is_not_trashed(copies, tiny_settings, tmp_path):
    sent: list[str] = []
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        group = lib.duplicates().groups[0]
        victim, still_copy = group.removable[0].path, group.removable[1].path
        scene(55).save(victim, format=Image.open(victim).format)  # another photo now
        Image.open(still_copy).convert("RGB").save(still_copy, format=Image.open(still_copy).format)
        outcome = lib.trash([victim, still_copy], trash_fn=sent.append,
                            keepers={victim: group.keeper.path, still_copy: group.keeper.path})
    assert sent == [str(still_copy)]
    assert outcome.skipped == ((victim, "changed since it was indexed and is no longer a copy "
                                        "of the one kept"),)


def test_a_failure_half_way_stops_and_leaves_the_rest(copies, tiny_settings, tmp_path):
    sent: list[str] = []

    def flaky(path: str) -> None:
        if len(sent) == 2:
            raise PermissionError(13, "Permission denied")
        sent.append(path)

    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        group = lib.duplicates().groups[0]
        removable = [p.path for p in group.removable]
        outcome = lib.trash(removable, trash_fn=flaky)
        assert not outcome.ok and outcome.failed == (removable[2], "Permission denied")
        assert list(outcome.left) == removable[3:] and list(outcome.trashed) == removable[:2]
        assert "remaining files were left in place" in outcome.message
        assert all(p.exists() for p in removable[2:])
        assert [r.path for r in lib.trashed()] == removable[:2]
        still = {p for g in lib.duplicates().groups for p in g.paths}
        assert set(removable[2:]) <= still and not set(removable[:2]) & still


def test_same_pair_same_score_in_libraries_with_different_hashers(copies, tiny_settings, tmp_path):
    other = dataclasses.replace(tiny_settings, bits=64, seed=7)
    scores = []
    for name, settings in (("a", tiny_settings), ("b", other)):
        with _indexed(tmp_path / name, settings, copies.root) as lib:
            report = lib.duplicates(floor=0.0)
            scores.append({
                (report.photos[p.a].path, report.photos[p.b].path): p.score for p in report.pairs
            })
    common = set(scores[0]) & set(scores[1])
    assert len(common) >= 12
    assert max(abs(scores[0][k] - scores[1][k]) for k in common) <= 0.01


def test_a_rotated_copy_dropped_as_a_query_is_found_as_a_copy(copies, tiny_settings, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    query = outside / "turned.png"
    Image.open(copies.originals[0]).transpose(Image.Transpose.ROTATE_270).save(query)
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        [response] = lib.search([query], top_k=20).check()
        assert response.query_in_library is None
        found = [r.path for r in response.results if r.is_copy]
        assert set(found) == copies.group_of(copies.originals[0])
        # copies the codes missed come before the first result that is not a copy
        [short] = lib.search([query], top_k=5).check()
        assert len(short.results) == 5 and all(r.is_copy for r in short.results)
        [own] = lib.search([copies.others[0]], top_k=3).check()
        assert own.query_in_library == copies.others[0]
        assert own.results[0].path == copies.others[0] and own.results[0].copy_score is None
        assert all(not r.is_copy for r in own.results[1:])


def test_photos_indexed_before_signatures_get_theirs_on_the_next_run(copies, tiny_settings,
                                                                     tmp_path):
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        with lib._cat.transaction() as conn:
            conn.execute("DELETE FROM signatures")
            conn.execute("UPDATE images SET format = NULL, quality = NULL")
        assert lib.duplicates().unsigned == len(list(copies.root.iterdir()))
        phases = [e.phase for e in lib.update()]
        assert "signatures" in phases
        report = lib.duplicates()
        assert report.unsigned == 0 and len(report.groups) == len(copies.originals)
        assert report.groups[0].keeper.quality is not None


def test_scores_are_calibrated_constants_not_the_hasher():
    a = sig.thumbnail_of(scene(1))
    b = sig.thumbnail_of(scene(1).transpose(Image.Transpose.ROTATE_90).resize((45, 60)))
    c = sig.thumbnail_of(scene(1, shot=1))
    same, how = score_mod.copy_score(a, b)
    assert same >= score_mod.DEFAULT_THRESHOLD and how in ("rot90", "rot270")
    assert score_mod.copy_score(a, c)[0] < score_mod.DEFAULT_THRESHOLD
    assert score_mod.copy_score(a, a)[0] > 0.99


def test_engine_reports_progress_and_stops_when_cancelled():
    from imagehash_app.core.duplicates import engine
    from imagehash_app.core.errors import CancelledError

    blobs = [sig.thumbnail_of(scene(i)) for i in range(12)]
    blobs += [sig.thumbnail_of(scene(0).transpose(Image.Transpose.ROTATE_90))]
    seen: list[tuple[int, int]] = []
    found = engine.find_pairs(blobs, 0.3, progress=lambda d, t: seen.append((d, t)))
    assert {(int(a), int(b)) for a, b in zip(found.a, found.b, strict=True)} == {(0, 12)}
    assert found.transform == ["rot270"] and seen[-1][0] == seen[-1][1] > 0
    with pytest.raises(CancelledError):
        engine.find_pairs(blobs, 0.3, cancel=lambda: True)


def test_header_facts_read_the_date_and_quality_without_decoding(tmp_path):
    exif = Image.Exif()
    exif[306] = "2020:01:02 03:04:05"
    scene(1).save(tmp_path / "a.jpg", quality=70, exif=exif.tobytes())
    scene(1).save(tmp_path / "b.png")
    jpeg = sig.header_facts(Image.open(tmp_path / "a.jpg"))
    assert jpeg.format == "JPEG" and jpeg.taken == 1577934245.0 and jpeg.quality == 70
    png = Image.open(tmp_path / "b.png")
    assert sig.header_facts(png) == sig.HeaderFacts("PNG", None, None)
    assert png._im is None  # the pixels were not decoded for it


def test_the_real_system_trash_keeps_the_file_restorable(copies, tiny_settings, tmp_path, monkeypatch):
    """Send2Trash itself (no mock), into a freedesktop trash under a temporary XDG_DATA_HOME: the
    copy leaves its folder, its bytes wait in the trash with the .trashinfo naming where it was."""
    if sys.platform != "linux":
        pytest.skip("the freedesktop trash layout is Linux's")
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    with _indexed(tmp_path / "lib", tiny_settings, copies.root) as lib:
        group = lib.duplicates().groups[0]
        victim = group.removable[0].path
        data = victim.read_bytes()
        outcome = lib.trash([victim], keepers={victim: group.keeper.path})
        assert outcome.ok and list(outcome.trashed) == [victim]
    assert not victim.exists() and group.keeper.path.exists()
    trashed = list((xdg / "Trash" / "files").iterdir())
    assert [p.read_bytes() for p in trashed] == [data]
    info = next((xdg / "Trash" / "info").iterdir()).read_text()
    assert "Path=" in info and victim.name in info


def test_same_shape_in_other_colours_is_not_a_copy():
    """A blob of one colour against the mirrored blob in another (a yellow flower against a white
    one on purple, which scored 0.41 before the chroma gate): the shapes align, it is no copy."""
    yy, xx = np.mgrid[:96, :96]
    blob = ((yy - 44) ** 2 / 30**2 + (xx - 50) ** 2 / 22**2) < 1
    yellow = np.where(blob[..., None], [220, 200, 60], [90, 110, 40]).astype(np.uint8)
    purple = np.where(blob[..., None], [235, 225, 245], [80, 20, 120]).astype(np.uint8)
    a = sig.thumbnail_of(Image.fromarray(yellow))
    b = sig.thumbnail_of(Image.fromarray(purple).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert score_mod.copy_score(a, b)[0] == 0.0
    c = sig.thumbnail_of(Image.fromarray(yellow).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert score_mod.copy_score(a, c) == (pytest.approx(1.0, abs=0.01), "mirror")
