"""The results grid: thumbnails best first, file name beneath, score and Hamming distance in the tooltip.

A `QListView` in icon mode over a small list model. Thumbnails are requested only when a cell is
painted (lazy) and arrive from `ThumbnailLoader`; until then a placeholder is drawn. Colours come from
the widget's palette so that the grid follows the system light/dark theme.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAction,
    QColor,
    QDesktopServices,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPixmap,
)
from PySide6.QtWidgets import (
    QDialog,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from imagehash_app.core.library import PhotoDetails, SearchResult, display
from imagehash_app.gui.local_urls import url_of
from imagehash_app.gui.reveal import reveal
from imagehash_app.gui.thumbnails import ThumbnailLoader

CELL = 176  # thumbnail square, px (logical)
TEXT_LINES = 4  # name, folder, pixel size · file size · date, rank · score

PathRole = Qt.ItemDataRole.UserRole + 1
ScoreRole = Qt.ItemDataRole.UserRole + 2
DetailsRole = Qt.ItemDataRole.UserRole + 3  # (folder line, facts line) under the name
BadgeRole = Qt.ItemDataRole.UserRole + 4  # "this photo" (the query itself), "copy", or ""

QUERY_BADGE = "this photo"
COPY_BADGE = "copy"


def badge_for(item: SearchResult, query_in_library: Path | None) -> str:
    """The mark on a result's thumbnail: the query photo itself, a copy of it, or nothing."""
    if query_in_library is not None and item.path == query_in_library:
        return QUERY_BADGE
    return COPY_BADGE if getattr(item, "is_copy", False) else ""


def human_size(n: int) -> str:
    """A file size as people read it: 830 KB, 2.1 MB."""
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("bytes", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def facts_line(details: PhotoDetails | None) -> str:
    """e.g. "4032×3024 · 2.1 MB · 2024-05-01" (what is known of it)."""
    if details is None:
        return ""
    parts = []
    if details.width and details.height:
        parts.append(f"{details.width}×{details.height}")
    if details.size:
        parts.append(human_size(details.size))
    if details.modified:
        parts.append(time.strftime("%Y-%m-%d", time.localtime(details.modified)))
    return " · ".join(parts)


def folder_line(path: Path) -> str:
    """The folder holding a result, its last two parts: tells a backup's copy from the original."""
    parent = path.parent
    return display(Path(*parent.parts[-2:])) if len(parent.parts) > 1 else display(parent)


def tooltip_for(item: SearchResult, rank: int, details: PhotoDetails | None = None) -> str:
    """The text shown when hovering a result: where it is, what it is and why it ranked there."""
    facts = facts_line(details)
    copy_score = getattr(item, "copy_score", None)
    copy = ""
    if copy_score is not None:
        copy = f"\ncopy score {copy_score:.2f}" + (" · a copy of the query" if getattr(item, "is_copy", False) else "")
    return (
        f"#{rank}  {item.path}\n" + (f"{facts}\n" if facts else "")
        + f"score {item.score:.3f} · "
        + (f"Hamming distance {item.hamming}" if item.hamming >= 0 else "ranked by its stored features (no code yet)") + copy
    )


class ResultsModel(QAbstractListModel):
    """The hits of the current query; thumbnails filled in as they arrive."""

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[SearchResult] = []
        self._details: dict[Path, PhotoDetails] = {}
        self._query_in_library: Path | None = None
        self._row_of: dict[str, int] = {}
        self._pixmaps: dict[str, QPixmap] = {}
        self._errors: dict[str, str] = {}
        self._loader = loader
        loader.ready.connect(self._on_ready)
        loader.failed.connect(self._on_failed)

    def set_results(
        self, items: list[SearchResult], details: dict[Path, PhotoDetails] | None = None,
        query_in_library: Path | None = None,
    ) -> None:
        """Replace the hits (with what is known of each, and the query's own path when it is a
        library photo: that result is marked); thumbnails already made are kept."""
        self.beginResetModel()
        self._items = list(items)
        self._details = dict(details or {})
        self._query_in_library = query_in_library
        self._row_of = {str(it.path): row for row, it in enumerate(self._items)}
        self.endResetModel()

    def items(self) -> list[SearchResult]:
        """The hits, best first."""
        return list(self._items)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or index.row() >= len(self._items):
            return None
        item = self._items[index.row()]
        key = str(item.path)
        if role == Qt.ItemDataRole.DisplayRole:
            return display(item.path.name)
        if role == Qt.ItemDataRole.DecorationRole:
            pixmap = self._pixmaps.get(key)
            if pixmap is None and key not in self._errors:
                self._loader.request(item.path, priority=-index.row())
            return pixmap
        if role == DetailsRole:
            return folder_line(item.path), facts_line(self._details.get(item.path))
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = tooltip_for(item, index.row() + 1, self._details.get(item.path))
            return tip + (f"\ncannot show it: {self._errors[key]}" if key in self._errors else "")
        if role == PathRole:
            return item.path
        if role == BadgeRole:
            return badge_for(item, self._query_in_library)
        if role == ScoreRole:
            return item
        return None

    def thumbnail(self, path: Path) -> QPixmap | None:
        """The thumbnail if it has arrived."""
        return self._pixmaps.get(str(path))

    @Slot(str, QImage)
    def _on_ready(self, path: str, image: QImage) -> None:
        self._pixmaps[path] = QPixmap.fromImage(image)
        self._changed(path)

    @Slot(str, str)
    def _on_failed(self, path: str, reason: str) -> None:
        self._errors[path] = reason
        self._changed(path)

    def _changed(self, path: str) -> None:
        row = self._row_of.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)

    def forget_thumbnails(self) -> None:
        """Drop cached pixmaps (they are rebuilt from the disk cache on demand)."""
        self._pixmaps.clear()
        self._errors.clear()


