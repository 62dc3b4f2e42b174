"""Exclude patterns through the library: counted before they are kept, refused when not valid,
and applied by the next update (a folder named daisy, written either way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.library import Library


def _tree(root: Path, photo: Path) -> Path:
    folder = root / "flower_photos"
    for rel in ("daisy/a.jpg", "daisy/sub/b.jpg", "roses/c.jpg", "d.jpg"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(photo.read_bytes())
    return folder


def test_count_and_apply_exclude_patterns(tmp_path, library_dir, tiny_settings, photo_folder):
    photo = photo_folder.originals[0]
    folder = _tree(tmp_path, photo)
    with Library.open(library_dir, settings=tiny_settings) as lib:
        lib.add_folder(folder)
        assert lib.count_excluded([]) == (0, 4)
        assert lib.count_excluded(["*/daisy/*"]) == (2, 4)
        assert lib.count_excluded(["daisy/"]) == (2, 4)
        assert lib.count_excluded(["*.jpg", "!d.jpg"]) == (3, 4)
        with pytest.raises(ImagehashError, match="not valid"):
            lib.count_excluded(["!"])
        with pytest.raises(ImagehashError, match="not valid"):
            lib.update_settings(exclude_patterns=["\\"])
        assert lib.settings.exclude_patterns == []
        lib.update_settings(exclude_patterns=["*/daisy/*"])
        list(lib.update())
        assert lib.folders()[0].indexed == 2
