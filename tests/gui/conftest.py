"""Fixtures for the window tests: offscreen Qt, a generated photo folder, a tiny-backbone library.

QT_QPA_PLATFORM is set here, before anything imports Qt, so the tests run without a display.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

N_PHOTOS = 14


def make_photo(seed: int, size: int = 128) -> Image.Image:
    """A distinct, photo-like picture: a colour gradient with soft shapes (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    angle = rng.uniform(0, np.pi)
    xx, yy = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size))
    t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    base = (c0 * (1 - t) + c1 * t).astype(np.uint8)
    img = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = rng.integers(-20, size, 2)
        w, h = rng.integers(15, size // 2, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
        else:
            draw.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
    return img.filter(ImageFilter.GaussianBlur(1.2))


@pytest.fixture(name="make_photo")
def make_photo_fixture():
    """The photo generator, for tests that need their own folders."""
    return make_photo


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of N_PHOTOS distinct JPEGs plus `near_copy.jpg`: photo_003 resized and re-encoded."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(N_PHOTOS):
        make_photo(i).save(folder / f"photo_{i:03d}.jpg", quality=92)
    original = Image.open(folder / "photo_003.jpg")
    original.resize((112, 112), Image.Resampling.BICUBIC).save(folder / "near_copy.jpg", quality=70)
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    return folder


@pytest.fixture
def tiny_library(tmp_path: Path) -> Path:
    """An empty library using the tiny random backbone (no download, fast)."""
    from imagehash_app.core.library import Library
    from imagehash_app.core.settings import LibrarySettings

    path = tmp_path / "library"
    Library.open(path, settings=LibrarySettings(backbone="tiny", weights="none", bits=64)).close()  # create it
    return path


@pytest.fixture
def qsettings(tmp_path: Path):
    """QSettings in a temp INI file, so tests never touch the person's real settings."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, qsettings):
    """Build MainWindows; each is closed at teardown and must leave no thread behind."""
    from imagehash_app.gui.main_window import MainWindow

    before = {t.ident for t in threading.enumerate()}
    windows: list[MainWindow] = []

    def factory(library: Path, **kwargs) -> MainWindow:
        kwargs.setdefault("watch", False)
        window = MainWindow(library, qsettings=qsettings, **kwargs)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield factory
    for window in windows:
        window.close()
        assert not window.writer.isRunning()
        assert not window.reader.isRunning()
        assert window.thumbs.pool.activeThreadCount() == 0
    leftover = [
        t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon
    ]
    assert not leftover, f"threads left running: {leftover}"
