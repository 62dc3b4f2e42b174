""""More like this" / "Not similar" from the results grid of the real window: stored in the
library, counted in its status, and learnt from by a supervised fine-tune."""

from __future__ import annotations

import json

from test_main_window import WAIT_MS, drop_files, index_folder

from imagehash_app import cli
from imagehash_app.core.library import Library


def test_marks_from_the_context_menu_feed_a_supervised_fine_tune(
    qtbot, make_window, tiny_library, tmp_path, make_photo, capsys
):
    photos = tmp_path / "albums"
    for album in range(4):  # 24 photos in 4 folders: enough for a fine-tune's reservoir
        (photos / f"album{album}").mkdir(parents=True)
        for i in range(6):
            make_photo(100 * album + i).save(photos / f"album{album}" / f"p{i}.jpg", quality=90)
    window = make_window(tiny_library)
    index_folder(qtbot, window, photos)
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.status.indexed == 24, timeout=WAIT_MS)
    query = (photos / "album0" / "p0.jpg").resolve()
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        drop_files(window, [query])
    marked = {}
    for row in range(1, 7):  # row 0 is the query itself
        index = window.results_model.index(row)
        path = window.results_view.path_at(index).resolve()
        marked[path] = row % 2 == 1
        actions = {a.text(): a for a in window.results_view.context_actions(index)}
        actions["More like this" if marked[path] else "Not similar"].trigger()
        done = len(marked)
        qtbot.waitUntil(  # stored, and the window's status re-read
            lambda done=done: sum(window.snapshot.status.marks.values()) == done, timeout=WAIT_MS
        )
    assert window.snapshot.status.marks == {"similar": 3, "not_similar": 3}
    window.close()  # the fine-tune below is the command line's, with the library to itself

    with Library.open(tiny_library, read_only=True) as lib:
        stored = {(a if b == query else b).resolve(): s for a, b, s in lib.marks()}
    assert stored == marked
    assert cli.main(["--library", str(tiny_library), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["marks"] == {"similar": 3, "not_similar": 3}
    argv = ["--library", str(tiny_library), "finetune", "--method", "dsh", "--epochs", "3", "--json"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["--library", str(tiny_library), "models", "list", "--json"]) == 0
    newest = json.loads(capsys.readouterr().out)[-1]
    assert newest["method"] == "dsh"
    pairs = newest["metrics"]["finetune"]["pairs"]
    assert pairs["marked"] == 6 and pairs["negative"] == 3 and pairs["folder"] > 0
    assert sorted(s for *_, s in pairs["marked_image_ids"]) == [-1, -1, -1, 1, 1, 1]
