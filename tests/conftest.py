"""Shared fixtures: generated photo folders, tiny-backbone settings, a throwaway library dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from photos import PhotoSet, make_photo_folder

from imagehash_app.core.settings import LIBRARY_ENV, LibrarySettings


@pytest.fixture
def photo_folder(tmp_path: Path) -> PhotoSet:
    """3 originals with 3 near-copies each (resized, re-encoded, cropped) and 4 unrelated photos."""
    return make_photo_folder(tmp_path / "photos")


@pytest.fixture
def tiny_settings() -> LibrarySettings:
    """Fast, offline settings: the random tiny backbone, CPU, small batches."""
    return LibrarySettings(
        backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2
    )


@pytest.fixture
def library_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh library location, also made the default (IMAGEHASH_APP_LIBRARY)."""
    path = tmp_path / "library"
    monkeypatch.setenv(LIBRARY_ENV, str(path))
    return path


@pytest.fixture(autouse=True)
def _log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Failure details go to a throwaway log folder, never the user's (IMAGEHASH_APP_LOG_DIR)."""
    path = tmp_path / "logs"
    monkeypatch.setenv("IMAGEHASH_APP_LOG_DIR", str(path))
    return path
