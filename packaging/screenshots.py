"""Take the documentation / AppStream screenshots of the real window (run under Xvfb).

    xvfb-run -s '-screen 0 1400x900x24' .venv/bin/python packaging/screenshots.py first-run
    xvfb-run -s '-screen 0 1400x900x24' .venv/bin/python packaging/screenshots.py indexing --folder /tmp/flowers/flowers \\
        --backbone mobilenet_v2 --weights ../shared/data/weights/mobilenet_v2-imagenet.pth
    xvfb-run -s '-screen 0 1400x900x24' .venv/bin/python packaging/screenshots.py query --library /tmp/flowers-lib \\
        --photo /tmp/flowers/flowers/sunflower/<file>.jpg [--dark]
    xvfb-run -s '-screen 0 1400x900x24' .venv/bin/python packaging/screenshots.py duplicates --folder /tmp/flowers/flowers \
        --backbone mobilenet_v2 --weights ../shared/data/weights/mobilenet_v2-imagenet.pth

    xvfb-run -s '-screen 0 1400x900x24' .venv/bin/python packaging/screenshots.py offline-first-run \
        --folder /tmp/shots/Pictures
    xvfb-run -s '-screen 0 1400x900x24' .venv/bin/python packaging/screenshots.py first-index \
        --folder /tmp/shots/Pictures --backup /tmp/shots/Backup --backbone mobilenet_v2 \
        --weights ../shared/data/weights/mobilenet_v2-imagenet.pth --photo A.jpg --photo B.jpg --photo C.jpg

`offline-first-run`: a new library with the shipped settings and no photo model yet (an empty torch
hub folder); the download goes to a local server that stops sending, so the page shows what it says
after the 15 s stall. `first-index`: a drop while the first index of `--folder` runs (no hasher yet),
(the third photo, after `--after` photos), then, once it and `--backup` (copies of some of its
photos) are indexed, a query of the first two photos (`multi-photo-query`) and the first photo's
results with their details (`result-details`).

Each grabs the window from the X screen (not an offscreen render) into docs/screenshots/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from imagehash_app.core.library import Library
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.gui.app import create_application
from imagehash_app.gui.main_window import MainWindow

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SIZE = (1360, 860)


def wait(condition, timeout_s: float = 600.0) -> None:
    """Run the event loop until `condition()` holds."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise SystemExit("timed out waiting for the window")
        QCoreApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float) -> None:
    """Let the window paint for a while."""
    end = time.monotonic() + seconds
    wait(lambda: time.monotonic() > end)


def grab(window: QWidget, name: str) -> Path:
    """Save what the X server shows of the window."""
    settle(0.5)
    geo = window.frameGeometry()
    pixmap = QGuiApplication.primaryScreen().grabWindow(0, geo.x(), geo.y(), geo.width(), geo.height())
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    if not pixmap.save(str(path), "PNG"):
        raise SystemExit(f"cannot write {path}")
    print(path)
    return path


def dark_palette() -> QPalette:
    """A dark palette as a desktop in dark mode hands to Qt (to check nothing is hard-coded light)."""
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2e", QPalette.ColorRole.WindowText: "#e8e8ea",
        QPalette.ColorRole.Base: "#1e1e20", QPalette.ColorRole.AlternateBase: "#333337",
        QPalette.ColorRole.Text: "#e8e8ea", QPalette.ColorRole.Button: "#38383c",
        QPalette.ColorRole.ButtonText: "#e8e8ea", QPalette.ColorRole.Highlight: "#3b82f6",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#38383c",
        QPalette.ColorRole.ToolTipText: "#e8e8ea", QPalette.ColorRole.Mid: "#4a4a4f",
        QPalette.ColorRole.Midlight: "#3d3d42", QPalette.ColorRole.Link: "#7ab4ff",
        QPalette.ColorRole.PlaceholderText: "#8a8a90",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#8a8a90"))
    return p


