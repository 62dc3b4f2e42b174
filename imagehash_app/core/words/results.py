"""What the words features answer: plans, fine-tune figures and text-query results (no torch
here, so that the faces can name them without loading the training stack)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WordsPlan:
    """Whether the words fine-tune is offered, and why (a sentence for a person)."""

    offered: bool
    reason: str
    photos_with_words: int
    vocabulary: int


@dataclass
class WordsFinetuneResult:
    """A trained cross-modal version (inactive until kept) and its held-out figures."""

    model_id: int
    previous_model: int | None
    metrics: dict[str, float]
    previous_metrics: dict[str, float] | None
    baseline_metrics: dict[str, float]
    trained_on: int
    held_out: int
    seconds: float
    better: bool


@dataclass(frozen=True)
class TextResult:
    path: Path
    score: float  # centred cosine with the mean look of the photos carrying the words
    hamming: int  # distance of its image-side code to the text's code
    has_words: bool  # the photo itself carries every query word


@dataclass
class TextAnswer:
    words: list[str]  # the query's words the library knows
    unknown: list[str]  # the query's words no photo carries
    results: list[TextResult] = field(default_factory=list)
    note: str = ""  # why the answer is what it is, for a person
