"""The search box: typed words find the photos that carry them or look like those that do.

Typing suggests words of the library's vocabulary (a QCompleter on the word being typed, most
carried first); Enter asks the window to search.
"""

from __future__ import annotations

from PySide6.QtCore import QStringListModel, Qt, Signal, Slot
from PySide6.QtWidgets import QCompleter, QLineEdit, QWidget


class TextSearchBox(QLineEdit):
    """A line edit whose completer works on its last word."""

    searchRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Search by words: lisbon tram")
        self.setClearButtonEnabled(True)
        self.setToolTip(
            "Words that photos carry (folder and file names, keywords, captions): finds those "
            "photos and the ones that look like them"
        )
        self.words = QStringListModel(self)
        self.completer_ = QCompleter(self.words, self)
        self.completer_.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer_.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.completer_.setModelSorting(QCompleter.ModelSorting.UnsortedModel)
        self.completer_.setWidget(self)
        self.completer_.activated.connect(self.insert_word)
        self.textEdited.connect(self._suggest)
        self.returnPressed.connect(self._submit)

    def set_vocabulary(self, words: list[str]) -> None:
        """The words to suggest, most carried first."""
        self.words.setStringList(words)

    def current_word(self) -> str:
        """The word being typed (after the last space), empty after a space."""
        text = self.text()
        return "" if not text or text[-1].isspace() else text.split()[-1]

    def suggestions(self) -> list[str]:
        """What the popup offers for the word being typed now."""
        model = self.completer_.completionModel()
        return [model.index(i, 0).data() for i in range(model.rowCount())]

    @Slot(str)
    def _suggest(self, _text: str) -> None:
        word = self.current_word()
        if not word:
            self.completer_.popup().hide()
            return
        self.completer_.setCompletionPrefix(word)
        if self.completer_.completionCount():
            self.completer_.complete()
        else:
            self.completer_.popup().hide()

    @Slot(str)
    def insert_word(self, word: str) -> None:
        """Replace the word being typed with the chosen one."""
        text = self.text()
        head = text[: len(text) - len(self.current_word())]
        self.setText(f"{head}{word} ")

    @Slot()
    def _submit(self) -> None:
        if self.completer_.popup().isVisible():
            self.completer_.popup().hide()
        text = self.text().strip()
        if text:
            self.searchRequested.emit(text)
