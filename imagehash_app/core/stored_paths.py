"""File names are bytes: how paths are stored in the catalogue and shown to people, losslessly.

Python hands a name that is not valid UTF-8 over as a str with surrogate escapes ('\\udcff'), which
SQLite cannot bind as TEXT. Such a path is stored as a BLOB of its raw bytes instead; every other
path stays TEXT, as libraries have always stored them. The choice depends on the path alone, so one
path has one stored form and `UNIQUE` and `=` keep working. SQL never concatenates stored paths:
a BLOB joined to TEXT would come back as invalid text, so joining happens here, in Python.
"""

from __future__ import annotations

import base64
import os
from pathlib import PurePath

StoredPath = str | bytes


def to_db(path: str | PurePath) -> StoredPath:
    """The value to bind for `path`: TEXT when it is valid UTF-8, else the raw bytes as a BLOB."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def from_db(value: StoredPath) -> str:
    """The str (surrogate-escaped where needed) of a stored path; `os.fsencode` gives its bytes."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def display(path: str | PurePath) -> str:
    """`path` for a person: undecodable bytes become U+FFFD, so printing never raises."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "replace")


def b64(path: str | PurePath) -> str:
    """Base64 of the exact bytes of `path`, for scripts that must reach the very file."""
    return base64.b64encode(os.fsencode(os.fspath(path))).decode("ascii")


def sort_key(path: str | PurePath) -> bytes:
    """Order paths by their bytes (the order `ls` uses under LC_ALL=C)."""
    return os.fsencode(os.fspath(path))
