"""`imagehash-app finetune --compare`: the per-method figures and the chosen one, through cli.main
on a small library indexed with the tiny backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from photos import make_photo_folder

from imagehash_app import cli
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

SETTINGS = LibrarySettings(
    backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2,
    hasher_params={"urph": {"hidden": 32, "decoder_hidden": 32, "input_dim": 32, "batch_size": 64}},
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli-compare")
    photos = make_photo_folder(root / "photos", groups=5, unrelated=5)
    with Library.open(root / "library", settings=SETTINGS) as lib:
        list(lib.index([photos.root]))
    yield root / "library"
    torch.set_num_threads(threads)


def run(lib: Path, *argv: str) -> int:
    return cli.main(["--library", str(lib), *argv])


def test_finetune_compare_prints_each_method_and_the_chosen_one(library, capsys) -> None:
    assert run(library, "finetune", "--compare", "urph,itq", "--epochs", "2", "--force") == 0
    out, err = capsys.readouterr()
    assert "Comparing itq, urph on" in err and "within 5 min" in err
    lines = [line for line in out.splitlines() if line.startswith("  itq") or line.startswith("  urph")]
    assert len(lines) == 2 and sum("<- chosen" in line for line in lines) == 1
    assert all("trained" in line and "codes alone" in line for line in lines)
    chosen = next(line.split()[0] for line in lines if "<- chosen" in line)
    assert run(library, "models", "list", "--json") == 0
    models = json.loads(capsys.readouterr().out)
    assert next(m for m in models if m["active"])["method"] == chosen


def test_finetune_compare_with_no_budget_says_so_and_trains_urph(library, capsys) -> None:
    assert run(library, "finetune", "--compare", "itq", "--budget", "0", "--epochs", "2", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["comparison"] == [
        {"method": "itq", "status": "skipped", "fit_s": 0.0, "eval_s": 0.0, "epochs": None, "metrics": {}}
    ]
    assert result["method"] == "urph"


def test_finetune_compare_refuses_a_supervised_method(library, capsys) -> None:
    assert run(library, "finetune", "--compare", "urph,dpsh") == 1
    assert "Only the unsupervised sign-code methods can be compared" in capsys.readouterr().err
