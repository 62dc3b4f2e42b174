"""Folder walking, exclusions, content fingerprints and scan diffing.

A scan is compared with what the catalogue knows so that only new and changed files are embedded
again, and a moved file (same content at a new path) keeps its code.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pathspec

from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.images import IMAGE_SUFFIXES
from imagehash_app.core.stored_paths import display

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


class ExcludeRules:
    """The library's exclude patterns, in the one syntax people know: `.gitignore`'s.

    Each path is matched relative to the added folder, and again with the folder's own name in
    front, so a pattern written as seen from the folder (`daisy/`, `raw/*`, `*.gif`,
    `**/Screenshots/`) or from its parent (`*/daisy/*`) means what it says. A trailing `/` matches
    folders only; `!` re-includes; a leading `/` anchors at the added folder.
    """

    def __init__(self, patterns: Sequence[str], folder_name: str = "") -> None:
        lines = [p.strip() for p in patterns if p and p.strip()]
        for line in lines:
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
            except ValueError as exc:
                raise ImagehashError(
                    f'The exclude pattern "{line}" is not valid ({exc}); patterns follow '
                    '.gitignore, e.g. "daisy/" for every folder named daisy or "*.gif".'
                ) from exc
        self._spec = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        self._prefix = f"{folder_name}/" if folder_name else ""

    def __bool__(self) -> bool:
        return self._spec is not None

    def excludes(self, rel: str, is_dir: bool) -> bool:
        """Whether the path `rel` (relative to the folder, "/"-separated) is left out."""
        if self._spec is None:
            return False
        path = f"{rel}/" if is_dir else rel
        return self._spec.match_file(path) or bool(
            self._prefix and self._spec.match_file(self._prefix + path)
        )


def count_excluded(root: Path, patterns: Sequence[str]) -> tuple[int, int]:
    """(photos the patterns leave out, photos under `root` in all): the same two walks the
    indexer would make, so the count shown is what indexing will do."""
    everything = sum(1 for _ in walk_images(root))
    if not ExcludeRules(patterns):
        return 0, everything
    return everything - sum(1 for _ in walk_images(root, patterns)), everything


def _junk_dir(name: str) -> bool:
    return (
        name.startswith(".")
        or name in JUNK_DIRS
        or any(fnmatch.fnmatch(name, p) for p in JUNK_DIR_PATTERNS)
    )


def walk_images(
    root: Path, exclude: Sequence[str] = (), on_error: Callable[[Path, OSError], None] | None = None,
) -> Iterator[FileInfo]:
    """Yield the image files under `root` in a stable order: sorted, then what links add.

    Hidden folders and files, system junk folders and what the `exclude` patterns name
    (`.gitignore` syntax, see `ExcludeRules`) are skipped.
    Symbolic links are followed after everything reachable without them, and only when their
    real target lies inside `root`'s real path: a link out of the folder would index photos the
    user did not choose (or that belong to another folder of the library, which indexes them
    itself). No real folder is walked twice and no real file is yielded twice, so loops end and a
    link to a photo of the folder does not index it again. Only regular files are yielded (never
    FIFOs or devices, which could hang a reader). A folder that cannot be listed is passed, with
    its error, to `on_error` and skipped.
    """
    root = Path(root)
    rules = ExcludeRules(exclude, root.name)
    report = on_error or (lambda _path, _exc: None)
    try:
        st = root.stat()
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        report(root, exc)
        return
    real_root = os.path.realpath(root)
    seen_dirs: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    seen_files: set[str] = set()  # real paths of the files yielded
    links: deque[tuple[Path, str, str]] = deque()  # (link, path relative to root, name)
    stack: list[tuple[Path, str, bool]] = [(root, "", False)]  # (folder, relative, under a link)
    while stack or links:
        if not stack:
            link, rel, name = links.popleft()
            found = _follow(link, name, rel, real_root, seen_dirs, seen_files)
            if isinstance(found, FileInfo):
                yield found
            elif found is not None:
                stack.append(found)
            continue
        directory, rel_dir, under_link = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            report(directory, exc)
            continue
        subdirs: list[tuple[Path, str, bool]] = []
        for entry in entries:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    if not (rules.excludes(rel, False) or rules.excludes(rel, True)):
                        links.append((Path(entry.path), rel, name))
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                if rules.excludes(rel, is_dir):
                    continue
                if is_dir:
                    if _junk_dir(name):
                        continue
                    dst = entry.stat(follow_symlinks=False)
                    key = (dst.st_dev, dst.st_ino)
                    if key not in seen_dirs:  # a bind mount can loop too
                        seen_dirs.add(key)
                        subdirs.append((Path(entry.path), rel, under_link))
                    continue
                if (
                    Path(name).suffix.lower() not in IMAGE_SUFFIXES
                    or not entry.is_file(follow_symlinks=False)
                ):
                    continue
                fst = entry.stat(follow_symlinks=False)
                real = os.path.realpath(entry.path) if under_link else os.path.join(real_root, rel)
            except OSError:  # vanished between listing and stat
                continue
            if real not in seen_files:
                seen_files.add(real)
                yield FileInfo(Path(entry.path), fst.st_size, fst.st_mtime_ns)
        stack.extend(reversed(subdirs))


def _follow(
    link: Path, name: str, rel: str, real_root: str, seen_dirs: set[tuple[int, int]],
    seen_files: set[str],
) -> FileInfo | tuple[Path, str, bool] | None:
    """What a symbolic link adds to a walk: a file, a folder to walk, or nothing (dangling, out of
    the folder, already seen, or not a photo)."""
    try:
        target = os.path.realpath(link)
        st = os.stat(link)
    except OSError:
        return None
    if not _inside(target, real_root):
        return None
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if _junk_dir(name) or key in seen_dirs:
            return None
        seen_dirs.add(key)
        return link, rel, True
    if (
        not stat.S_ISREG(st.st_mode)
        or Path(name).suffix.lower() not in IMAGE_SUFFIXES
        or target in seen_files
    ):
        return None
    seen_files.add(target)
    return FileInfo(link, st.st_size, st.st_mtime_ns)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def query_problem(path: Path) -> str | None:
    """Why `path` cannot be a search query, or None when it is a regular file. Only stats it:
    opening a FIFO or a device could hang."""
    shown = display(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"Cannot search with {shown}: there is no such file."
    except OSError as exc:
        return f"Cannot search with {shown}: {folder_error_reason(exc)}."
    if stat.S_ISDIR(st.st_mode):
        return f"{shown} is a folder, not a photo: search with one of the photos in it."
    if not stat.S_ISREG(st.st_mode):
        return f"{shown} is not a regular file (a FIFO, device or socket): search with a photo file."
    return None


def folder_error_reason(exc: OSError) -> str:
    """Why a folder could not be listed, in a few words."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


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
