"""Issue 14 item 9: exclude patterns in .gitignore syntax, with a live count in Preferences."""

from __future__ import annotations

from pathlib import Path

from tests.gui.test_main_window import WAIT_MS, index_folder


def _flowers(root: Path, make_photo) -> Path:
    folder = root / "flower_photos"
    for i, rel in enumerate(["daisy/a.jpg", "daisy/b.jpg", "daisy/more/c.jpg", "roses/d.jpg",
                             "roses/e.jpg", "tulips/f.jpg"]):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        make_photo(500 + i, size=96).save(folder / rel, quality=90)
    return folder


def test_preferences_count_what_the_patterns_leave_out_then_the_index_follows(qtbot, make_window, tiny_library, tmp_path, make_photo):
    folder = _flowers(tmp_path, make_photo)
    window = make_window(tiny_library)
    index_folder(qtbot, window, folder)
    qtbot.waitUntil(lambda: window.snapshot is not None and window.snapshot.status.indexed == 6, timeout=WAIT_MS)

    dialog = window.preferences_dialog()
    qtbot.addWidget(dialog)
    dialog.show()
    counted = qtbot.waitSignal(dialog.excludedCounted, timeout=WAIT_MS)
    counted.wait()
    assert "No patterns" in counted.args[0]
    for pattern in ("*/daisy/*", "daisy/"):  # the documented form and the .gitignore folder form
        with qtbot.waitSignal(dialog.excludedCounted, timeout=WAIT_MS) as counted:
            dialog.exclude.setPlainText(pattern)
        assert "leave out 3 of 6 photos" in counted.args[0], (pattern, counted.args[0])
    with qtbot.waitSignal(dialog.excludedCounted, timeout=WAIT_MS) as counted:
        dialog.exclude.setPlainText("daisy/\n!")
    assert '"!" is not valid' in counted.args[0]
    with qtbot.waitSignal(dialog.excludedCounted, timeout=WAIT_MS) as counted:
        dialog.exclude.setPlainText("*/daisy/*\n*/tulips/*")
    assert "leave out 4 of 6" in dialog.excluded_label.text()

    changes = dialog.changes()
    assert changes == {"exclude_patterns": ["*/daisy/*", "*/tulips/*"]}
    dialog.close()
    with qtbot.waitSignal(window.indexingFinished, timeout=WAIT_MS):
        window.apply_settings(changes, reindex=True)
    qtbot.waitUntil(lambda: window.snapshot.status.indexed == 2, timeout=WAIT_MS)