class ResultDelegate(QStyledItemDelegate):
    """Draws a thumbnail centred in a square, the file name beneath and the score in small type."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        lines = option.fontMetrics.height() * TEXT_LINES
        return QSize(CELL + 12, CELL + 14 + lines)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        painter.save()
        style = option.widget.style() if option.widget else None
        palette: QPalette = option.palette
        rect: QRect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect.adjusted(2, 2, -2, -2), palette.color(QPalette.ColorRole.Highlight))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect.adjusted(2, 2, -2, -2), palette.color(QPalette.ColorRole.AlternateBase))
        square = QRect(rect.x() + (rect.width() - CELL) // 2, rect.y() + 6, CELL, CELL)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            dpr = pixmap.devicePixelRatio() or 1.0
            size = QSize(int(pixmap.width() / dpr), int(pixmap.height() / dpr)).scaled(
                square.size(), Qt.AspectRatioMode.KeepAspectRatio
            )
            target = QRect(QPoint(0, 0), size)
            target.moveCenter(square.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(target, pixmap)
        else:
            painter.fillRect(square.adjusted(8, 8, -8, -8), palette.color(QPalette.ColorRole.Midlight))
        badge = index.data(BadgeRole)
        if badge:
            self._draw_badge(painter, option, square, str(badge))
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.setPen(palette.color(text_role))
        fm = option.fontMetrics
        name = fm.elidedText(str(index.data(Qt.ItemDataRole.DisplayRole)), Qt.TextElideMode.ElideMiddle, rect.width() - 8)
        text_top = square.bottom() + 4
        painter.drawText(QRect(rect.x() + 4, text_top, rect.width() - 8, fm.height()), Qt.AlignmentFlag.AlignHCenter, name)
        item = index.data(ScoreRole)
        if isinstance(item, SearchResult):
            if not selected:
                painter.setPen(palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
            folder, facts = index.data(DetailsRole) or ("", "")
            # "640×640 · 17 KB · 2024-05-01" does not fit a cell: the date goes with the rank.
            head, _, day = facts.rpartition(" · ") if facts.count(" · ") == 2 else (facts, "", "")
            rank = f"#{index.row() + 1} · {item.score:.2f}"
            lines = [folder, head, f"{day} · {rank}" if day else f"{rank} · {item.hamming} bits" if item.hamming >= 0 else rank]
            for n, text in enumerate(lines, start=1):
                painter.drawText(
                    QRect(rect.x() + 4, text_top + n * fm.height(), rect.width() - 8, fm.height()),
                    Qt.AlignmentFlag.AlignHCenter,
                    fm.elidedText(text, Qt.TextElideMode.ElideMiddle, rect.width() - 8),
                )
        if style is not None and option.state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(palette.color(QPalette.ColorRole.Highlight))
            painter.drawRect(rect.adjusted(1, 1, -2, -2))
        painter.restore()


    @staticmethod
    def _draw_badge(painter: QPainter, option: QStyleOptionViewItem, square: QRect, text: str) -> None:
        """A small label in the thumbnail's top-left corner: "copy" or "this photo"."""
        fm = option.fontMetrics
        box = QRect(square.x() + 4, square.y() + 4, fm.horizontalAdvance(text) + 10, fm.height() + 2)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#1565c0") if text == QUERY_BADGE else QColor("#2e7d32"))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor("white"))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


