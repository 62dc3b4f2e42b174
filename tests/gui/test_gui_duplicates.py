"""Library ▸ Find duplicates… on the real window and a real (tiny-backbone) library of generated
copies: the groups, the live threshold slider, keep choices by keyboard, "Not duplicates" kept
across a reopening, the trash through a mocked trash function, Cancel, and the results' badges."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import pytest
import torch
from photos import make_photo
from PIL import Image
from PySide6.QtCore import Qt

from imagehash_app.core.library import DuplicateReport, Library
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.gui.copy_groups import GroupBox, PhotoCard
from imagehash_app.gui.duplicates_view import DuplicatesDialog
from imagehash_app.gui.results_view import COPY_BADGE, QUERY_BADGE, BadgeRole

WAIT_MS = 120_000
GROUPS = 3


def _photo(seed: int) -> Image.Image:
    return make_photo(seed, (240, 180))


def _make_copies_library(tmp_path: Path) -> tuple[Path, dict[Path, list[Path]], list[Path]]:
    """A library of GROUPS originals, each with a re-encoded, a smaller and a rotated copy (the
    copies in a "backup" folder), and unrelated photos; indexed with the tiny backbone."""
    folder = tmp_path / "photos"
    backup = folder / "backup"
    backup.mkdir(parents=True)
    groups: dict[Path, list[Path]] = {}
    for g in range(GROUPS):
        img = _photo(7000 + g)
        original = folder / f"original{g}.jpg"
        img.save(original, "JPEG", quality=95)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=60)
        copies = {
            "reencoded.jpg": Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
            "small.jpg": img.resize((160, 120), Image.Resampling.BICUBIC),
            "rotated.jpg": img.transpose(Image.Transpose.ROTATE_90),
        }
        groups[original] = []
        for name, copy in copies.items():
            path = backup / f"g{g}-{name}"
            copy.save(path, "JPEG", quality=85)
            groups[original].append(path)
    others = []
    for u in range(4):
        path = folder / f"other{u}.jpg"
        _photo(7100 + u).save(path, "JPEG", quality=90)
        others.append(path)
    settings = LibrarySettings(backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2)
    library = tmp_path / "library"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Library.open(library, settings=settings) as lib:
            lib.add_folder(folder)
            list(lib.update())
    finally:
        torch.set_num_threads(threads)
    return library, groups, others


@pytest.fixture
def copies_library(tmp_path: Path) -> tuple[Path, dict[Path, list[Path]], list[Path]]:
    """A library of copies of its own, for tests that change it (trash, marks, settings)."""
    return _make_copies_library(tmp_path)


@pytest.fixture(scope="module")
def shared_copies(tmp_path_factory) -> tuple[Path, dict[Path, list[Path]], list[Path]]:
    """One library of copies for the tests that only look (indexed once)."""
    return _make_copies_library(tmp_path_factory.mktemp("shared"))


def _open_duplicates(qtbot, window) -> DuplicatesDialog:
    qtbot.waitSignal(window.snapshotChanged, timeout=WAIT_MS).wait()
    action = next(a for m in window.menuBar().actions() for a in m.menu().actions()
                  if a.text().replace("&", "") == "Find duplicates…")
    action.trigger()
    dialog = window.duplicates_dialog
    assert isinstance(dialog, DuplicatesDialog)
    qtbot.waitUntil(lambda: dialog.report is not None and not dialog.is_busy(), timeout=WAIT_MS)
    return dialog


def _expected_groups(groups: dict[Path, list[Path]]) -> set[frozenset[Path]]:
    return {frozenset([o, *c]) for o, c in groups.items()}


def _shown_groups(dialog: DuplicatesDialog) -> set[frozenset[Path]]:
    return {frozenset(c.photo.path for c in box.cards) for box in dialog.group_boxes}


def test_find_duplicates_shows_each_group_with_its_keeper(qtbot, make_window, shared_copies):
    library, groups, others = shared_copies
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    assert _shown_groups(dialog) == _expected_groups(groups)
    for box in dialog.group_boxes:
        keeper = box.cards[0]
        assert keeper.photo.keep and keeper.photo.path in groups  # the original: most pixels, least compression
        assert keeper.badge.text() == "Keep (suggested)"
        assert [c.badge.text() for c in box.cards[1:]] == ["To the trash"] * 3
        rotated = next(c for c in box.cards if c.photo.path.name.endswith("rotated.jpg"))
        assert rotated.lines[-1].text().startswith("rotated 90° left · copy score")  # ROTATE_90
        small = next(c for c in box.cards if c.photo.path.name.endswith("small.jpg"))
        assert small.lines[0].text().startswith("160×120 · JPEG")
        assert small.lines[2].text().endswith("backup")  # the folder under each photo
    assert dialog.rule.describe() in dialog.rule_label.text()
    assert dialog.summary.text().startswith(f"{GROUPS} groups · {3 * GROUPS} copies")
    qtbot.waitUntil(lambda: all(c.picture.pixmap() is not None and not c.picture.pixmap().isNull()
                                for b in dialog.group_boxes for c in b.cards), timeout=WAIT_MS)
    assert not any(p in box.group.paths for box in dialog.group_boxes for p in others)


def test_slider_regroups_live(qtbot, make_window, shared_copies):
    library, groups, _others = shared_copies
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    report = dialog.report
    assert isinstance(report, DuplicateReport)
    # Just above the weakest copy's score: that copy leaves its group, the rest stay.
    weakest = min((p for g in report.groups for p in g.photos if not p.keep), key=lambda p: p.score)
    with qtbot.waitSignal(dialog.regrouped, timeout=5_000):
        dialog.slider.setValue(min(dialog.slider.maximum(), int(weakest.score * 100) + 1))
    assert weakest.path not in {p for box in dialog.group_boxes for p in box.group.paths}
    assert dialog.threshold_label.text() == f"Copy score ≥ {dialog.slider.value() / 100:.2f}"
    # Back down to where it started: the same groups as the search found.
    with qtbot.waitSignal(dialog.regrouped, timeout=5_000):
        dialog.slider.setValue(round(report.threshold * 100))
    assert _shown_groups(dialog) == _expected_groups(groups)
    # At the top only identical pixels group: none here.
    with qtbot.waitSignal(dialog.regrouped, timeout=5_000):
        dialog.slider.setValue(dialog.slider.maximum())
    assert dialog.group_boxes == [] and dialog.empty_label.isVisible()


def test_not_duplicates_is_remembered_after_reopening(qtbot, make_window, copies_library):
    library, groups, _others = copies_library
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    box = dialog.group_boxes[0]
    marked = box.group.paths
    with qtbot.waitSignal(dialog.notDuplicatesStored, timeout=WAIT_MS):
        box.not_button.click()
    assert marked not in _shown_groups(dialog)
    assert len(dialog.group_boxes) == GROUPS - 1
    window.close()

    again = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, again)
    assert _shown_groups(dialog) == _expected_groups(groups) - {marked}


def test_keep_this_one_by_keyboard_then_trash_moves_only_the_others(qtbot, make_window, copies_library, tmp_path):
    library, groups, others = copies_library
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    trash_dir = tmp_path / "trash"
    trash_dir.mkdir()
    moved: list[Path] = []
    lock = threading.Lock()

    def fake_trash(path) -> None:  # what Send2Trash does: the file leaves its folder
        with lock:
            moved.append(Path(path))
        shutil.move(str(path), trash_dir / Path(path).name)

    dialog.trash_fn = fake_trash
    questions: list[str] = []
    dialog.confirm = lambda _title, text: questions.append(text) or True

    box = dialog.group_boxes[0]
    suggested = box.cards[0].photo.path
    chosen_card = next(c for c in box.cards if c.photo.path.name.endswith("small.jpg"))
    chosen = chosen_card.photo.path
    chosen_card.setFocus()
    qtbot.keyClick(chosen_card, Qt.Key.Key_K)  # K: keep this one
    box = next(b for b in dialog.group_boxes if chosen in b.group.paths)
    assert box.group.keeper.path == chosen
    assert box.cards[0].badge.text() == "Keep (your choice)"
    assert dialog.keep_all_button.isEnabled() and box.suggested_button.isEnabled()

    card = next(c for c in box.cards if c.photo.path == chosen)
    assert dialog.focusWidget() is card
    with qtbot.waitSignal(dialog.trashFinished, timeout=WAIT_MS):
        qtbot.keyClick(card, Qt.Key.Key_Delete)  # Delete: move the others to the trash
    expected = set(box.group.paths) - {chosen}
    assert suggested in expected
    assert set(moved) == expected
    assert len(questions) == 1 and questions[0].startswith("Move 3 photos (")
    assert "The 1 kept photo stay where they are" in questions[0]
    assert chosen.exists() and not any(p.exists() for p in expected)
    assert all(p.exists() for p in others)
    # The view updated: that group is gone, the others are still there, untouched.
    assert len(dialog.group_boxes) == GROUPS - 1
    assert not any(p in b.group.paths for b in dialog.group_boxes for p in expected)
    assert "Moved 3 photos to the trash" in dialog.messages.text.text()
    # The library lists what it trashed, and from where.
    job = dialog.show_trashed()
    qtbot.waitUntil(lambda: job.done, timeout=WAIT_MS)
    table = dialog.trashed_dialog.table
    assert table.rowCount() == 3
    assert {table.item(r, 1).text() for r in range(3)} == {p.name for p in expected}
    assert {table.item(r, 2).text() for r in range(3)} == {str(p.parent) for p in expected}
    dialog.trashed_dialog.close()


def test_trash_stops_at_a_failure_and_leaves_the_rest(qtbot, make_window, copies_library, tmp_path):
    library, groups, _others = copies_library
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    calls: list[Path] = []

    def failing_trash(path) -> None:
        calls.append(Path(path))
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", str(path))
        Path(path).unlink()

    dialog.trash_fn = failing_trash
    dialog.confirm = lambda _t, _q: True
    all_removable = [p.path for g in dialog.groups() for p in g.removable]
    with qtbot.waitSignal(dialog.trashFinished, timeout=WAIT_MS):
        dialog.trash_all_button.click()
    assert len(calls) == 2
    assert not calls[0].exists() and calls[1].exists()
    assert all(p.exists() for p in all_removable if p != calls[0])
    text = dialog.messages.text.text()
    assert "Moved 1 of 9 photos" in text and calls[1].name in text
    shown = {p for b in dialog.group_boxes for p in b.group.paths}
    assert calls[0] not in shown and calls[1] in shown


def test_cancel_stops_the_search(qtbot, make_window, shared_copies):
    library, _groups, _others = shared_copies
    window = make_window(library, rescan=False)
    qtbot.waitSignal(window.snapshotChanged, timeout=WAIT_MS).wait()
    # Hold the reader so the search is still queued when Cancel is pressed.
    gate = threading.Event()
    blocker = window.reader.call(lambda _lib, _stop: gate.wait(30), "hold")
    dialog = window.show_duplicates()
    assert dialog.is_busy() and dialog.progress_box.isVisible() and dialog.cancel_button.isEnabled()
    with qtbot.waitSignal(dialog.searchFinished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
        gate.set()
    assert finished.args == [None]
    qtbot.waitUntil(lambda: blocker.done, timeout=WAIT_MS)
    assert dialog.report is None and not dialog.progress_box.isVisible()
    assert "cancelled" in dialog.messages.text.text()
    # Search again works.
    with qtbot.waitSignal(dialog.searchFinished, timeout=WAIT_MS) as again:
        dialog.again_button.click()
    assert isinstance(again.args[0], DuplicateReport) and len(dialog.group_boxes) == GROUPS


def test_rule_change_regroups_and_reference_folder_is_kept(qtbot, make_window, copies_library):
    library, groups, _others = copies_library
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    from imagehash_app.core.library import KeeperRule

    dialog.apply_rule(KeeperRule(("date", "pixels")))
    assert dialog.rule_label.text().startswith("Keep the older photo")
    backup = next(iter(groups.values()))[0].parent
    with qtbot.waitSignal(dialog.searchFinished, timeout=WAIT_MS):
        dialog.apply_rule(KeeperRule(), references=[backup])
    for box in dialog.group_boxes:
        references = [c for c in box.cards if c.photo.path.parent == backup]
        assert references and all(c.photo.reference for c in references)
        assert not any(p.path.parent == backup for p in box.group.removable)
        assert all(c.badge.text() in ("Reference folder: stays", "Keep (suggested)") for c in references)
    assert str(backup) in dialog.rule_label.text()


def test_results_mark_the_query_itself_and_its_copies(qtbot, make_window, shared_copies):
    library, groups, _others = shared_copies
    window = make_window(library, rescan=False)
    original, copies = next(iter(groups.items()))
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        window.search([original])
    model = window.results_model
    badges = {model.index(r).data(Qt.ItemDataRole.UserRole + 1): model.index(r).data(BadgeRole)
              for r in range(model.rowCount())}
    assert badges[original] == QUERY_BADGE
    assert {p for p, b in badges.items() if b == COPY_BADGE} == set(copies)
    assert "in this library" in window.query_pane._caption.text()


def test_cards_are_widgets_a_keyboard_reaches(qtbot, make_window, shared_copies):
    library, _groups, _others = shared_copies
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    first = dialog.group_boxes[0].cards[0]
    assert isinstance(dialog.group_boxes[0], GroupBox) and isinstance(first, PhotoCard)
    first.setFocus()
    qtbot.keyClick(first, Qt.Key.Key_Right)
    assert dialog.focusWidget() is dialog.group_boxes[0].cards[1]
    qtbot.keyClick(dialog.focusWidget(), Qt.Key.Key_Down)
    assert dialog.focusWidget() is dialog.group_boxes[1].cards[1]


def test_reopening_the_view_searches_again(qtbot, make_window, copies_library, tmp_path):
    library, groups, _others = copies_library
    window = make_window(library, rescan=False)
    dialog = _open_duplicates(qtbot, window)
    assert len(dialog.group_boxes) == GROUPS
    dialog.close()
    # Meanwhile one group's copies leave the library (through the window's own writer: it holds
    # the library's lock).
    original, copies = next(iter(groups.items()))
    job = window.writer.call(lambda lib, _stop: lib.trash(
        copies, trash_fn=lambda p: Path(p).unlink(), keepers={c: original for c in copies}))
    done = qtbot.waitSignal(job.succeeded, timeout=WAIT_MS)
    done.wait()
    assert done.args[0].ok and len(done.args[0].trashed) == 3
    with qtbot.waitSignal(dialog.searchFinished, timeout=WAIT_MS):
        assert window.show_duplicates() is dialog
    assert _shown_groups(dialog) == _expected_groups(groups) - {frozenset([original, *copies])}
