"""`finetune` and `models {list,activate}` on a small library indexed with the tiny backbone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from photos import make_photo_folder

from imagehash_app.cli.models import add_parsers
from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings

SETTINGS = LibrarySettings(
    backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2,
    hasher_params={"urph": {"hidden": 32, "decoder_hidden": 32, "input_dim": 32, "batch_size": 64}},
)


def main(argv: list[str]) -> int:
    """The sub-commands as cli.main dispatches them (parser + `func`), errors as exit status 1."""
    parser = argparse.ArgumentParser(prog="imagehash-app")
    parser.add_argument("--library", type=Path)
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ImagehashError as exc:
        print(f"imagehash-app: {exc}")
        return 1


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 generated photos, indexed (the library's first hasher is the PCA-ITQ fallback)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli")
    photos = make_photo_folder(root / "photos", groups=6, unrelated=6)
    with Library.open(root / "library", settings=SETTINGS) as lib:
        list(lib.index([photos.root]))
    yield root / "library"
    torch.set_num_threads(threads)


def active(path: Path) -> int:
    with Library.open(path, read_only=True) as lib:
        return lib.status().model["id"]


def test_finetune_prints_the_table_and_switches(library: Path, capsys) -> None:
    first = active(library)
    assert main(["--library", str(library), "finetune", "--epochs", "3", "--force"]) == 0
    out = capsys.readouterr()
    assert "kNN recall 10@10, decoder re-rank" in out.out
    assert f"v{first} (old)" in out.out and "Version 2 " in out.out
    assert "Fine-tuning urph on" in out.err  # the plan, with its time estimate
    assert active(library) != first


def test_finetune_json_and_models_list_and_activate(library: Path, capsys) -> None:
    assert main(["--library", str(library), "finetune", "--epochs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["old_metrics"]) == set(result["new_metrics"]) >= {"rerank_10@10"}
    assert not result["warm_start"] or result["old_model"] != result["new_model"]

    assert main(["--library", str(library), "models", "list", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert len(models) == 2 and sum(m["active"] for m in models) == 1  # the last 2 are kept
    other = next(m["id"] for m in models if not m["active"])

    assert main(["--library", str(library), "models", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and sum(line.startswith("*") for line in table) == 1

    assert main(["--library", str(library), "models", "activate", str(other)]) == 0
    assert f"Version {other}" in capsys.readouterr().out
    assert active(library) == other

    assert main(["--library", str(library), "models", "activate", "999"]) == 1
    assert "There is no version 999" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["itq", "dsg"])
def test_finetune_method_trains_that_method_and_models_list_shows_it(
    library: Path, capsys, method: str
) -> None:
    argv = ["--library", str(library), "finetune", "--method", method, "--force", "--json"]
    if method == "dsg":
        argv[-1:-1] = ["--epochs", "2"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert not result["warm_start"]
    assert main(["--library", str(library), "models", "list", "--json"]) == 0
    models = {m["id"]: m for m in json.loads(capsys.readouterr().out)}
    new = models[result["new_model"]]
    assert new["method"] == method and new["active"]
    assert new["note"].startswith(f"{method} fine-tuned")
    assert new["metrics"]["finetune"]["method"] == method
    assert main(["--library", str(library), "models", "list"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("*"))
    assert row.split()[2] == method


@pytest.mark.parametrize(("method", "words"), [
    ("deepquan", "stays in `imagehash-app eval`"), ("nope", "Unknown method 'nope'"),
])
def test_finetune_refuses_eval_only_and_unknown_methods(
    library: Path, capsys, method: str, words: str
) -> None:
    before = active(library)
    assert main(["--library", str(library), "finetune", "--method", method]) == 1
    err = capsys.readouterr().err
    assert words in err
    assert active(library) == before
