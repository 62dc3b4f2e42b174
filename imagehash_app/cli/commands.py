"""The command line's sub-commands over `Library` (index, search, status, folders, repair) and its
parser; every handler returns an exit code and lets failures reach `main`'s boundary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imagehash_app.cli import duplicates as duplicates_command
from imagehash_app.cli import eval as eval_command
from imagehash_app.cli import models
from imagehash_app.cli import words as words_command
from imagehash_app.cli.progress import ProgressPrinter
from imagehash_app.core.library import (
    Library,
    SearchResponse,
    SearchResult,
    b64,
    default_library_dir,
    display,
    repair,
)


# --- sub-commands ------------------------------------------------------------------------------
def _open(args: argparse.Namespace, read_only: bool = False) -> Library:
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
    if args.text is not None:
        from imagehash_app.cli.words import search_text

        return search_text(args)
    if not args.images:  # a usage error, as argparse's own (exit 2)
        args.search_parser.error('give photos to search with, or words with --text "lisbon tram"')
    with _open(args, read_only=True) as lib:
        # Printed batch by batch as they come: memory stays flat however many queries.
        # A query that cannot be searched stops the command (one sentence, exit 1), after the
        # answers printed before it.
        for answer in lib.iter_search([Path(p) for p in args.images], top_k=args.top):
            _print_responses(lib, answer.responses, args)
            sys.stdout.flush()
            answer.check()
    return 0


def _print_responses(
    lib: Library, responses: list[SearchResponse], args: argparse.Namespace
) -> None:
    # JSON keeps every path exact (surrogate escapes, plus base64 of its bytes); a table shows
    # bytes that are not UTF-8 as U+FFFD, so that printing never fails whatever the locale.
    for resp in responses:
        if args.json:
            print(json.dumps({
                "query": str(resp.query),
                "query_b64": b64(resp.query),
                "in_library": resp.query_in_library is not None,
                "results": [_result_json(r) for r in resp.results],
            }))
        else:
            print(display(resp.query))
            if not resp.results:
                print(f"  (no results: {lib.no_results_reason()})")
            for rank, r in enumerate(resp.results, 1):
                mark = "this" if r.path == resp.query_in_library else "copy" if r.is_copy else ""
                print(f"  {rank:>3}  {r.score:7.4f}  {r.hamming:>4}  {mark:<4}  {display(r.path)}")


def _result_json(r: SearchResult) -> dict[str, object]:
    """One result for `--json`: the copy score (see `duplicates`) where the signatures gave one."""
    out: dict[str, object] = {"path": str(r.path), "path_b64": b64(r.path),
                              "score": round(float(r.score), 6), "hamming": int(r.hamming)}
    if r.copy_score is not None:
        out["copy_score"] = round(float(r.copy_score), 4)
        out["is_copy"] = r.is_copy
    return out


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
    if s.words:
        w = s.words
        learnt = (f"search by words learnt (version {w['model']['id']}: {w['model']['note']})"
                  if w.get("model") else "search by words not learnt yet")
        lines.append(f"Words:     {w['photos']} photos carry words ({w['vocabulary']} distinct); {learnt}")
    if s.marks:
        lines.append(
            f"Marks:     {s.marks.get('similar', 0)} more like this, "
            f"{s.marks.get('not_similar', 0)} not similar (what supervised fine-tunes learn from)"
        )
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
    kept, folders = repair(library_path(args), restore_backup=args.restore_backup)
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

    p = sub.add_parser("search", help="find the library's photos that look like IMAGE, or that "
                       "go with words (--text)")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--text", metavar="WORDS", help='words the photos carry or look like: "lisbon tram"')
    p.set_defaults(search_parser=p)
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

    eval_command.add_parser(sub)
    words_command.add_parsers(sub)
    models.add_parsers(sub)
    duplicates_command.add_parser(sub)
    return parser


def library_path(args: argparse.Namespace) -> Path:
    """The library folder a command names (for the error boundary's messages)."""
    return Path(args.library or default_library_dir()).expanduser().absolute()
