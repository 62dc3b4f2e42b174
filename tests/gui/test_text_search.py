"""The window's search box: typing suggests the library's words, Enter finds the photos for them,
and "Suggest keywords" on a result answers in the message bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from test_main_window import WAIT_MS, index_folder


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
