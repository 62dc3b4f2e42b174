"""Bags of words: the text modality of the cross-modal hasher.

A vocabulary of the words carried by at least `min_photos` photos and by at most `max_share`
of the photos carrying words (a word on nearly every photo, such as the library folder's own
name, tells photos apart no better than none); a bag is the idf-weighted indicator vector of a
photo's words, L2-normalised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_VOCABULARY = 2000


@dataclass
class Vocabulary:
    words: list[str]
    idf: np.ndarray  # float32 (v,)

    @classmethod
    def fit(
        cls, bags: Sequence[Sequence[str]], *, min_photos: int = 2, max_share: float = 0.5,
        limit: int = MAX_VOCABULARY,
    ) -> Vocabulary:
        counts = Counter(w for bag in bags for w in set(bag))
        n = max(len(bags), 1)
        kept = [
            (w, c) for w, c in counts.items() if c >= min_photos and (c <= max_share * n or n < 4)
        ]
        kept.sort(key=lambda wc: (-wc[1], wc[0]))
        kept = kept[:limit]
        idf = np.array([np.log((1 + n) / (1 + c)) + 1.0 for _, c in kept], dtype=np.float32)
        return cls([w for w, _ in kept], idf)

    def __len__(self) -> int:
        return len(self.words)

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def transform(self, bags: Sequence[Sequence[str]]) -> np.ndarray:
        """(len(bags), v) float32; a bag with no vocabulary word is all zeros."""
        where = self.index()
        out = np.zeros((len(bags), len(self.words)), dtype=np.float32)
        for row, bag in enumerate(bags):
            for w in bag:
                col = where.get(w)
                if col is not None:
                    out[row, col] = self.idf[col]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def known(self, bag: Sequence[str]) -> list[str]:
        where = self.index()
        return [w for w in bag if w in where]
