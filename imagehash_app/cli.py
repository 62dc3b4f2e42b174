"""Command-line face of the engine: argparse sub-commands over `core.library`, no logic of its own.

Every failure becomes one sentence on stderr and an exit code (failures.py: 1 bad input, 2 usage,
3 damaged library, 4 disk full, 130 interrupted), its details in the log file; never a traceback.
With no sub-command the window opens.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from imagehash_app import cli_eval, cli_models, failures
from imagehash_app.config import default_library_dir
from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.stored_paths import b64, display
from imagehash_app.failures import EXIT_ERROR, EXIT_INTERRUPTED

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "build_parser", "main"]


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

    def update(self, ev) -> None:
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

    def _bar(self, ev) -> str:
        head = f"{ev.phase:<6}"
        if ev.total:
            filled = int(self.WIDTH * min(ev.done / ev.total, 1.0))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"{head} [{bar}] {ev.done}/{ev.total}"
        else:
            text = f"{head} {ev.done}"
        return text + self._rate(ev) + (f"  {ev.message}" if ev.message else "")

    def _plain(self, ev) -> str:
        if ev.phase == "done":
            return ev.message or "done"
        count = f"{ev.done}/{ev.total}" if ev.total else str(ev.done)
        return f"{ev.phase}: {count}{self._rate(ev)}" + (f"  {ev.message}" if ev.message else "")

    @staticmethod
    def _rate(ev) -> str:
        out = f"  {ev.rate:.1f}/s" if ev.rate else ""
        if ev.eta_s is not None and ev.total and ev.done < ev.total:
            out += f"  ETA {_duration(ev.eta_s)}"
        return out


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --- sub-commands ------------------------------------------------------------------------------
def _open(args: argparse.Namespace, read_only: bool = False):
    from imagehash_app.core.library import Library

    return Library.open(args.library, read_only=read_only)


def cmd_index(args: argparse.Namespace) -> int:
    explicit = {
        k: v for k, v in (
            ("backbone", args.backbone), ("weights", args.weights), ("bits", args.bits),
        ) if v is not None
    }
    with _open(args) as lib:
        lib.update_settings(**explicit)
        if args.device is not None and args.device != lib.settings.device:
            lib.update_settings(device=args.device)
        printer = ProgressPrinter()
        try:
            for ev in lib.index([Path(p) for p in args.paths]):
                printer.update(ev)
        finally:
            printer.close()
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as lib:
        # Printed batch by batch as they come: memory stays flat however many queries.
        for batch in lib.iter_search([Path(p) for p in args.images], top_k=args.top):
            _print_responses(lib, batch, args)
            sys.stdout.flush()
    return 0


def _print_responses(lib, responses, args: argparse.Namespace) -> None:
    # JSON keeps every path exact (surrogate escapes, plus base64 of its bytes); a table shows
    # bytes that are not UTF-8 as U+FFFD, so that printing never fails whatever the locale.
    for resp in responses:
        if args.json:
            print(json.dumps({
                "query": str(resp.query),
                "query_b64": b64(resp.query),
                "results": [
                    {"path": str(r.path), "path_b64": b64(r.path),
                     "score": round(float(r.score), 6), "hamming": int(r.hamming)}
                    for r in resp.results
                ],
            }))
        else:
            print(display(resp.query))
            if not resp.results:
                print(f"  (no results: {lib.no_results_reason()})")
            for rank, r in enumerate(resp.results, 1):
                print(f"  {rank:>3}  {r.score:7.4f}  {r.hamming:>4}  {display(r.path)}")


def cmd_status(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as lib:
        status = lib.status()
    if args.json:
        print(json.dumps(status.to_dict(), indent=2, default=str))
        return 0
    s = status
    lines = [
        f"Library:   {display(s.library)}",
        f"Photos:    {s.indexed} indexed, {s.pending} pending, {s.skipped} skipped, "
        f"{s.offline} offline",
        f"Backbone:  {s.backbone} (weights {s.weights})",
        f"Codes:     {s.bits} bits ({s.bytes_per_image['code']:g} bytes per photo; "
        f"{s.bytes_per_image['on_disk']:g} bytes per photo on disk in all)",
        f"Hasher:    {s.hasher}",
        f"Reservoir: {s.reservoir['count']} of {s.reservoir['capacity']} features "
        f"({s.reservoir['bytes'] / 1e6:.1f} MB, {s.reservoir['dtype']})",
    ]
    lines += [f"Warning:   {w}" for w in s.warnings]
    for reason, n in s.skipped_reasons.items():
        lines.append(f"  skipped: {n} {reason}")
    for m in s.set_aside:
        kept = f"kept as {m.get('kept_as')}" if m.get("kept_as") else "its files were missing"
        lines.append(f"Set aside: hasher {m.get('dir')} could not be loaded ({kept}): {m.get('reason')}")
    lines.append("Folders:" if s.folders else "Folders:   none (imagehash-app index PATH adds one)")
    for f in s.folders:
        state = "" if f["online"] else "  [offline]"
        lines.append(f"  {display(f['path'])}  ({f['indexed']} indexed, {f['pending']} pending, "
                     f"{f['skipped']} skipped){state}")
    if s.unreadable:
        n = len(s.unreadable)
        lines.append(
            f"{n} folder{'s' if n != 1 else ''} could not be read (let this user read "
            f"{'them' if n != 1 else 'it'}, then run index again):"
        )
        lines += [f"  {display(u['path'])} ({u['reason']})" for u in s.unreadable]
    print("\n".join(lines))
    return 0


def cmd_folders(args: argparse.Namespace) -> int:
    if args.action == "list":
        with _open(args, read_only=True) as lib:
            folders = lib.folders()
        for f in folders:
            state = "online" if f.online else "offline"
            print(f"{display(f.path)}\t{f.indexed} indexed\t{f.pending} pending\t"
                  f"{f.skipped} skipped\t{state}")
        return 0
    with _open(args) as lib:
        for p in args.paths:
            if args.action == "add":
                info = lib.add_folder(Path(p))
                print(f"added {display(info.path)} (run `imagehash-app index` to index it)")
            else:
                lib.remove_folder(Path(p))
                print(f"removed {display(Path(p).expanduser().resolve())}")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    """Mend a damaged catalogue: put the last backup back, or start afresh with the folders list
    and index the photos again. The damaged catalogue is kept, renamed."""
    from imagehash_app.core import health
    from imagehash_app.core.locking import WriterLock

    path = _library_path(args)
    if not path.is_dir() or not any(
        (path / name).exists() for name in (health.CATALOG_FILE, health.BACKUP_FILE)
    ):
        raise ImagehashError(f"There is no library at {path} to repair; check --library.")
    lock = WriterLock(path)
    lock.acquire()
    try:
        with health.translated(path):
            if args.restore_backup:
                kept = health.restore_backup(path)
                folders: list[str] = []
            else:
                kept, folders = health.rebuild_catalog(path)
    finally:
        lock.release()
    print(f"The damaged catalogue is kept as {kept}.")
    if args.restore_backup:
        print("Restored the last backup; run `imagehash-app index` to add photos changed since.")
        return 0
    print(f"Started a new catalogue with {len(folders)} folder(s); indexing them again.")
    with _open(args) as lib:
        printer = ProgressPrinter()
        try:
            for ev in lib.index():
                printer.update(ev)
        finally:
            printer.close()
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from imagehash_app.gui.app import run
    except ImportError as exc:
        print(
            f"imagehash-app: the window is not available ({exc}). "
            "Use a sub-command instead: imagehash-app --help",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return run(Path(args.library) if args.library else None)


# --- parser ------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count of results (use 1 or more)")
    return value


def _library_arg(text: str) -> Path:
    """An empty --library (an unset shell variable) would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the library location is empty (an unset variable?); name a folder or leave "
            "--library out"
        )
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagehash-app",
        description="Find similar photos in your own folders, privately, with learned binary codes.",
    )
    parser.add_argument(
        "--library", type=_library_arg, default=None,
        help=f"library folder (default: {default_library_dir()})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", help="add folders and bring the library up to date with them")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--backbone", help="feature extractor, chosen when the library is created")
    p.add_argument("--weights", help="backbone weights: a local state dict file, 'auto' or 'none'")
    p.add_argument("--bits", type=int, choices=(16, 32, 64, 128), help="code length")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="find the library's photos that look like IMAGE")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=_positive_int, default=20, metavar="K", help="results per query")
    p.add_argument("--json", action="store_true", help="one JSON object per query line")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("status", help="what the library holds and how")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("folders", help="list, add or remove the library's folders")
    fsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fsub.add_parser("list", help="the folders and their counts").set_defaults(func=cmd_folders)
    for action, text in (("add", "remember folders (index them with `index`)"),
                         ("remove", "forget folders and their photos")):
        fp = fsub.add_parser(action, help=text)
        fp.add_argument("paths", nargs="+", metavar="PATH")
        fp.set_defaults(func=cmd_folders)

    p = sub.add_parser(
        "repair", help="mend a damaged catalogue: restore its backup, or rebuild it from the photos"
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--restore-backup", action="store_true",
                     help="put back the copy made after the last index run that changed the library")
    how.add_argument("--rebuild", action="store_true",
                     help="start a new catalogue with the same folders and settings and index them")
    p.set_defaults(func=cmd_repair)

    cli_eval.add_parser(sub)
    cli_models.add_parsers(sub)
    return parser


def _library_path(args: argparse.Namespace) -> Path:
    return Path(args.library or default_library_dir()).expanduser().absolute()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure reaches the person as one sentence and an exit code."""
    multiprocessing.freeze_support()  # decode workers in a frozen (PyInstaller) build
    failures.log_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse's message and exit status 2
    func = getattr(args, "func", None)
    try:
        if func is None:
            return cmd_gui(args)
        return func(args)
    except BrokenPipeError:
        return 0
    except (Exception, KeyboardInterrupt) as exc:
        try:
            library = _library_path(args)
        except Exception:  # noqa: BLE001
            library = None
        message, code = failures.report(exc, library)
        print(f"imagehash-app: {message}", file=sys.stderr)
        return code
