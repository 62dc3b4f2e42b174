"""Library ▸ Versions… on the real window: the kept versions with their figures, and a switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.gui.dialogs.versions import VersionsDialog

WAIT_MS = 120_000


@pytest.fixture
def two_versions(tmp_path: Path, make_photo) -> Path:
    """A library indexed once (v1) and fine-tuned once, the new version forced in (v2)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(24):
        make_photo(300 + i).save(folder / f"p{i:03d}.jpg", quality=90)
    settings = LibrarySettings(
        backbone="tiny", weights="none", bits=32, device="cpu", batch_size=8, threads=2,
        hasher_params={"urph": {"hidden": 32, "decoder_hidden": 32, "input_dim": 32,
                                "batch_size": 64, "epochs": 4}},
    )
    path = tmp_path / "library"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Library.open(path, settings=settings) as lib:
            lib.add_folder(folder)
            list(lib.update())
            gen = lib.finetune(force=True, epochs=2)
            list(gen)
    finally:
        torch.set_num_threads(threads)
    return path


def test_versions_lists_the_kept_versions_and_switches(qtbot, make_window, two_versions):
    window = make_window(two_versions, rescan=False)
    actions = [a for m in window.menuBar().actions() for a in m.menu().actions()
               if a.text().replace("&", "") == "Versions…"]
    assert len(actions) == 1
    qtbot.waitSignal(window.snapshotChanged, timeout=WAIT_MS).wait()
    photo = next((two_versions.parent / "photos").glob("*.jpg"))
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS):
        window.search([photo])

    actions[0].trigger()
    dialog = window.versions_dialog
    assert isinstance(dialog, VersionsDialog)
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 2, timeout=WAIT_MS)
    texts = [[dialog.table.item(r, c).text() for c in range(dialog.table.columnCount())] for r in range(2)]
    assert texts[0][0] == "v1" and texts[1][0] == "v2 (in use)"
    with Library.open(two_versions, read_only=True) as lib:
        kept = lib.models()
    assert [row[1] for row in texts] == [f"{m.method} 32-bit" for m in kept]
    assert texts[1][4] not in ("", "–")  # the fine-tune's held-out figure
    float(texts[1][4])
    assert "Version 2 answers searches" in dialog.status.text()

    # Back to v1, as `models activate 1` does; the current query is answered again.
    dialog.table.selectRow(0)
    assert dialog.use_button.isEnabled()
    with qtbot.waitSignal(window.searchFinished, timeout=WAIT_MS), qtbot.waitSignal(dialog.loaded, timeout=WAIT_MS):
        dialog.use_button.click()
    assert "Version 1 answers searches" in dialog.status.text()
    assert dialog.table.item(0, 0).text() == "v1 (in use)"
    with Library.open(two_versions, read_only=True) as lib:
        assert [m.id for m in lib.models() if m.active] == [1]
    dialog.table.selectRow(0)
    assert not dialog.use_button.isEnabled()  # already in use
    dialog.close()
