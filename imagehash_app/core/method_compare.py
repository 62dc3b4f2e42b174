"""Improve search… with a comparison: train each unsupervised sign-code method on the library's
own reservoir within one time budget and keep the one that finds most of each held-out photo's
ten closest matches after the decoder re-rank (the figure search shows).

Why: which hasher serves a library best depends on its photos (docs/results-hashing.md: URPH wins
on the benchmarks, but not by the same margin everywhere), and the person has no way to know. The
comparison is on one footing: the same training photos, the same held-out queries, the same seed,
the same encoder epochs for every method that has epochs (``COMPARE_EPOCHS``, fewer than a
standalone fit so that several fit in the budget on 2 cores).

The budget is honoured, not estimated: candidates run one after another, each told to stop as
soon as the budget is spent; one stopped that way is recorded as "out of time" and does not
compete, and the ones after it are "skipped". The cheapest go first (ITQ, then URPH, the default,
then the seed papers' methods) so that a short budget still compares something. The winner then
goes through the usual keep / roll-back flow against the active version. With no candidate
finished, URPH is trained as in a plain fine-tune.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from imagehash_app.core.errors import CancelledError

if TYPE_CHECKING:
    from imagehash_app.core.hashing.base import Hasher

StopFn = Callable[[], bool]
# The order they run in: cheapest first, URPH (the default) second, then the seed papers' methods.
COMPARE_METHODS = ("itq", "urph", "harr", "distillhash", "dsg", "dmuh")
COMPARE_BUDGET_S = 300.0  # five minutes on 2 cores, what the person is told it takes
COMPARE_EPOCHS = 10  # encoder epochs of every candidate that has epochs (decoders keep theirs)
DEFAULT_WINNER = "urph"
WIN_KEY = "rerank_10@10"  # held-out recall 10@10 after the decoder re-rank

# Statuses of a candidate.
DONE, OUT_OF_TIME, SKIPPED = "done", "out of time", "skipped"


@dataclass
class Candidate:
    """One method's result in the comparison: how long it took and what it found."""

    method: str
    status: str  # DONE | OUT_OF_TIME | SKIPPED
    fit_s: float = 0.0
    eval_s: float = 0.0
    epochs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def comparison_problem(methods: Sequence[str]) -> str:
    """Why `methods` cannot be compared on a library ('' when they can)."""
    unknown = [m for m in methods if m not in COMPARE_METHODS]
    if unknown:
        return (
            f"Only the unsupervised sign-code methods can be compared ({', '.join(COMPARE_METHODS)}), "
            f"not {', '.join(unknown)}."
        )
    if not methods:
        return "Name at least one method to compare."
    return ""


def ordered(methods: Sequence[str]) -> list[str]:
    """`methods` without repeats, in the order they run (COMPARE_METHODS')."""
    chosen = set(methods)
    return [m for m in COMPARE_METHODS if m in chosen]


def winner(candidates: Sequence[Candidate]) -> Candidate | None:
    """The finished candidate with the best held-out recall 10@10 after re-rank; a tie goes to
    URPH (the default), then to the earlier one. None when none finished."""
    done = [c for c in candidates if c.status == DONE]
    if not done:
        return None
    return max(
        done, key=lambda c: (c.metrics.get(WIN_KEY, 0.0), c.method == DEFAULT_WINNER, -done.index(c))
    )


def compare(
    methods: Sequence[str],
    fit: Callable[[str, int | None, StopFn], Generator[Any, None, Hasher]],
    evaluate: Callable[[Hasher], dict[str, float]],
    *,
    event: Callable[[int, int, str], Any] = lambda done, total, message: message,
    budget_s: float = COMPARE_BUDGET_S,
    epochs: int | None = COMPARE_EPOCHS,
    should_stop: StopFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Generator[Any, None, tuple[Hasher | None, list[Candidate]]]:
    """Fit and evaluate each of `methods` (in :func:`ordered` order) until `budget_s` is spent.

    `fit(method, epochs, stop)` is a generator of progress returning the fitted hasher (it raises
    CancelledError when `stop` says so); `evaluate(hasher)` gives its held-out metrics. The
    person's `should_stop` cancels the whole comparison (CancelledError); the budget stops only
    the candidate it catches. `event(done, total, message)` makes the progress events yielded
    between candidates (the fine-tune's own type). Returns (the winner's hasher or None, every
    candidate's record).
    """

    started = clock()
    deadline = started + float(budget_s)
    order = ordered(methods)
    candidates: list[Candidate] = []
    fitted: dict[str, Hasher] = {}

    def out_of_time() -> bool:
        return clock() >= deadline

    def stop() -> bool:
        return bool(should_stop and should_stop()) or out_of_time()

    for at, method in enumerate(order):
        if should_stop and should_stop():
            raise CancelledError("Fine-tuning was cancelled; the current version stays in use.")
        if out_of_time():
            candidates.append(Candidate(method, SKIPPED))
            continue
        left = deadline - clock()
        yield event(at, len(order), f"Comparing: training {method} ({at + 1} of {len(order)}, {left:.0f} s left)")
        t0 = clock()
        n_epochs = None if method == "itq" else epochs
        try:
            hasher = yield from fit(method, n_epochs, stop)
        except CancelledError:
            if should_stop and should_stop():
                raise
            candidates.append(Candidate(method, OUT_OF_TIME, fit_s=round(clock() - t0, 2), epochs=n_epochs))
            continue
        fit_s = clock() - t0
        if out_of_time():  # finished training, but no time left to measure it fairly
            candidates.append(Candidate(method, OUT_OF_TIME, fit_s=round(fit_s, 2), epochs=n_epochs))
            continue
        t1 = clock()
        metrics = evaluate(hasher)
        candidates.append(Candidate(
            method, DONE, fit_s=round(fit_s, 2), eval_s=round(clock() - t1, 2), epochs=n_epochs,
            metrics=metrics,
        ))
        fitted[method] = hasher
    best = winner(candidates)
    yield event(
        len(order), len(order),
        (f"Compared {sum(c.status == DONE for c in candidates)} of {len(order)} methods "
                 f"in {clock() - started:.0f} s: {best.method if best else 'none finished'} wins"),
    )
    return (fitted[best.method] if best else None), candidates


def summary(candidates: Sequence[Candidate], won: str | None) -> str:
    """One line per candidate for the CLI and the version's note: method, status, figures."""
    lines = []
    for c in candidates:
        if c.status == DONE:
            r = c.metrics
            text = (f"{c.method:<12} {r.get(WIN_KEY, 0):.3f} re-ranked 10@10, "
                    f"{r.get('hamming_10@10', 0):.3f} by codes alone; fit {c.fit_s:.0f} s")
        else:
            text = f"{c.method:<12} {c.status}" + (f" after {c.fit_s:.0f} s" if c.fit_s else "")
        lines.append(text + ("   <- chosen" if c.method == won else ""))
    return "\n".join(lines)


def candidates_from(records: Sequence[dict[str, Any]]) -> list[Candidate]:
    """Candidates back from their stored dicts (the version's metrics, a resumed fine-tune)."""
    return [Candidate(**{k: r[k] for k in Candidate.__dataclass_fields__ if k in r}) for r in records]


__all__ = [
    "COMPARE_BUDGET_S", "COMPARE_EPOCHS", "COMPARE_METHODS", "Candidate",
    "candidates_from", "compare", "comparison_problem", "ordered", "summary", "winner",
]