def make_copies_folder(source: Path, dest: Path, originals: int = 60, seed: int = 3) -> Path:
    """`originals` real photos from `source` (spread over its classes) and, in a "backup" folder,
    copies of a few of them as a library gathers them: rotated, mirrored, smaller, re-compressed,
    saved as PNG."""
    import random

    from PIL import Image

    photos = sorted(p for p in source.rglob("*.jpg"))
    rng = random.Random(seed)
    chosen = sorted(rng.sample(photos, originals))
    (dest / "backup").mkdir(parents=True, exist_ok=True)
    for p in chosen:
        (dest / p.parent.name).mkdir(exist_ok=True)
        (dest / p.parent.name / p.name).write_bytes(p.read_bytes())
    # Copies lose a little on the way (the originals here are JPEG quality 75), as a messenger's
    # or an editor's re-save does; the PNG is lossless, as a screenshot of the photo is.
    edits = [
        ("rotated.jpg", lambda im: im.transpose(Image.Transpose.ROTATE_90), {"quality": 70}),
        ("small.jpg", lambda im: im.resize((im.width * 3 // 4, im.height * 3 // 4)), {"quality": 85}),
        ("mirrored.jpg", lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {"quality": 65}),
        ("recompressed.jpg", lambda im: im, {"quality": 40}),
        ("screenshot.png", lambda im: im, {}),
    ]
    for i, p in enumerate(chosen[:6]):
        with Image.open(p) as im:
            im = im.convert("RGB")
            for name, edit, options in edits[i % 3: i % 3 + 2 + i % 2]:
                edit(im).save(dest / "backup" / f"{p.stem}-{name}", **options)
    return dest


def open_window(library: Path, tmp: Path, rescan: bool = True) -> MainWindow:
    window = MainWindow(
        library, qsettings=QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat), watch=False, rescan=rescan
    )
    window.resize(*SIZE)
    window.move(20, 20)
    window.show()
    wait(lambda: window.snapshot is not None)
    return window


def stalled_server() -> str:
    """A local HTTP server that promises the model and stops sending after 1.2 MB: its URL (the
    file name is torchvision's, so the page names the real download)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 13555000\r\n\r\n" + b"x" * 1_200_000)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/models/mobilenet_v2-b0353104.pth"


def offline_first_run(folder: Path, tmp: Path) -> MainWindow:
    """The first-run page after adding a folder on a computer whose download stalls."""
    import os

    from imagehash_app.core import weights_download

    os.environ["TORCH_HOME"] = str(tmp / "torch")
    url = stalled_server()
    weights_download.PRETRAINED["mobilenet_v2"] = (url, weights_download.PRETRAINED["mobilenet_v2"][1])
    library = tmp / "library"
    Library.open(library, settings=LibrarySettings()).close()
    window = open_window(library, tmp)
    ended = []
    window.model_download.downloadFinished.connect(ended.append)
    window.add_folders([folder])
    wait(lambda: bool(ended), 120)
    grab(window, "offline-first-run")
    return window


def wait_softly(condition, timeout_s: float) -> None:
    """`wait`, but a timeout only says so: the shot then shows what is missing."""
    try:
        wait(condition, timeout_s)
    except SystemExit:
        print("screenshot taken before everything was painted", file=sys.stderr)


def _thumbnails_shown(window: MainWindow) -> bool:
    model, view = window.results_model, window.results_view
    rows = [model.index(r) for r in range(model.rowCount())]
    shown = [i for i in rows if view.visualRect(i).intersects(view.viewport().rect())]
    return all(model.thumbnail(view.path_at(i)) is not None for i in shown) and window.query_pane._pixmap is not None


def first_index(args: argparse.Namespace, tmp: Path) -> MainWindow:
    """A drop during the first index; then a two-photo query and a result's details."""
    from imagehash_app.gui import engine

    library = tmp / "library"
    Library.open(library, settings=LibrarySettings(backbone=args.backbone, weights=args.weights)).close()
    window = open_window(library, tmp)
    done: list = []
    window.searchFinished.connect(done.append)
    window.messageShown.connect(lambda text: print("message:", text, file=sys.stderr))
    window.add_folders([args.folder])
    wait(lambda: getattr(window._last_progress, "phase", "") == "embed" and window._last_progress.done >= args.after)
    snap: list = []
    window.reader.call(lambda lib, _stop: engine.snapshot(lib)).succeeded.connect(
        lambda s: (snap.append(s), window._apply_snapshot(s))
    )
    wait(lambda: bool(snap))
    window.search(args.photo[2:3] or args.photo[:1])  # a third --photo: the one dropped mid-index
    wait(lambda: bool(done), 300)
    wait(lambda: _thumbnails_shown(window), 120)
    window.results_view.setCurrentIndex(window.results_model.index(0))
    grab(window, "search-during-first-index")
    if not args.backup:  # the first shot only
        window.cancel_index()
        wait(lambda: not window.is_indexing(), 120)
        return window
    wait(lambda: not window.is_indexing(), 900)
    if args.backup:
        window.add_folders([args.backup])
        wait(lambda: window.is_indexing(), 60)
        wait(lambda: not window.is_indexing(), 900)
    done.clear()
    window.search(args.photo[:2])  # two photos: one tab each
    wait(lambda: bool(done) and not window.is_searching(), 300)
    wait_softly(lambda: _thumbnails_shown(window), 60)
    settle(1.0)
    grab(window, "multi-photo-query")
    done.clear()
    window.search(args.photo[:1])
    wait(lambda: bool(done) and not window.is_searching(), 300)
    window.count_spin.setValue(12)
    wait(lambda: window.results_model.rowCount() == 12, 60)
    wait_softly(lambda: _thumbnails_shown(window), 60)
    window.results_view.setCurrentIndex(window.results_model.index(0))
    settle(1.0)
    grab(window, "result-details")
    return window


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shot", choices=("first-run", "indexing", "query", "duplicates",
                                         "offline-first-run", "first-index"))
    parser.add_argument("--backup", type=Path, help="first-index: a folder of copies, added after the first index")
    parser.add_argument("--library", type=Path)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--photo", type=Path, action="append", default=[])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--after", type=int, default=400, help="indexing: photos embedded before the shot")
    parser.add_argument("--dark", action="store_true", help="use a dark palette (as a dark desktop would)")
    args = parser.parse_args(argv)

    app: QApplication = create_application(sys.argv[:1])
    app.setStyle("Fusion")  # Xvfb has no desktop theme; Fusion is what a bare Linux session shows
    if args.dark:
        app.setPalette(dark_palette())
    tmp = Path(tempfile.mkdtemp(prefix="imagehash-shots-"))
    suffix = "-dark" if args.dark else ""
    window: MainWindow | None = None
    try:
        if args.shot == "offline-first-run":
            window = offline_first_run(args.folder, tmp)
        elif args.shot == "first-index":
            window = first_index(args, tmp)
        elif args.shot in ("first-run", "indexing"):
            library = args.library or tmp / "library"
            settings = LibrarySettings(backbone=args.backbone, weights=args.weights)
            Library.open(library, settings=settings).close()
            window = open_window(library, tmp)
            if args.shot == "first-run":
                grab(window, f"first-run{suffix}")
            else:
                window.add_folders([args.folder])
                wait(lambda: getattr(window._last_progress, "phase", "") == "embed" and window._last_progress.done >= args.after)
                window.reader.call(lambda lib, _stop: None)  # let the folders panel catch up
                settle(3.5)
                grab(window, f"indexing{suffix}")
                window.cancel_index()
                wait(lambda: not window.is_indexing())
        elif args.shot == "duplicates":
            library = args.library or tmp / "library"
            if args.folder is not None:  # a library of real photos and copies made of a few
                folder = make_copies_folder(args.folder, tmp / "photos")
                settings = LibrarySettings(backbone=args.backbone, weights=args.weights)
                with Library.open(library, settings=settings) as lib:
                    lib.add_folder(folder)
                    list(lib.update())
            window = open_window(library, tmp, rescan=False)
            dialog = window.show_duplicates()
            dialog.resize(1300, 840)
            dialog.move(40, 30)
            wait(lambda: dialog.report is not None and not dialog.is_busy(), 300)
            wait(lambda: all(c.picture.pixmap() is not None and not c.picture.pixmap().isNull()
                             for b in dialog.group_boxes for c in b.cards), 120)
            # The first group with a rotated copy at the top, the keyboard on that copy.
            rotated = [c for b in dialog.group_boxes for c in b.cards if "rotated" in c.photo.path.name]
            dialog.raise_()
            dialog.activateWindow()
            if rotated:
                box = next(b for b in dialog.group_boxes if rotated[0] in b.cards)
                settle(0.5)
                dialog.scroll.verticalScrollBar().setValue(box.y())
                rotated[0].setFocus()
            settle(1.0)
            grab(dialog, f"duplicates{suffix}")
            if rotated:  # the results of the rotated copy's original: itself marked, its copies badged
                original = rotated[0].photo.path.name.replace("-rotated.jpg", ".jpg")
                query = next(p for p in library.parent.rglob(original) if p.parent.name != "backup") \
                    if args.folder is not None else None
                dialog.close()
                if query is not None:
                    done: list[object] = []
                    window.searchFinished.connect(done.append)
                    window.search([query])
                    wait(lambda: bool(done), 180)
                    settle(3.0)  # the thumbnails stream in
                    grab(window, f"copy-badges{suffix}")
        else:
            window = open_window(args.library, tmp, rescan=False)
            done = []
            window.searchFinished.connect(done.append)
            window.messageShown.connect(lambda text: print("message:", text, file=sys.stderr))
            window.search(args.photo[:1])  # warm-up: loads the backbone and the codes
            wait(lambda: bool(done), 180)
            done.clear()
            window.search(args.photo[:1])  # the shot shows a warm query, as a person sees it
            wait(lambda: bool(done), 180)
            model = window.results_model
            view = window.results_view
            settle(0.5)

            def visible_thumbnails_in() -> bool:
                rows = [model.index(r) for r in range(model.rowCount())]
                shown = [i for i in rows if view.visualRect(i).intersects(view.viewport().rect())]
                return all(model.thumbnail(view.path_at(i)) is not None for i in shown)

            wait(visible_thumbnails_in, 120)
            wait(lambda: window.query_pane._pixmap is not None, 60)
            window.results_view.setCurrentIndex(model.index(0))
            grab(window, f"query-results{suffix}")
    finally:
        if window is not None:
            window.close()  # joins the window's threads even when a shot fails
    QTimer.singleShot(0, app.quit)
    app.exec()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
