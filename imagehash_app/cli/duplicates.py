"""`imagehash-app duplicates`: groups of copies as a table or JSON lines, and `--trash` to move
every copy not kept to the system trash after a summary and a confirmation (issue 15)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.library import (
    CopyGroup,
    CopyPhoto,
    DuplicateReport,
    KeeperRule,
    Library,
    b64,
    display,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "duplicates", help="groups of copies of one photo, the one to keep marked; --trash the rest"
    )
    p.add_argument("--threshold", type=_score, default=None, metavar="X",
                   help="copy score from 0 to 1 above which two photos are copies "
                        "(default: the calibrated one)")
    p.add_argument("--json", action="store_true", help="one JSON object per group per line")
    p.add_argument("--keep", type=_rule, default=None, metavar="RULE",
                   help="the keeper rule: criteria in order among pixels, compression, format, "
                        "date (default: the library's, pixels,compression,format,date)")
    p.add_argument("--reference", type=Path, action="append", default=[], metavar="FOLDER",
                   help="a folder whose photos are always kept and never touched (repeatable)")
    p.add_argument("--trash", action="store_true",
                   help="move every copy not kept to the system trash (asks first)")
    p.add_argument("--yes", action="store_true", help="with --trash: do not ask")
    p.set_defaults(func=cmd_duplicates)


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"the threshold is a score from 0 to 1, not {text!r}")
    return value


def _rule(text: str) -> KeeperRule:
    try:
        return KeeperRule.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def cmd_duplicates(args: argparse.Namespace) -> int:
    with Library.open(args.library, read_only=not args.trash) as lib:
        report = lib.duplicates(args.threshold, reference_folders=args.reference, rule=args.keep)
        if args.json:
            for group in report.groups:
                print(json.dumps({"photos": [_photo_json(p) for p in group.photos]}))
        else:
            _print_table(report)
        if not args.trash:
            return 0
        return _trash(lib, report, args)


def _photo_json(p: CopyPhoto) -> dict:
    return {
        "path": str(p.path), "path_b64": b64(p.path), "keep": p.keep, "bytes": p.bytes,
        "width": p.width, "height": p.height, "score": round(p.score, 4),
        "transform": p.transform, "format": p.format, "modified": p.modified,
        "taken": p.taken, "quality": p.quality, "reference": p.reference,
    }


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def _date(p: CopyPhoto) -> str:
    return datetime.datetime.fromtimestamp(p.date, datetime.timezone.utc).strftime("%Y-%m-%d")


def _line(p: CopyPhoto) -> str:
    mark = "keep" if p.keep else ("ref " if p.reference else "    ")
    quality = f" q{p.quality:.0f}" if p.quality is not None else ""
    how = f" {p.transform}" if p.transform else ""
    score = "     " if p.keep else f"{p.score:.2f} "
    return (f"  {mark} {score}{p.width:>5}x{p.height:<5} {_size(p.bytes):>8}  "
            f"{p.format}{quality}{how}  {_date(p)}  {display(p.path)}")


def _print_table(report: DuplicateReport) -> None:
    if not report.groups:
        print(f"No copies found among {report.searched:,} photos "
              f"(threshold {report.threshold:.2f}).")
    for i, group in enumerate(report.groups, 1):
        print(f"Group {i}: {len(group.photos)} photos, {_size(group.reclaimable_bytes)} to free")
        for p in group.photos:
            print(_line(p))
    if report.groups:
        copies = sum(len(g.removable) for g in report.groups)
        print(f"{len(report.groups)} groups, {copies} copies not kept "
              f"({_size(report.reclaimable_bytes)}); threshold {report.threshold:.2f}. "
              f"{report.rule.describe()}")
    if report.unsigned:
        print(f"{report.unsigned:,} photos indexed before copy signatures existed were not "
              "searched; run `imagehash-app index` to add theirs.", file=sys.stderr)


def _trash(lib: Library, report: DuplicateReport, args: argparse.Namespace) -> int:
    removable = [(p, g) for g in report.groups for p in g.removable]
    if not removable:
        print("Nothing to move to the trash.", file=sys.stderr)
        return 0
    total = sum(p.bytes for p, _ in removable)
    print(f"This moves {len(removable)} files ({_size(total)}) to the system trash, keeping one "
          f"photo of each of {len(report.groups)} groups.", file=sys.stderr)
    if not args.yes and not _confirmed():
        print("Nothing was moved.", file=sys.stderr)
        return 1
    outcome = lib.trash([p.path for p, _ in removable],
                        keepers={p.path: _keeper(g) for p, g in removable},
                        reference_folders=args.reference)
    print(outcome.message, file=sys.stderr)
    if not outcome.ok:
        raise ImagehashError(f"Stopped at {display(outcome.failed[0])}: {outcome.failed[1]}; "
                             f"{len(outcome.left)} files were left in place.")
    return 0


def _keeper(group: CopyGroup) -> Path:
    return group.keeper.path


def _confirmed() -> bool:
    print("Move them to the trash? [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
