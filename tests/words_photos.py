"""Generated JPEGs carrying words the way cameras and photo managers embed them: XMP (dc:subject,
dc:title, dc:description), IPTC-IIM keywords and caption (an APP13 Photoshop block), EXIF
ImageDescription and UserComment."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from PIL import Image

XMP = """<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{caption}</rdf:li></rdf:Alt></dc:description>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>"""


def xmp_packet(keywords: list[str], title: str = "", caption: str = "") -> bytes:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return XMP.format(items=items, title=title, caption=caption).encode()


def iptc_segment(keywords: list[str], caption: str = "") -> bytes:
    """An APP13 segment holding an IPTC-IIM block (record 2: keywords 25, caption 120)."""
    data = b""
    for dataset, value in [(25, k) for k in keywords] + ([(120, caption)] if caption else []):
        raw = value.encode()
        data += bytes([0x1C, 2, dataset]) + struct.pack(">H", len(raw)) + raw
    if len(data) % 2:
        data += b"\0"
    block = b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(data)) + data
    payload = b"Photoshop 3.0\0" + block
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def save_jpeg(
    image: Image.Image, path: Path, *, xmp_keywords: list[str] | None = None, title: str = "",
    caption: str = "", iptc_keywords: list[str] | None = None, iptc_caption: str = "",
    description: str = "", user_comment: str = "",
) -> Path:
    """Save `image` as a JPEG at `path` with the given embedded words."""
    exif = Image.Exif()
    if description:
        exif[0x010E] = description
    if user_comment:
        exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + user_comment.encode()
    kwargs = {"exif": exif.tobytes()} if description or user_comment else {}
    if xmp_keywords or title or caption:
        kwargs["xmp"] = xmp_packet(xmp_keywords or [], title, caption)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90, **kwargs)
    raw = buf.getvalue()
    if iptc_keywords or iptc_caption:
        raw = raw[:2] + iptc_segment(iptc_keywords or [], iptc_caption) + raw[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path
