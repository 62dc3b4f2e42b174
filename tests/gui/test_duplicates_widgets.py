"""The duplicates view over reports built directly (no library): its words, the regrouping after
a trash or a "not duplicates", keep choices that survive the slider, and paging of many groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from imagehash_app.core.duplicates.report import ScoredPair
from imagehash_app.core.library import CopyPhoto, DuplicateReport, KeeperRule, Library, TrashOutcome
from imagehash_app.gui import duplicates_view
from imagehash_app.gui.duplicates_text import (
    card_lines,
    outcome_text,
    transform_words,
    trash_summary,
    with_not_duplicates,
    without,
)
from imagehash_app.gui.duplicates_view import DuplicatesDialog, trash_outcome_parts
from imagehash_app.gui.workers import EngineThread


def photo(name: str, width: int = 400, height: int = 300, size: int = 50_000, **kw) -> CopyPhoto:
    return CopyPhoto(Path("/photos") / name, size, width, height, "JPEG", 1_700_000_000.0, **kw)


def chain_report(threshold: float = 0.8) -> DuplicateReport:
    """a—b at 0.95, b—c at 0.85, d—e at 0.9 (two groups at 0.8; c leaves at 0.9)."""
    photos = [photo("a.jpg"), photo("b.jpg", 200, 150, 20_000), photo("c.jpg", 300, 400, 30_000),
              photo("d.jpg"), photo("e.jpg", size=20_000)]
    pairs = [ScoredPair(0, 1, 0.95), ScoredPair(1, 2, 0.85, "rot90"), ScoredPair(3, 4, 0.9)]
    return DuplicateReport.build(photos, pairs, threshold=threshold, floor=0.5)


def names(report_or_groups) -> list[set[str]]:
    groups = getattr(report_or_groups, "groups", report_or_groups)
    return [{p.path.name for p in g.photos} for g in groups]


def test_words():
    # A copy turned 90° left (Pillow's ROTATE_90) maps back onto its keeper with "rot270".
    assert transform_words("rot270") == "rotated 90° left" and transform_words("mirror") == "mirrored"
    group = chain_report().groups[0]
    copy = next(p for p in group.photos if p.path.name == "b.jpg")
    assert card_lines(copy) == ["200×150 · JPEG · 20 KB", "modified " + card_lines(copy)[1][9:],
                                "/photos", "copy score 0.95"]
    assert "taken" in card_lines(photo("x.jpg", taken=1_600_000_000.0, keep=True))[1]
    text = trash_summary([group])
    assert text.startswith("Move 2 photos (50 KB) from 1 group to the system trash?")
    assert "The 1 kept photo stay" in text
    ref = chain_report().groups[1]
    assert "reference" not in trash_summary([ref])
    assert outcome_text(3, [Path("/a"), Path("/b"), Path("/c")], None, "") == (
        "Moved 3 photos to the trash; the system trash can restore them.")
    half = outcome_text(3, [Path("/a")], Path("/b"), "permission denied")
    assert half.startswith("Moved 1 of 3 photos to the trash, then stopped at /b: permission denied.")
    assert "The 2 remaining photos were left in place" in half
    passed = outcome_text(2, [Path("/a")], None, "", [(Path("/x/b.jpg"), "changed since it was indexed")])
    assert passed == "Moved 1 of 2 photos to the trash; left 1 in place (b.jpg changed since it was indexed)."


def test_report_without_trashed_photos_and_with_not_duplicates():
    report = chain_report()
    assert names(report) == [{"a.jpg", "b.jpg", "c.jpg"}, {"d.jpg", "e.jpg"}]
    left = without(report, [Path("/photos/b.jpg")])
    assert names(left) == [{"d.jpg", "e.jpg"}]  # a and c only met through b
    assert len(left.photos) == 4 and left.threshold == report.threshold
    marked = with_not_duplicates(report, [Path("/photos/d.jpg"), Path("/photos/e.jpg")])
    assert names(marked) == [{"a.jpg", "b.jpg", "c.jpg"}]
    assert names(marked.at(0.6)) == [{"a.jpg", "b.jpg", "c.jpg"}]  # it never comes back


def test_trash_outcome_parts():
    stopped = TrashOutcome(trashed=(Path("/a"),), failed=(Path("/b"), "read-only file system"),
                           left=(Path("/c"),))
    assert trash_outcome_parts(stopped) == ([Path("/a")], Path("/b"), "read-only file system")
    assert trash_outcome_parts(TrashOutcome(trashed=(Path("/a"),))) == ([Path("/a")], None, "")


@pytest.fixture
def dialog(qtbot, tiny_library):
    writer = EngineThread(lambda: Library.open(tiny_library), "test-writer")
    reader = EngineThread(lambda: Library.open(tiny_library, read_only=True), "test-reader")
    d = DuplicatesDialog(tiny_library, writer, reader)
    qtbot.addWidget(d)
    d.show()
    yield d
    d.shutdown()
    assert writer.shutdown() and reader.shutdown()


def test_keep_choice_survives_the_slider(qtbot, dialog):
    dialog.set_report(chain_report())
    assert dialog.slider.minimum() == 50 and dialog.slider.value() == 80
    assert dialog.summary.text().startswith("2 groups · 3 copies to remove")
    c = Path("/photos/c.jpg")
    card = next(card for box in dialog.group_boxes for card in box.cards if card.photo.path == c)
    card.setFocus()
    qtbot.keyClick(card, Qt.Key.Key_Return)
    assert dialog.groups()[0].keeper.path == c
    with qtbot.waitSignal(dialog.regrouped, timeout=2_000):
        dialog.slider.setValue(90)  # c leaves the group: the rule chooses again among a and b
    assert names(dialog.groups()) == [{"a.jpg", "b.jpg"}, {"d.jpg", "e.jpg"}]
    assert dialog.groups()[0].keeper.path == Path("/photos/a.jpg")
    with qtbot.waitSignal(dialog.regrouped, timeout=2_000):
        dialog.slider.setValue(80)  # c is back, and still the person's choice
    assert dialog.groups()[0].keeper.path == c
    assert dialog.group_boxes[0].cards[0].badge.text() == "Keep (your choice)"
    qtbot.keyClick(dialog.focusWidget(), Qt.Key.Key_S)  # S: back to the suggestion
    assert dialog.groups()[0].keeper.path == Path("/photos/a.jpg")
    assert not dialog.keep_all_button.isEnabled()


def test_rule_regroups_without_a_search(qtbot, dialog):
    dialog.set_report(chain_report())
    assert dialog.groups()[0].keeper.path.name == "a.jpg"  # most pixels (tied with c), then bytes/px
    with qtbot.waitSignal(dialog.settingsChanged, timeout=30_000):
        dialog.apply_rule(KeeperRule(("compression",)))
    assert dialog.rule_label.text() == "Keep less compression (JPEG quality, else bytes per pixel)."
    assert dialog.groups()[0].keeper.path.name == "b.jpg"  # 20 000 bytes for 30 000 pixels
    with Library.open(dialog.library_path, read_only=True) as lib:  # kept in the library
        assert lib.keeper_rule() == KeeperRule(("compression",))


def test_many_groups_are_paged(qtbot, dialog):
    photos, pairs = [], []
    for g in range(duplicates_view.PAGE + 5):
        photos += [photo(f"g{g}a.jpg"), photo(f"g{g}b.jpg", size=1000)]
        pairs.append(ScoredPair(2 * g, 2 * g + 1, 0.9))
    dialog.set_report(DuplicateReport.build(photos, pairs, threshold=0.8, floor=0.6))
    assert len(dialog.group_boxes) == duplicates_view.PAGE
    assert dialog.more_button.isVisible() and dialog.more_button.text() == (
        f"Show 5 more groups (of {duplicates_view.PAGE + 5})")
    dialog.more_button.click()
    assert len(dialog.group_boxes) == duplicates_view.PAGE + 5 and not dialog.more_button.isVisible()


def test_keeper_rule_dialog_orders_ticks_and_picks_reference_folders(qtbot):
    from imagehash_app.gui.dialogs.keeper_rule import KeeperRuleDialog

    folders = [Path("/photos"), Path("/backup")]
    d = KeeperRuleDialog(KeeperRule(), folders, [Path("/backup")])
    qtbot.addWidget(d)
    assert d.rule() == KeeperRule() and d.references() == [Path("/backup")]
    d.criteria.setCurrentRow(3)  # "date" to the top
    for _ in range(3):
        d._move(-1)
    assert d.rule().order == ("date", "pixels", "compression", "format")
    d.criteria.item(3).setCheckState(Qt.CheckState.Unchecked)  # leave "format" out
    assert d.rule().order == ("date", "pixels", "compression")
    assert d.words.text() == d.rule().describe()
    for i in range(d.criteria.count()):
        d.criteria.item(i).setCheckState(Qt.CheckState.Unchecked)
    ok = d.buttons.button(d.buttons.StandardButton.Ok)
    assert not ok.isEnabled() and d.words.text() == "Tick at least one criterion."
    d.folders.item(0).setCheckState(Qt.CheckState.Checked)
    assert d.references() == [Path("/photos"), Path("/backup")]


def test_progress_says_how_far_the_search_is(dialog):
    dialog._on_progress((1_500, 6_000))  # what Library.duplicates reports: (done, total)
    assert dialog.progress_label.text() == "Checking candidate pairs: 1,500 / 6,000"
    assert (dialog.progress_bar.value(), dialog.progress_bar.maximum()) == (1_500, 6_000)
    dialog._on_progress((0, 0))
    assert dialog.progress_bar.maximum() == 0  # busy, no count yet


def test_photos_without_a_signature_are_announced(dialog):
    report = chain_report()
    from dataclasses import replace

    dialog._on_report(replace(report, unsigned=12))  # indexed before copy signatures existed
    assert dialog.messages.text.text() == (
        "12 photos were indexed before copies could be found and were not compared; use "
        "Library ▸ Re-scan all folders, then Search again.")
    dialog._on_report(report)
    assert dialog.messages.isHidden()  # a search that compared every photo says nothing


def test_the_index_names_its_signature_phase():
    from types import SimpleNamespace

    from imagehash_app.gui.main_window import progress_text

    event = SimpleNamespace(phase="signatures", done=64, total=300, rate=40.0, eta_s=6.0)
    assert progress_text(event) == "Preparing to find copies: 64 / 300 · 40 photos/s · 6 s left"
