"""file:// URLs that keep a file name's exact bytes.

Linux file names are bytes; Python holds the ones that are not UTF-8 with surrogate escapes. Qt's
`QUrl.fromLocalFile` / `toLocalFile` go through QString and silently lose such bytes (the window
would open or search for another file), while the URL's percent-encoded form keeps them. So on
POSIX the window converts through the encoded form; elsewhere names are Unicode and Qt's own
conversion is exact.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

from PySide6.QtCore import QUrl

_POSIX = os.name == "posix"


def url_of(path: Path | str) -> QUrl:
    """The file:// URL of a local path, exact for any bytes."""
    if not _POSIX:
        return QUrl.fromLocalFile(str(path))
    raw = os.fsencode(os.path.abspath(path))
    return QUrl.fromEncoded(b"file://" + quote_from_bytes(raw, safe="/").encode("ascii"))


def path_of(url: QUrl) -> Path | None:
    """The local path a file:// URL names (None for other URLs), exact for any bytes."""
    if not url.isLocalFile():
        return None
    if not _POSIX:
        return Path(url.toLocalFile())
    encoded = bytes(url.toEncoded(QUrl.ComponentFormattingOption.FullyEncoded)).decode("ascii")
    return Path(os.fsdecode(unquote_to_bytes(urlsplit(encoded).path)))
