"""The window's search box: typing suggests the library's words, Enter finds the photos for them,
and "Suggest keywords" on a result answers in the message bar."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt
from test_main_window import index_folder

WAIT_MS = 180_000  # a shared 2-core runner: training and indexing can take their time


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks train several times faster on one thread of a shared 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_search_box_suggests_words_and_finds_the_photos(qtbot, make_window, tiny_library, tmp_path, make_photo):
    photos = tmp_path / "albums"
    for folder, seed in (("Lisbon Trams", 0), ("Porto", 100), ("DCIM", 200)):
        (photos / folder).mkdir(parents=True)
        for i in range(4):
            make_photo(seed + i).save(photos / folder / f"IMG_{seed + i:04d}.jpg", quality=90)
    window = make_window(tiny_library)
    index_folder(qtbot, window, photos)
    box = window.text_box
    qtbot.waitUntil(lambda: "lisbon" in box.words.stringList(), timeout=WAIT_MS)

    box.setFocus()
    qtbot.keyClicks(box, "tr")
    assert box.suggestions() == ["trams"]
    box.insert_word("trams")
    qtbot.keyClicks(box, "lis")
    assert box.suggestions() == ["lisbon"]
    box.insert_word("lisbon")
    assert box.text() == "trams lisbon "

    with qtbot.waitSignal(window.textSearchFinished, timeout=WAIT_MS) as done:
        qtbot.keyClick(box, Qt.Key.Key_Return)
    answer = done.args[0]
    assert answer.words == ["trams", "lisbon"]
    assert window.results_model.rowCount() == 4  # no words version yet: the photos carrying them
    shown = {window.results_view.path_at(window.results_model.index(r)).parent.name for r in range(4)}
    assert shown == {"Lisbon Trams"}
    assert "4 photos for" in window.results_caption.text()

    actions = {a.text(): a for a in window.results_view.context_actions(window.results_model.index(0))}
    with qtbot.waitSignal(window.keywordsSuggested, timeout=WAIT_MS) as suggested:
        actions["Suggest keywords"].trigger()
    assert suggested.args[0][1] == []  # nothing learnt yet: said in words
    qtbot.waitUntil(lambda: "No keyword to suggest" in window.messages.text.text(), timeout=WAIT_MS)
    window.close()


def test_words_fine_tune_offered_once_enough_photos_carry_words(
    qtbot, make_window, tiny_library, tmp_path, make_photo, monkeypatch
):
    from imagehash_app.core.words import crossmodal
    from imagehash_app.gui.dialogs.finetune import WORDS_METHOD, open_finetune_dialog

    photos = tmp_path / "albums"
    for folder, seed in (("Beach", 0), ("Mountains", 100), ("City", 200), ("DCIM", 300)):
        (photos / folder).mkdir(parents=True)
        for i in range(6):
            make_photo(seed + i).save(photos / folder / f"IMG_{seed + i:04d}.jpg", quality=90)
    window = make_window(tiny_library)
    index_folder(qtbot, window, photos)

    dialog = open_finetune_dialog(window)  # 18 photos carry words: below the threshold
    qtbot.waitUntil(lambda: dialog.words_plan is not None, timeout=WAIT_MS)
    assert not dialog.words_plan.offered and dialog.method.findData(WORDS_METHOD) < 0
    dialog.close()

    monkeypatch.setattr(crossmodal, "MIN_PHOTOS_WITH_WORDS", 10)
    monkeypatch.setattr(crossmodal, "DEFAULT_EPOCHS", 4)
    dialog = open_finetune_dialog(window)
    qtbot.waitUntil(lambda: dialog.method.findData(WORDS_METHOD) >= 0, timeout=WAIT_MS)
    dialog.method.setCurrentIndex(dialog.method.findData(WORDS_METHOD))
    dialog.method.activated.emit(dialog.method.currentIndex())
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled() and "second code" in dialog.intro.text(),
                    timeout=WAIT_MS)
    with qtbot.waitSignal(dialog.finetuneFinished, timeout=WAIT_MS) as finished:
        dialog.start()
    result = finished.args[0]
    assert result.better  # the first words version: nothing to be worse than
    qtbot.waitUntil(lambda: dialog.keep_button.isVisible(), timeout=WAIT_MS)
    with qtbot.waitSignal(window.textSearchFinished, timeout=WAIT_MS) as done:
        window.search_text("beach", top_k=10)
    answer = done.args[0]
    assert len(answer.results) == 10 and 0 < sum(r.has_words for r in answer.results) < 10
    job = dialog.roll_back()  # no earlier words version: the box shows the photos carrying the words
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    with qtbot.waitSignal(window.textSearchFinished, timeout=WAIT_MS) as done:
        window.search_text("beach", top_k=10)
    assert "not learnt" in done.args[0].note and len(done.args[0].results) == 6
    window.close()
