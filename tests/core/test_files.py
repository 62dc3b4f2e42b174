"""Folder walking (exclusions, symlink loops), fingerprints and scan diffing."""

from __future__ import annotations

import os
from pathlib import Path

from imagehash_app.core.files import KnownFile, diff_scan, fingerprint, walk_images


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
