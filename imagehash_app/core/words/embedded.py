"""Keywords, titles and captions that cameras and photo managers embed in a photo.

Read with Pillow (its XMP reader, `Image.getxmp`, parses with defusedxml; its IPTC reader
`IptcImagePlugin.getiptcinfo`; its EXIF reader), never with a hand-written parser. Only the file's
header is read: no pixel is decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, IptcImagePlugin

log = logging.getLogger(__name__)

# IPTC-IIM record 2 datasets
IPTC_KEYWORDS = (2, 25)
IPTC_TITLE = (2, 5)  # Object Name
IPTC_HEADLINE = (2, 105)
IPTC_CAPTION = (2, 120)
# EXIF tags
EXIF_IFD = 0x8769
IMAGE_DESCRIPTION = 0x010E
USER_COMMENT = 0x9286
XP_TITLE, XP_COMMENT, XP_KEYWORDS, XP_SUBJECT = 0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F
# XMP: Dublin Core keys as Pillow's getxmp() names them (namespace dropped)
XMP_KEYS = {"subject": "keyword", "title": "title", "description": "caption"}
MAX_TEXT = 2000  # characters kept of one field: captions can be whole stories


def embedded_texts(path: Path) -> dict[str, list[str]]:
    """{"keyword": [...], "title": [...], "caption": [...]}: the raw texts embedded in the photo
    at `path` (empty lists when it has none or cannot be read: words are a bonus, never a
    reason to skip a photo)."""
    out: dict[str, list[str]] = {"keyword": [], "title": [], "caption": []}
    try:
        with Image.open(path) as im:
            _add_xmp(im, out)
            _add_iptc(im, out)
            _add_exif(im, out)
    except Exception as exc:  # noqa: BLE001 - any unreadable header only means "no words"
        log.debug("no embedded words from %s: %s", path, exc)
    return {k: _unique(v) for k, v in out.items()}


def _add_xmp(im: Image.Image, out: dict[str, list[str]]) -> None:
    getxmp = getattr(im, "getxmp", None)
    if getxmp is None:
        return
    try:
        xmp = getxmp()
    except Exception as exc:  # noqa: BLE001 - malformed XMP: the other sources still count
        log.debug("unreadable XMP: %s", exc)
        return
    for key, value in _walk(xmp):
        kind = XMP_KEYS.get(key)
        if kind is not None:
            out[kind] += list(_strings(value))


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """(key, value) of every mapping inside the nested dicts and lists getxmp() returns."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _strings(value: Any) -> Iterator[str]:
    """The texts inside an XMP value: a plain string, an rdf:Bag/Seq/Alt's `li` items, or a
    language alternative's `text`."""
    if isinstance(value, str):
        if value.strip():
            yield value[:MAX_TEXT]
    elif isinstance(value, dict):
        for key in ("Bag", "Seq", "Alt", "li", "text"):
            if key in value:
                yield from _strings(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _add_iptc(im: Image.Image, out: dict[str, list[str]]) -> None:
    try:
        info = IptcImagePlugin.getiptcinfo(im) or {}
    except Exception as exc:  # noqa: BLE001
        log.debug("unreadable IPTC: %s", exc)
        return
    for key, kind in (
        (IPTC_KEYWORDS, "keyword"), (IPTC_TITLE, "title"), (IPTC_HEADLINE, "title"),
        (IPTC_CAPTION, "caption"),
    ):
        value = info.get(key)
        for item in value if isinstance(value, list) else [value] if value else []:
            out[kind].append(_text(item))


def _add_exif(im: Image.Image, out: dict[str, list[str]]) -> None:
    try:
        exif = im.getexif()
        sub = exif.get_ifd(EXIF_IFD)
    except Exception as exc:  # noqa: BLE001
        log.debug("unreadable EXIF: %s", exc)
        return
    if exif.get(IMAGE_DESCRIPTION):
        out["caption"].append(_text(exif[IMAGE_DESCRIPTION]))
    if sub.get(USER_COMMENT):
        out["caption"].append(_user_comment(sub[USER_COMMENT]))
    for tag, kind in ((XP_KEYWORDS, "keyword"), (XP_TITLE, "title"), (XP_SUBJECT, "title"),
                      (XP_COMMENT, "caption")):
        if exif.get(tag):
            out[kind] += _text(exif[tag], "utf-16-le").split(";")


def _text(value: Any, encoding: str = "utf-8") -> str:
    if isinstance(value, bytes):
        value = value.decode(encoding, errors="replace")
    return str(value).replace("\x00", " ").strip()[:MAX_TEXT]


def _user_comment(value: Any) -> str:
    """EXIF UserComment: 8 bytes naming the character code, then the text."""
    if not isinstance(value, bytes):
        return _text(value)
    head, body = value[:8], value[8:]
    if head.startswith(b"UNICODE"):
        return _text(body, "utf-16-be" if body[:1] == b"\x00" else "utf-16-le")
    return _text(body if head.rstrip(b"\x00 ") in (b"ASCII", b"", b"JIS") else value)


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in seen:
            seen.append(item)
    return seen
