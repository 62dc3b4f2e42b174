"""`search --text`, `status`'s words line and the `words` sub-commands, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from photos import make_photo
from words_photos import save_jpeg

from imagehash_app import cli
from imagehash_app.core.words import crossmodal

TINY_FLAGS = ["--backbone", "tiny", "--weights", "none", "--bits", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cliwords")
    photos = root / "photos"
    for folder, seed in (("Lisbon Trams", 0), ("Porto", 50), ("DCIM", 90)):
        for i in range(6):
            save_jpeg(make_photo(seed + i, (64, 48)), photos / folder / f"IMG_{seed + i:04d}.jpg",
                      xmp_keywords=["yellow"] if folder == "DCIM" and i < 3 else None)
    assert cli.main(["--library", str(root / "lib"), "index", str(photos), *TINY_FLAGS]) == 0
    return root / "lib", photos


def test_status_and_words_list(library, capsys) -> None:
    lib, _ = library
    capsys.readouterr()
    assert cli.main(["--library", str(lib), "status"]) == 0
    assert "Words:     15 photos carry words" in capsys.readouterr().out
    assert cli.main(["--library", str(lib), "words", "list", "--json"]) == 0
    vocab = {w["word"]: w["photos"] for w in json.loads(capsys.readouterr().out)}
    assert vocab == {"lisbon": 6, "trams": 6, "porto": 6, "yellow": 3}


def test_search_text_json(library, capsys) -> None:
    lib, photos = library
    capsys.readouterr()
    assert cli.main(["--library", str(lib), "search", "--text", "lisbon tram", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["words"] == ["lisbon"] and answer["unknown"] == ["tram"]
    assert {Path(r["path"]).parent.name for r in answer["results"]} == {"Lisbon Trams"}
    assert all(r["has_words"] for r in answer["results"])


def test_words_train_refused_in_words_then_trained_and_rolled_back(library, capsys, monkeypatch) -> None:
    lib, photos = library
    capsys.readouterr()
    assert cli.main(["--library", str(lib), "words", "train"]) == 1
    assert "at least 50 photos" in capsys.readouterr().err
    monkeypatch.setattr(crossmodal, "MIN_PHOTOS_WITH_WORDS", 10)
    assert cli.main(["--library", str(lib), "words", "train", "--epochs", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kept"] and result["trained_on"] > 0
    assert cli.main(["--library", str(lib), "search", "--text", "porto", "--top", "10", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["results"]) == 10 and not all(r["has_words"] for r in answer["results"])
    assert cli.main(["--library", str(lib), "words", "suggest", str(photos / "DCIM" / "IMG_0095.jpg"),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    assert cli.main(["--library", str(lib), "words", "activate", "none"]) == 0
    assert "No words version" in capsys.readouterr().out


def test_search_needs_photos_or_words(library, capsys) -> None:
    lib, _ = library
    with pytest.raises(SystemExit) as info:
        cli.main(["--library", str(lib), "search"])
    assert info.value.code == 2 and "--text" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "adversarial"), [
    ([], False), (["--adversarial"], True), (["--no-adversarial"], False)])
def test_words_train_without_the_generator_unless_asked(library, monkeypatch, flags, adversarial) -> None:
    """The measured-better ablation is the default; `--adversarial` trains the full UGACH."""
    from imagehash_app.core.hashing import ugach

    lib, _ = library
    monkeypatch.setattr(crossmodal, "MIN_PHOTOS_WITH_WORDS", 10)
    seen: list[bool] = []
    fit = ugach.UGACH.fit

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(self.params.adversarial)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(ugach.UGACH, "fit", spy)
    assert cli.main(["--library", str(lib), "words", "train", "--epochs", "2", "--json", *flags]) == 0
    assert seen == [adversarial]
