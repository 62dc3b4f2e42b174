"""Find the app's icon in resources/ from a source checkout, an installed package or a frozen bundle."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon

ICON_NAME = "imagehash-app"


def resources_dir() -> Path | None:
    """resources/ next to the package (checkout), or inside the PyInstaller bundle (sys._MEIPASS)."""
    candidates = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        candidates.append(Path(frozen) / "resources")
    here = Path(__file__).resolve()
    candidates += [here.parents[2] / "resources", here.parents[1] / "resources"]
    for candidate in candidates:
        if (candidate / "icons").is_dir():
            return candidate
    return None


def app_icon() -> QIcon:
    """Every PNG size plus the SVG; falls back to the desktop theme's icon of the same name."""
    icon = QIcon()
    root = resources_dir()
    if root is not None:
        for png in sorted((root / "icons" / "hicolor").glob(f"*/apps/{ICON_NAME}.png")):
            icon.addFile(str(png))
        svg = root / "icons" / f"{ICON_NAME}.svg"
        if icon.isNull() and svg.exists():
            icon.addFile(str(svg))
    if icon.isNull():
        icon = QIcon.fromTheme(ICON_NAME)
    return icon
