"""Library > Improve search for my photos…, end to end on the real window (offscreen): progress,
searching during the fine-tune, Keep (results change), Roll back (results as before)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from imagehash_app.core.library import Library
from imagehash_app.gui.dialogs.finetune import FinetuneDialog, open_finetune_dialog

WAIT_MS = 120_000
MENU_TEXT = "Improve search for my photos"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks train several times faster on one thread of a shared 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    from imagehash_app.core.settings import LibrarySettings

    settings = LibrarySettings(
        backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2,
        hasher_params={"urph": {"hidden": 32, "decoder_hidden": 32, "input_dim": 32,
                                "batch_size": 64, "epochs": 6}},
    )
    path = tmp_path / "library"
    Library.open(path, settings=settings).close()  # create it
    return path


@pytest.fixture
def photos(tmp_path: Path, make_photo) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(24):
        make_photo(100 + i).save(folder / f"p{i:03d}.jpg", quality=90)
    return folder


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch):
    """Holds every fine-tune after its first event until the test opens the gate."""
    opened = threading.Event()
    real = Library.finetune

    def gated(lib, **kwargs):
        gen = real(lib, **kwargs)
        yield next(gen)
        assert opened.wait(WAIT_MS / 1000)
        return (yield from gen)

    monkeypatch.setattr(Library, "finetune", gated)
    yield opened
    opened.set()


def results(outcome) -> list[tuple[Path, float]]:
    return [(item.path, round(item.score, 5)) for item in outcome.results]


def search(qtbot, window, query: Path) -> list[tuple[Path, float]]:
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS) as found:
        window.search([query])
    return results(found.args[0])


def open_dialog(qtbot, window) -> FinetuneDialog:
    """Through the Library menu when the window has the action, else as the action does."""
    actions = [a for menu in window.menuBar().actions() for a in menu.menu().actions()
               if MENU_TEXT in a.text().replace("&", "")]
    if actions:
        actions[0].trigger()
        dialog = window.finetune_dialog
    else:
        dialog = open_finetune_dialog(window)
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=WAIT_MS)
    return dialog


def run_to_end(qtbot, window, dialog: FinetuneDialog):
    """Start with "switch even if not better" ticked; wait for the result and the re-run query."""
    dialog.force.setChecked(True)
    with qtbot.waitSignals([dialog.finetuneFinished, window.searchFinished], timeout=WAIT_MS) as got:
        dialog.start_button.click()
    return got.all_signals_and_args


def test_improve_search_keep_then_roll_back(qtbot, make_window, library, photos, gate) -> None:
    window = make_window(library)
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS):
        window.add_folders([photos])
    query = photos / "p003.jpg"
    before = search(qtbot, window, query)

    dialog = open_dialog(qtbot, window)
    assert "minute" in dialog.intro.text() and "Searching keeps working" in dialog.intro.text()
    seen: list = []
    dialog.progressed.connect(seen.append)
    dialog.force.setChecked(True)
    dialog.start_button.click()
    qtbot.waitUntil(lambda: bool(seen), timeout=WAIT_MS)
    assert dialog.cancel_button.isVisible()
    # The fine-tune is under way (held at the gate): search answers, with the current version.
    assert search(qtbot, window, query) == before

    with qtbot.waitSignals([dialog.finetuneFinished, window.searchFinished], timeout=WAIT_MS):
        gate.set()
    phases = {e.phase for e in seen}
    assert {"train", "evaluate", "encode", "swap"} <= phases
    assert any("epoch" in dialog_text for dialog_text in map(_text, seen))
    assert dialog.figures.isVisible() and dialog.keep_button.isVisible() and dialog.rollback_button.isVisible()
    kept = results(window.query)
    assert kept != before  # Keep: the new version answers, the results change
    dialog.keep_button.click()
    assert not dialog.isVisible()

    second = open_dialog(qtbot, window)
    run_to_end(qtbot, window, second)
    assert results(window.query) != kept
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        second.rollback_button.click()
    assert results(window.query) == kept  # Roll back: exactly the answers before this fine-tune


def test_cancel_keeps_the_current_version(qtbot, make_window, library, photos, gate) -> None:
    window = make_window(library)
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS):
        window.add_folders([photos])
    query = photos / "p001.jpg"
    before = search(qtbot, window, query)
    dialog = open_dialog(qtbot, window)
    seen: list = []
    dialog.progressed.connect(seen.append)
    dialog.start_button.click()
    qtbot.waitUntil(lambda: bool(seen), timeout=WAIT_MS)
    with qtbot.waitSignal(dialog.finetuneFinished, timeout=WAIT_MS) as finished:
        dialog.cancel_button.click()
        gate.set()
    assert finished.args[0] is None
    assert "Stopped" in dialog.progress_label.text() and dialog.close_button.isVisible()
    assert search(qtbot, window, query) == before


def _text(event) -> str:
    from imagehash_app.gui.dialogs.finetune import event_text

    return event_text(event)


def test_method_choice_trains_the_chosen_method_and_hides_supervised_without_marks(
    qtbot, make_window, library, photos, gate
) -> None:
    window = make_window(library)
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS):
        window.add_folders([photos])
    dialog = open_dialog(qtbot, window)
    offered = [dialog.method.itemData(i) for i in range(dialog.method.count())]
    assert offered == ["urph", "itq", "harr", "distillhash", "dsg", "dmuh", "compare"]  # no marks: no dsh…
    assert "mark at least 3" in dialog.method.toolTip()
    dialog.method.setCurrentIndex(offered.index("itq"))
    dialog.method.activated.emit(offered.index("itq"))  # as a person's pick does: re-plan
    qtbot.waitUntil(lambda: dialog.plan is not None and dialog.plan.method == "itq", timeout=WAIT_MS)
    gate.set()
    dialog.force.setChecked(True)
    with qtbot.waitSignal(dialog.finetuneFinished, timeout=WAIT_MS) as finished:
        dialog.start_button.click()
    assert finished.args[0] is not None and dialog.result is finished.args[0]
    with Library.open(library, read_only=True) as lib:
        assert next(m for m in lib.models() if m.id == dialog.result.new_model).method == "itq"


def test_compare_choice_shows_each_methods_figures_and_the_one_kept(
    qtbot, make_window, library, photos, gate, monkeypatch
) -> None:
    from imagehash_app.core import method_compare

    monkeypatch.setattr(method_compare, "COMPARE_BUDGET_S", 60.0)  # a small budget for the test
    window = make_window(library)
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS):
        window.add_folders([photos])
    dialog = open_dialog(qtbot, window)
    offered = [dialog.method.itemData(i) for i in range(dialog.method.count())]
    dialog.method.setCurrentIndex(offered.index("compare"))
    dialog.method.activated.emit(offered.index("compare"))
    qtbot.waitUntil(lambda: dialog.plan is not None and bool(dialog.plan.compare), timeout=WAIT_MS)
    assert "Each of 6 methods" in dialog.intro.text() and "within a minute" in dialog.intro.text()
    gate.set()
    with qtbot.waitSignal(dialog.finetuneFinished, timeout=WAIT_MS) as finished:
        dialog.start_button.click()
    result = finished.args[0]
    assert [c["method"] for c in result.comparison] == list(method_compare.COMPARE_METHODS)
    assert dialog.comparison.isVisible()
    grid = dialog.comparison_grid
    cells = [[grid.itemAtPosition(r, c).widget().text() for c in range(3)] for r in range(1, 7)]
    done = [c for c in result.comparison if c["status"] == "done"]
    assert done, "at least ITQ finishes within a minute"
    chosen = [row for row in cells if "(chosen)" in row[0]]
    assert len(chosen) == 1 and result.method in chosen[0][0]
    best = max(done, key=lambda c: (c["metrics"]["rerank_10@10"], c["method"] == "urph"))
    assert result.method == best["method"]
    assert chosen[0][1] == f"{best['metrics']['rerank_10@10']:.0%}"
    with Library.open(library, read_only=True) as lib:
        assert next(m for m in lib.models() if m.id == result.new_model).method == result.method
