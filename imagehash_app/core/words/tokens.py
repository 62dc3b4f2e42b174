"""Words from text: folder names, file names, keywords and captions, split the way people write.

Folder and file names are split on separators and on camel case ("GrandmasGarden" → grandmas,
garden); what carries no meaning is dropped: camera-generated names (IMG_1234, DSC01234,
PXL_20230101_…), ids (hex digests, UUIDs), plain numbers (dates such as 2019 or 20190612), file extensions, one-letter bits
and a few very common words.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# A whole file stem that a camera or phone made up: no word of a person in it.
CAMERA_STEM = re.compile(
    r"^(img|dsc|dscn|dscf|dsc_|pxl|mvimg|vid|dji|gopr|gh\d|sam|wp|pano|p|pict|imag|photo|"
    r"screenshot|sdc|cimg|hpim|kimg|_dsc|dcim)[\s_-]*\d[\d_\s-]*(\w{0,8})$",
    re.IGNORECASE,
)
# A stem that is an id, not a name: hex digests, UUIDs, random names ("3fa2b9c0d1", "a1b2-…").
# Hex only with a digit: 12 characters or more, or 8 or more with digits in two places at least
# (so "decade2019" stays a word).
ID_STEM = re.compile(
    r"^(?=.*[0-9])(?:[0-9a-f_-]{12,}|(?=[0-9a-f_-]{8,}$)(?=.*[0-9][^0-9]+[0-9]).*)$", re.IGNORECASE
)
# Folder names that cameras and tools make up (DCIM/100CANON, 100APPLE, Camera, …).
CAMERA_DIR = re.compile(r"^(dcim|\d{3}[a-z_]{0,8}|camera|camera roll|screenshots)$", re.IGNORECASE)
STOP_WORDS = frozenset(
    ["a", "an", "and", "the", "of", "in", "on", "at", "to", "for", "with", "from", "by", "or", "is", "are", "be", "it", "its", "this", "that", "my", "our", "your", "de", "la", "le", "les", "des", "du", "et", "en", "el", "los", "las", "y", "da", "do", "das", "dos", "di", "il", "img", "dsc", "pxl", "jpg", "jpeg", "png", "heic", "tif", "tiff", "raw", "copy", "edit", "edited", "final", "export", "new", "folder", "untitled", "misc"]
)
_APOSTROPHE = re.compile(r"['’`]")
_SPLIT = re.compile(r"[^\w]+|_+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
MIN_LENGTH = 2
MAX_WORDS_PER_TEXT = 64  # a caption longer than this is cut: its tail adds little


def words(text: str) -> list[str]:
    """The words of `text`, lower-case, in order, without duplicates or meaningless tokens."""
    out: list[str] = []
    for part in _SPLIT.split(_APOSTROPHE.sub("", text)):
        for token in _CAMEL.split(part):
            word = token.casefold()
            if len(word) < MIN_LENGTH or word.isdigit() or word in STOP_WORDS:
                continue
            if word not in out:
                out.append(word)
            if len(out) >= MAX_WORDS_PER_TEXT:
                return out
    return out


def file_words(name: str) -> list[str]:
    """Words of a file name: its stem only, nothing from a camera-generated name."""
    stem = PurePosixPath(name).stem
    if CAMERA_STEM.match(stem.strip()) or ID_STEM.match(stem.strip()):
        return []
    return words(stem)


def folder_words(rel_dir: str) -> list[str]:
    """Words of the folders between a library folder and a photo ("2019 Lisbon/Trams")."""
    out: list[str] = []
    for part in PurePosixPath(rel_dir).parts:
        if CAMERA_DIR.match(part.strip()):
            continue
        out += [w for w in words(part) if w not in out]
    return out


def path_words(rel_path: str) -> dict[str, list[str]]:
    """{"folder": [...], "file": [...]} for a photo's path relative to its library folder."""
    path = PurePosixPath(rel_path)
    parent = "" if str(path.parent) == "." else str(path.parent)
    return {"folder": folder_words(parent), "file": file_words(path.name)}
