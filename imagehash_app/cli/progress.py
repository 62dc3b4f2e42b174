"""The command line's progress display: a one-line bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from typing import Protocol, TextIO, TypeVar

R = TypeVar("R")


class Progress(Protocol):
    """What a progress event carries (IndexProgress and FinetuneProgress both do)."""

    phase: str
    done: int
    total: int
    rate: float
    eta_s: float | None
    message: str


class ProgressPrinter:
    """A one-line progress bar (count, rate, ETA) on a terminal; plain lines otherwise."""

    WIDTH = 28
    LINE_EVERY = 2.0  # seconds between plain lines

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        stream = sys.stderr if stream is None else stream  # looked up now: tests swap sys.stderr
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._phase = ""
        self._last = 0.0
        self._open_line = False

    def update(self, ev: Progress) -> None:
        if ev.phase != self._phase:
            self._end_line()
            self._phase = ev.phase
            self._last = 0.0
        final = ev.phase == "done" or (ev.total and ev.done >= ev.total)
        if self.tty and ev.phase != "done":
            self.stream.write("\r\x1b[2K" + self._bar(ev))
            self._open_line = True
            if final:
                self._end_line()
        else:
            now = time.monotonic()
            if final or ev.message or now - self._last >= self.LINE_EVERY:
                self._last = now
                self.stream.write(self._plain(ev) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._end_line()

    def _end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False

    def _bar(self, ev: Progress) -> str:
        head = f"{ev.phase:<6}"
        if ev.total:
            filled = int(self.WIDTH * min(ev.done / ev.total, 1.0))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"{head} [{bar}] {ev.done}/{ev.total}"
        else:
            text = f"{head} {ev.done}"
        return text + self._rate(ev) + (f"  {ev.message}" if ev.message else "")

    def _plain(self, ev: Progress) -> str:
        if ev.phase == "done":
            return ev.message or "done"
        count = f"{ev.done}/{ev.total}" if ev.total else str(ev.done)
        return f"{ev.phase}: {count}{self._rate(ev)}" + (f"  {ev.message}" if ev.message else "")

    @staticmethod
    def _rate(ev: Progress) -> str:
        out = f"  {ev.rate:.1f}/s" if ev.rate else ""
        if ev.eta_s is not None and ev.total and ev.done < ev.total:
            out += f"  ETA {duration(ev.eta_s)}"
        return out


def duration(seconds: float) -> str:
    """e.g. 42s, 3m05s, 1h02m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_printing_progress(gen: Generator[Progress, None, R]) -> R:
    """Drive a fine-tune-like generator to its result, printing its progress (but not its final
    "done" event: the command prints the result itself) on the current stderr."""
    printer = ProgressPrinter(sys.stderr)  # the current stream, not the one at import time
    try:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            if getattr(event, "phase", None) != "done":
                printer.update(event)
    finally:
        gen.close()
        printer.close()
