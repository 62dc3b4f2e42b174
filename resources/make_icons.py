"""Render resources/icons/imagehash-app.svg to the PNG sizes desktops ask for (16..512).

Run once after editing the SVG: `.venv/bin/python resources/make_icons.py`. Uses Qt's SVG renderer
(already a dependency) so that no extra tool such as Inkscape or cairosvg is needed; the PNGs are
committed because packagers and the .desktop entry use them directly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
HERE = Path(__file__).resolve().parent
SVG = HERE / "icons" / "imagehash-app.svg"


def render(svg: Path, size: int, out: Path) -> None:
    """Draw the SVG into a transparent size×size image and save it as PNG."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"cannot write {out}")


def main() -> int:
    """Write icons/hicolor/<n>x<n>/apps/imagehash-app.png for every size (freedesktop layout)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    for size in SIZES:
        out = HERE / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "imagehash-app.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        render(SVG, size, out)
        print(out.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
