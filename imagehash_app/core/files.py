"""Folder walking, exclusions, content fingerprints and scan diffing.

A scan is compared with what the catalogue knows so that only new and changed files are embedded
again, and a moved file (same content at a new path) keeps its code.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from imagehash_app.core.images import IMAGE_SUFFIXES

# Folders made by operating systems, NAS boxes and photo tools: never the user's photos.
JUNK_DIRS = frozenset(
    {"@eaDir", ".thumbnails", "$RECYCLE.BIN", "System Volume Information", "__MACOSX", "#recycle"}
)
JUNK_DIR_PATTERNS = (".Trash-*", ".Trash*")

_FINGERPRINT_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FileInfo:
    """A file found by a scan: what is needed to tell whether it changed."""

    path: Path
    size: int
    mtime_ns: int


def _excluded(name: str, rel: str, patterns: Sequence[str]) -> bool:
    """User patterns match a name (`*.tmp`) or a path relative to the root (`raw/*`)."""
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def _junk_dir(name: str) -> bool:
    return (
        name.startswith(".")
        or name in JUNK_DIRS
        or any(fnmatch.fnmatch(name, p) for p in JUNK_DIR_PATTERNS)
    )


def walk_images(root: Path, exclude: Sequence[str] = ()) -> Iterator[FileInfo]:
    """Yield the image files under `root` in a stable (sorted) order.

    Hidden folders and files, system junk folders and `exclude` glob patterns are skipped.
    Symlinks are followed, but each real directory is visited once, so loops end.
    Unreadable folders are skipped (their files cannot be indexed anyway).
    """
    root = Path(root)
    try:
        st = root.stat()
    except OSError:
        return
    seen: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[tuple[Path, str]] = []
        for entry in entries:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                if entry.is_dir(follow_symlinks=True):
                    if _junk_dir(name) or _excluded(name, rel, exclude):
                        continue
                    dst = entry.stat(follow_symlinks=True)
                    key = (dst.st_dev, dst.st_ino)
                    if key not in seen:
                        seen.add(key)
                        subdirs.append((Path(entry.path), rel))
                    continue
                if (
                    name.startswith(".")
                    or Path(name).suffix.lower() not in IMAGE_SUFFIXES
                    or _excluded(name, rel, exclude)
                    or not entry.is_file(follow_symlinks=True)
                ):
                    continue
                fst = entry.stat(follow_symlinks=True)
            except OSError:  # vanished or dangling symlink between listing and stat
                continue
            yield FileInfo(Path(entry.path), fst.st_size, fst.st_mtime_ns)
        stack.extend(reversed(subdirs))


def fingerprint(path: Path) -> str:
    """Cheap content fingerprint: size plus a hash of the first and last 64 KiB.

    Enough to recognise a moved or renamed photo without reading whole files.
    """
    with open(path, "rb") as fh:
        return fingerprint_of_file(fh)


def fingerprint_of_file(fh: BinaryIO) -> str:
    """`fingerprint` of an open binary file; leaves it positioned at the start (a decoder can
    go on reading it, so indexing opens each photo once)."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(0)
    digest = hashlib.blake2b(fh.read(_FINGERPRINT_CHUNK), digest_size=16)
    if size > _FINGERPRINT_CHUNK:
        fh.seek(max(_FINGERPRINT_CHUNK, size - _FINGERPRINT_CHUNK))
        digest.update(fh.read(_FINGERPRINT_CHUNK))
    fh.seek(0)
    return f"{size:x}-{digest.hexdigest()}"


@dataclass(frozen=True)
class KnownFile:
    """What the catalogue remembers of a file (its key is the catalogue's image id)."""

    id: int
    path: Path
    size: int
    mtime_ns: int
    fingerprint: str | None


@dataclass
class ScanDiff:
    """Result of comparing a scan with the catalogue."""

    new: list[FileInfo] = field(default_factory=list)
    changed: list[tuple[KnownFile, FileInfo]] = field(default_factory=list)
    deleted: list[KnownFile] = field(default_factory=list)
    moved: list[tuple[KnownFile, FileInfo]] = field(default_factory=list)
    unchanged: int = 0


def diff_scan(
    known: Mapping[Path, KnownFile],
    found: Iterable[FileInfo],
    fingerprint_of=fingerprint,
) -> ScanDiff:
    """Classify files as new, changed (size or mtime differ), deleted or moved.

    A new file whose size and fingerprint equal those of a file that disappeared is a move:
    its code is kept and only the path changes. Fingerprints are read only for such size matches.
    """
    diff = ScanDiff()
    seen: set[Path] = set()
    fresh: list[FileInfo] = []
    for info in found:
        seen.add(info.path)
        old = known.get(info.path)
        if old is None:
            fresh.append(info)
        elif old.size != info.size or old.mtime_ns != info.mtime_ns:
            diff.changed.append((old, info))
        else:
            diff.unchanged += 1
    gone = [k for p, k in known.items() if p not in seen]
    by_size: dict[int, list[KnownFile]] = {}
    for k in gone:
        if k.fingerprint:
            by_size.setdefault(k.size, []).append(k)
    moved_ids: set[int] = set()
    for info in fresh:
        candidates = by_size.get(info.size)
        match = None
        if candidates:
            try:
                fp = fingerprint_of(info.path)
            except OSError:
                fp = None
            match = next((k for k in candidates if k.fingerprint == fp), None)
        if match is None:
            diff.new.append(info)
        else:
            candidates.remove(match)
            moved_ids.add(match.id)
            diff.moved.append((match, info))
    diff.deleted = [k for k in gone if k.id not in moved_ids]
    return diff
