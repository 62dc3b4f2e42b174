"""The person's marks ("More like this" / "Not similar") and the fine-tunes that learn from them,
through `cli.main` and `Library` on a small library indexed with the tiny backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from photos import PhotoSet, make_photo_folder

from imagehash_app import cli
from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

SETTINGS = LibrarySettings(
    backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2,
    hasher_params={
        "urph": {"hidden": 32, "decoder_hidden": 32, "input_dim": 32, "batch_size": 64},
        "harr": {"epochs": 2}, "dsh": {"epochs": 3, "hidden": 32, "input_dim": 32},
        "dpsh": {"epochs": 3, "hidden": 32, "input_dim": 32},
    },
)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhotoSet]:
    """30 generated photos in 7 folders (6 groups of an original and 3 near-copies, 6 others)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("feedback")
    photos = make_photo_folder(root / "photos", groups=6, unrelated=6)
    with Library.open(root / "library", settings=SETTINGS) as lib:
        list(lib.index([photos.root]))
    yield root / "library", photos
    torch.set_num_threads(threads)


def run(lib: Path, *argv: str) -> int:
    return cli.main(["--library", str(lib), *argv])


def test_finetune_method_harr_through_the_cli(indexed, capsys) -> None:
    lib, _ = indexed
    assert run(lib, "finetune", "--method", "harr", "--force", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert run(lib, "models", "list", "--json") == 0
    models = {m["id"]: m for m in json.loads(capsys.readouterr().out)}
    assert models[result["new_model"]]["method"] == "harr" and models[result["new_model"]]["active"]


def test_deepquan_and_unmarked_supervised_fine_tunes_are_refused_in_words(indexed, capsys) -> None:
    lib, _ = indexed
    assert run(lib, "finetune", "--method", "deepquan") == 1
    assert "stays in `imagehash-app eval`" in capsys.readouterr().err
    assert run(lib, "finetune", "--method", "dsh") == 1
    err = capsys.readouterr().err
    assert 'mark at least 3 results "More like this" and 3 "Not similar" (now 0 and 0)' in err


def test_marks_are_stored_counted_in_status_and_refused_for_outside_photos(
    indexed, capsys, tmp_path
) -> None:
    lib, photos = indexed
    a, b = photos.originals[0], photos.copies[photos.originals[0]][0]
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(a.read_bytes())
    with Library.open(lib) as library:
        library.mark_similar(a, b, True)
        library.mark_similar(b, a, False)  # the same pair from its other end: replaces the mark
        assert library.mark_counts() == {"similar": 0, "not_similar": 1}
        library.mark_similar(a, b, True)
        with pytest.raises(ImagehashError, match="Only photos in the library can be marked"):
            library.mark_similar(outside, a, True)
        with pytest.raises(ImagehashError, match="against itself"):
            library.mark_similar(a, a, False)
    assert run(lib, "status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["marks"] == {"similar": 1, "not_similar": 0}
    assert run(lib, "status") == 0
    assert "Marks:     1 more like this, 0 not similar" in capsys.readouterr().out


def test_supervised_fine_tune_learns_from_the_marks_and_the_folders(indexed, capsys) -> None:
    lib, photos = indexed
    groups = photos.originals
    with Library.open(lib) as library:
        for g in range(3):  # 3 "More like this" inside a group, 3 "Not similar" across groups
            library.mark_similar(groups[g], photos.copies[groups[g]][1], True)
            library.mark_similar(groups[g], groups[g + 3], False)
    assert run(lib, "finetune", "--method", "dpsh", "--force", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert run(lib, "models", "list", "--json") == 0
    new = next(m for m in json.loads(capsys.readouterr().out) if m["id"] == result["new_model"])
    assert new["method"] == "dpsh"
    pairs = new["metrics"]["finetune"]["pairs"]
    assert pairs["marked"] == 7 and pairs["negative"] == 3  # the earlier test's mark is kept
    assert pairs["folder"] > 0 and pairs["positive"] == 4 + pairs["folder"]
    assert "marked" in new["note"] and new["active"]


def test_folder_pairs_are_positives_within_a_directory_only() -> None:
    import numpy as np

    from imagehash_app.core.training import folder_pairs

    ids = np.arange(10, 22)
    paths = {int(i): Path(f"/p/{'a' if i < 16 else 'b'}/{i}.jpg") for i in ids}
    paths[21] = Path("/p/c/alone.jpg")
    pairs = folder_pairs(ids, paths, seed=0, per_photo=2)
    assert pairs and all(a < b for a, b in pairs)
    assert all(paths[int(ids[a])].parent == paths[int(ids[b])].parent for a, b in pairs)
    assert 11 not in {x for p in pairs for x in p}  # row 11 (id 21) shares its folder with no one
    assert all(sum(r in p for p in pairs) >= 2 for r in range(11))  # every photo gets partners
    assert folder_pairs(ids, paths, seed=0, per_photo=2) == pairs  # seeded