class ResultsView(QListView):
    """The grid; double-click opens the photo in the system viewer; right-click offers more."""

    findSimilar = Signal(Path)
    markSimilar = Signal(Path, bool)  # a result is (True: "More like this") or is not like the query
    suggestKeywords = Signal(Path)  # words of the photo's neighbours in the words/photos space
    message = Signal(str)

    def __init__(self, model: ResultsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self.setItemDelegate(ResultDelegate(self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QListView.SelectionMode.ExtendedSelection)
        self.setMouseTracking(True)
        self.setSpacing(4)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.doubleClicked.connect(self._open_index)
        # Replaceable for tests: opening a URL must not launch a real viewer there.
        self.open_url: Callable[[QUrl], object] = QDesktopServices.openUrl
        self.reveal: Callable[[Path], bool] = reveal

    placeholder = "The most similar photos appear here, best first."

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        super().paintEvent(event)
        if self.model() is not None and self.model().rowCount() == 0 and self.placeholder:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            painter.end()

    def path_at(self, index: QModelIndex) -> Path | None:
        """The photo shown at `index`."""
        value = index.data(PathRole) if index.isValid() else None
        return value if isinstance(value, Path) else None

    def open_photo(self, path: Path) -> None:
        """Open in the system's image viewer (and say so when none could)."""
        if self.open_url(url_of(path)) is False:
            self.message.emit(
                f"No program could open {display(path.name)}; set a default image viewer in your "
                "system settings, or use Open containing folder."
            )

    def open_folder(self, path: Path) -> None:
        """Show the photo selected in the file manager, or at least open its folder."""
        if self.reveal(path):
            return
        if self.open_url(url_of(path.parent)) is False:
            self.message.emit(f"No file manager could open {display(path.parent)}.")

    def open_current(self) -> None:
        """Enter: open the result that has the keyboard focus."""
        path = self.path_at(self.currentIndex())
        if path is not None:
            self.open_photo(path)

    def preview_current(self) -> QDialog | None:
        """Space: a larger preview of the current result (Left/Right step through the results)."""
        if not self.currentIndex().isValid():
            return None
        from imagehash_app.gui.preview import PreviewDialog

        paths = [p for p in (self.path_at(self.model().index(r, 0)) for r in range(self.model().rowCount())) if p]
        dialog = PreviewDialog(paths, self.currentIndex().row(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(lambda _r: self.setCurrentIndex(self.model().index(dialog.current, 0)))
        dialog.show()
        self.preview = dialog
        return dialog

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.open_current()
            event.accept()
            return
        if event.key() == Qt.Key.Key_Space and self.currentIndex().isValid():
            self.preview_current()
            event.accept()
            return
        super().keyPressEvent(event)

    def copy_path(self, paths: list[Path]) -> None:
        """Put the paths (one per line) on the clipboard."""
        QGuiApplication.clipboard().setText("\n".join(str(p) for p in paths))
        self.message.emit(f"Copied {len(paths)} path{'s' if len(paths) != 1 else ''}")

    def context_actions(self, index: QModelIndex, parent: QWidget | None = None) -> list[QAction]:
        """The context-menu actions for the result at `index` (built separately so tests can trigger them)."""
        path = self.path_at(index)
        if path is None:
            return []
        chosen = [p for p in (self.path_at(i) for i in self.selectedIndexes()) if p is not None]
        if path not in chosen:
            chosen = [path]
        actions = []
        for text, slot in (
            ("Open", lambda: self.open_photo(path)),
            ("Open containing folder", lambda: self.open_folder(path)),
            ("Copy path", lambda: self.copy_path(chosen)),
            ("Find similar to this one", lambda: self.findSimilar.emit(path)),
            ("More like this", lambda: self.markSimilar.emit(path, True)),
            ("Not similar", lambda: self.markSimilar.emit(path, False)),
            ("Suggest keywords", lambda: self.suggestKeywords.emit(path)),
        ):
            action = QAction(text, parent or self)
            action.triggered.connect(slot)
            actions.append(action)
        return actions

    @Slot(QPoint)
    def _context_menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        actions = self.context_actions(self.indexAt(pos), parent=menu)
        if actions:
            menu.addActions(actions)
            menu.exec(self.viewport().mapToGlobal(pos))
        menu.deleteLater()

    @Slot(QModelIndex)
    def _open_index(self, index: QModelIndex) -> None:
        path = self.path_at(index)
        if path is not None:
            self.open_photo(path)
