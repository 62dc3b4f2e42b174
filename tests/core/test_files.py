"""Folder walking (exclusions, symlink loops), fingerprints and scan diffing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.files import (
    KnownFile,
    count_excluded,
    diff_scan,
    fingerprint,
    folder_error_reason,
    query_problem,
    walk_images,
)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rels(root: Path, exclude=()) -> list[str]:
    return [i.path.relative_to(root).as_posix() for i in walk_images(root, exclude)]


def test_walk_skips_junk_hidden_and_user_patterns(tmp_path: Path) -> None:
    keep = ["a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.heic"]
    junk = [
        ".hidden/x.jpg", "@eaDir/x.jpg", "sub/.thumbnails/x.jpg", "$RECYCLE.BIN/x.jpg",
        "System Volume Information/x.jpg", ".Trash-1000/files/x.jpg", "raw/x.jpg",
        "notes.txt", "sub/x.jpg.part", ".dotfile.jpg", "skip-me.jpg",
    ]
    for rel in keep + junk:
        touch(tmp_path / rel)
    assert rels(tmp_path, exclude=["raw", "skip-*"]) == sorted(keep, key=lambda r: r.split("/"))


def test_walk_reports_size_and_mtime(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.jpg", b"12345")
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    (info,) = walk_images(tmp_path)
    assert (info.path, info.size, info.mtime_ns) == (path, 5, 2_000_000_000)


def test_walk_survives_symlink_loops_and_visits_each_dir_once(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "one.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "alias").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    found = rels(tmp_path)
    assert len(found) == 1 and found[0].endswith("one.jpg")


def test_walk_of_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(walk_images(tmp_path / "nope")) == []


def test_fingerprint_follows_content_not_path(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    a = touch(tmp_path / "a.jpg", data)
    b = touch(tmp_path / "b" / "renamed.jpg", data)
    tail = touch(tmp_path / "c.jpg", data[:-1] + bytes([data[-1] ^ 1]))
    head = touch(tmp_path / "d.jpg", bytes([data[0] ^ 1]) + data[1:])
    assert fingerprint(a) == fingerprint(b)
    assert len({fingerprint(a), fingerprint(tail), fingerprint(head)}) == 3


def test_diff_scan_new_changed_deleted_moved(tmp_path: Path) -> None:
    same = touch(tmp_path / "same.jpg", b"same")
    changed = touch(tmp_path / "changed.jpg", b"changed-now")
    moved_to = touch(tmp_path / "new-place" / "moved.jpg", b"moved content")
    new = touch(tmp_path / "new.jpg", b"brand new")
    infos = {i.path: i for i in walk_images(tmp_path)}
    s = infos[same]
    known = {
        same: KnownFile(1, same, s.size, s.mtime_ns, fingerprint(same)),
        changed: KnownFile(2, changed, 3, infos[changed].mtime_ns, "old"),
        tmp_path / "moved.jpg": KnownFile(3, tmp_path / "moved.jpg", moved_to.stat().st_size, 1,
                                          fingerprint(moved_to)),
        tmp_path / "gone.jpg": KnownFile(4, tmp_path / "gone.jpg", 9, 1, "gone-fp"),
    }
    diff = diff_scan(known, infos.values())
    assert [i.path for i in diff.new] == [new]
    assert [(k.id, i.path) for k, i in diff.changed] == [(2, changed)]
    assert [(k.id, i.path) for k, i in diff.moved] == [(3, moved_to)]
    assert [k.id for k in diff.deleted] == [4]
    assert diff.unchanged == 1


def test_diff_scan_same_size_different_content_is_not_a_move(tmp_path: Path) -> None:
    other = touch(tmp_path / "other.jpg", b"abcd")
    gone = tmp_path / "gone.jpg"
    known = {gone: KnownFile(7, gone, 4, 1, "not-the-same")}
    diff = diff_scan(known, walk_images(tmp_path))
    assert [i.path for i in diff.new] == [other]
    assert [k.id for k in diff.deleted] == [7] and not diff.moved


def test_walk_yields_names_that_are_not_utf8(tmp_path: Path) -> None:
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/d\xfe"))
    bad = Path(os.fsdecode(os.fsencode(folder) + b"/b\xffd.jpg"))
    touch(bad)
    touch(tmp_path / "a.jpg")
    assert [i.path for i in walk_images(tmp_path)] == [tmp_path / "a.jpg", bad]


def test_walk_reports_folders_it_cannot_list(tmp_path: Path, monkeypatch) -> None:
    touch(tmp_path / "ok" / "a.jpg")
    touch(tmp_path / "locked" / "b.jpg")
    real = os.scandir

    def scandir(path):
        if Path(path) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    errors: list[tuple[Path, str]] = []
    found = list(walk_images(tmp_path, on_error=lambda p, e: errors.append((p, folder_error_reason(e)))))
    assert [i.path for i in found] == [tmp_path / "ok" / "a.jpg"]
    assert errors == [(tmp_path / "locked", "permission denied")]
    assert folder_error_reason(OSError(5, "Input/output error")) == "input/output error"


def test_links_out_of_the_folder_are_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch(outside / "o.jpg")
    touch(root / "r.jpg")
    (root / "dir_out").symlink_to(outside, target_is_directory=True)
    (root / "file_out.jpg").symlink_to(outside / "o.jpg")
    (root / "dotdot").symlink_to(root / ".." / "outside", target_is_directory=True)
    assert rels(root) == ["r.jpg"]


def test_links_inside_the_folder_are_followed_once_real_paths_first(tmp_path: Path) -> None:
    touch(tmp_path / "z" / "deep.jpg")
    touch(tmp_path / "x.jpg")
    touch(tmp_path / ".hidden" / "h.jpg")
    (tmp_path / "a_link").symlink_to(tmp_path / "z", target_is_directory=True)  # sorts first
    (tmp_path / "b.jpg").symlink_to(tmp_path / "x.jpg")
    (tmp_path / "c.jpg").symlink_to(tmp_path / "b.jpg")  # a link to a link: still x.jpg
    (tmp_path / "shown").symlink_to(tmp_path / ".hidden", target_is_directory=True)
    (tmp_path / "fifo.jpg").symlink_to(tmp_path / "pipe")
    os.mkfifo(tmp_path / "pipe")
    # The real paths win over the links that sort before them; a link to a hidden folder inside
    # the folder is the user's choice and is followed.
    assert rels(tmp_path) == ["x.jpg", "z/deep.jpg", "shown/h.jpg"]


def test_the_root_given_through_a_link_still_bounds_the_walk(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "a.jpg")
    (tmp_path / "real" / "self.jpg").symlink_to(tmp_path / "real" / "a.jpg")
    (tmp_path / "via").symlink_to(tmp_path / "real", target_is_directory=True)
    assert rels(tmp_path / "via") == ["a.jpg"]


def test_query_problem_names_what_the_path_is(tmp_path: Path) -> None:
    photo = touch(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    assert query_problem(photo) is None
    assert "is a folder, not a photo" in query_problem(tmp_path)
    assert "is not a regular file" in query_problem(tmp_path / "pipe.jpg")
    assert "is not a regular file" in query_problem(Path("/dev/null"))
    assert "there is no such file" in query_problem(tmp_path / "gone.jpg")
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/gone\xff.jpg"))
    assert "gone\ufffd.jpg" in query_problem(odd)


def _flowers(root: Path) -> Path:
    """flower_photos/{daisy,roses/daisy_like,tulips}/… and a nested trip/daisy."""
    folder = root / "flower_photos"
    for rel in ("daisy/a.jpg", "daisy/sub/b.jpg", "roses/c.jpg", "roses/daisy.jpg", "tulips/d.png",
                "trip/daisy/e.jpg", "f.gif"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"x")
    return folder


@pytest.mark.parametrize("pattern", ["*/daisy/*", "daisy/", "**/daisy/"])
def test_exclude_patterns_follow_gitignore_and_leave_out_a_folder_named_daisy(tmp_path, pattern):
    folder = _flowers(tmp_path)
    kept = rels(folder, [pattern])
    assert "daisy/a.jpg" not in kept and "daisy/sub/b.jpg" not in kept
    assert "roses/daisy.jpg" in kept  # a file named daisy is not a folder named daisy
    assert {"roses/c.jpg", "tulips/d.png", "f.gif"} <= set(kept)
    if pattern != "*/daisy/*":  # `*` is one folder level in .gitignore
        assert "trip/daisy/e.jpg" not in kept


def test_exclude_pattern_forms(tmp_path):
    folder = _flowers(tmp_path)
    assert rels(folder, ["*.gif"]) == [r for r in rels(folder) if r != "f.gif"]
    assert "tulips/d.png" not in rels(folder, ["/tulips"])
    assert "trip/daisy/e.jpg" in rels(folder, ["/daisy/"])  # anchored at the folder
    assert rels(folder, ["daisy/", "!daisy/"]) == rels(folder)
    assert count_excluded(folder, ["daisy/"]) == (3, 7)
    assert count_excluded(folder, []) == (0, 7)
    with pytest.raises(ImagehashError, match='"!" is not valid'):
        rels(folder, ["!"])
