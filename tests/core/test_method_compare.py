"""Improve search… comparing the unsupervised sign-code methods within a time budget: the budget
is honoured (a fake clock), the best held-out recall 10@10 after re-rank wins, URPH is the
default; and end to end on a small library indexed with the tiny backbone."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
import torch
from photos import PhotoSet, make_photo_folder

from imagehash_app.core import method_compare
from imagehash_app.core.errors import CancelledError, ImagehashError
from imagehash_app.core.library import Library
from imagehash_app.core.method_compare import DONE, OUT_OF_TIME, SKIPPED, Candidate, compare, winner
from imagehash_app.core.settings import LibrarySettings

SMALL_HEAD = {"hidden": 32, "decoder_hidden": 32, "input_dim": 32, "batch_size": 64,
              "decoder_epochs": 2}
SETTINGS = LibrarySettings(
    backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2,
    hasher_params={
        "urph": {"hidden": 32, "decoder_hidden": 32, "input_dim": 32, "batch_size": 64},
        "harr": {**SMALL_HEAD, "wta_hashes": 64}, "dmuh": SMALL_HEAD,
    },
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_fit(clock: FakeClock, seconds: dict[str, float], calls: list[str]):
    """A fit that spends `seconds[method]` of fake time in 5 epochs, checking `stop` each epoch."""

    def fit(method: str, epochs: int | None, stop) -> Generator[object, None, str]:
        calls.append(method)
        for _ in range(5):
            if stop():
                raise CancelledError("stopped")
            clock.now += seconds[method] / 5
            yield method
        return method  # stands for the fitted hasher

    return fit


def drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_budget_stops_the_candidate_it_catches_and_skips_the_rest() -> None:
    clock, calls = FakeClock(), []
    seconds = {"itq": 1, "urph": 4, "harr": 3, "distillhash": 4, "dsg": 1, "dmuh": 1}
    recall = {"itq": 0.30, "urph": 0.40, "harr": 0.45, "distillhash": 0.9}
    best, cands = drain(compare(
        method_compare.COMPARE_METHODS, fake_fit(clock, seconds, calls),
        lambda h: {"rerank_10@10": recall[h], "hamming_10@10": recall[h] / 2},
        budget_s=10, clock=clock,
    ))
    status = {c.method: c.status for c in cands}
    assert [c.method for c in cands] == ["itq", "urph", "harr", "distillhash", "dsg", "dmuh"]
    assert status == {"itq": DONE, "urph": DONE, "harr": DONE, "distillhash": OUT_OF_TIME,
                      "dsg": SKIPPED, "dmuh": SKIPPED}
    assert calls == ["itq", "urph", "harr", "distillhash"]  # nothing started after the budget
    assert clock.now <= 10 + seconds["distillhash"] / 5  # stopped within one epoch of the end
    assert best == "harr" and winner(cands).method == "harr"  # distillhash's 0.9 never counted
    assert cands[0].metrics == {"rerank_10@10": 0.30, "hamming_10@10": 0.15}
    assert cands[1].fit_s == 4 and cands[3].fit_s > 0


def test_ties_go_to_urph_and_nothing_finished_gives_no_winner() -> None:
    tie = [Candidate("itq", DONE, metrics={"rerank_10@10": 0.5}),
           Candidate("urph", DONE, metrics={"rerank_10@10": 0.5}),
           Candidate("harr", DONE, metrics={"rerank_10@10": 0.49})]
    assert winner(tie).method == "urph"
    assert winner([Candidate("itq", OUT_OF_TIME), Candidate("urph", SKIPPED)]) is None
    clock = FakeClock()
    best, cands = drain(compare(("urph", "itq"), fake_fit(clock, {"urph": 1, "itq": 1}, []),
                                lambda h: {}, budget_s=0, clock=clock))
    assert best is None and [c.status for c in cands] == [SKIPPED, SKIPPED]


def test_the_persons_cancel_stops_the_whole_comparison() -> None:
    clock = FakeClock()
    with pytest.raises(CancelledError):
        drain(compare(("itq", "urph"), fake_fit(clock, {"itq": 1, "urph": 1}, []), lambda h: {},
                      budget_s=100, should_stop=lambda: True, clock=clock))


def test_only_unsupervised_sign_code_methods_are_compared() -> None:
    assert method_compare.comparison_problem(("urph", "itq")) == ""
    assert "not dsh, deepquan" in method_compare.comparison_problem(("urph", "dsh", "deepquan"))
    assert method_compare.ordered(("dmuh", "urph", "itq", "urph")) == ["itq", "urph", "dmuh"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PhotoSet]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("compare")
    photos = make_photo_folder(root / "photos", groups=6, unrelated=6)
    with Library.open(root / "library", settings=SETTINGS) as lib:
        list(lib.index([photos.root]))
    yield root / "library", photos
    torch.set_num_threads(threads)


def test_library_compares_and_keeps_the_best_through_the_keep_roll_back_flow(indexed) -> None:
    root, _ = indexed
    with Library.open(root) as lib:
        plan = lib.finetune_plan(compare=("harr", "itq", "urph"), budget_s=600)
        assert plan.problem == "" and plan.compare == ("itq", "urph", "harr") and plan.budget_s == 600
        assert lib.finetune_plan(compare=("dsh",)).problem  # supervised: never compared
        result = drain(lib.finetune(compare=("itq", "urph", "harr"), budget_s=600, epochs=3, force=True))
        models = {m.id: m for m in lib.models()}
    cands = {c["method"]: c for c in result.comparison}
    assert set(cands) == {"itq", "urph", "harr"} and all(c["status"] == DONE for c in cands.values())
    best = max(cands.values(), key=lambda c: (c["metrics"]["rerank_10@10"], c["method"] == "urph"))
    assert result.method == best["method"] == models[result.new_model].method
    assert result.new_metrics == best["metrics"]  # measured once, on the same held-out photos
    assert cands["urph"]["epochs"] == 3 and cands["itq"]["epochs"] is None
    record = models[result.new_model].metrics["finetune"]
    assert [c["method"] for c in record["compare"]] == ["itq", "urph", "harr"]
    assert result.activated and models[result.new_model].active


def test_a_spent_budget_falls_back_to_urph(indexed) -> None:
    root, _ = indexed
    with Library.open(root) as lib:
        result = drain(lib.finetune(compare=("itq", "dmuh"), budget_s=0, epochs=2, force=True))
        models = {m.id: m for m in lib.models()}
    assert [c["status"] for c in result.comparison] == [SKIPPED, SKIPPED]
    assert result.method == "urph" == models[result.new_model].method


def test_compare_refuses_supervised_methods_in_words(indexed) -> None:
    root, _ = indexed
    with Library.open(root) as lib, pytest.raises(ImagehashError, match="Only the unsupervised"):
        drain(lib.finetune(compare=("dsh",)))
