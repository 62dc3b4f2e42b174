"""The words and small pure functions of the duplicates view, kept free of widgets for tests.

What a card says under a photo, what the trash summary and its outcome say, and how a report
loses the photos that went to the trash (so the view updates without searching again).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from imagehash_app.core.library import CopyGroup, CopyPhoto, DuplicateReport, display

# The eight symmetries as a person says how a copy differs from the photo kept. A copy's
# `transform` says how it maps onto the keeper (Pillow's names, rotations counter-clockwise), so
# a copy turned 90° left maps back with "rot270": the words describe the inverse.
_COPY_WORDS = {
    "": "",
    "rot270": "rotated 90° left",
    "rot90": "rotated 90° right",
    "rot180": "upside down (rotated 180°)",
    "mirror": "mirrored",
    "flip": "flipped upside down",
    "transpose": "mirrored and rotated",
    "transverse": "mirrored and rotated",
}


def transform_words(transform: str) -> str:
    """How a copy differs from the kept photo, given how it maps onto it: "rot270" (turn it
    270° counter-clockwise to match) → "rotated 90° left"; an unknown name is shown as it is."""
    return _COPY_WORDS.get(transform, transform)


def human_size(n: int) -> str:
    """A file size as people read it: 830 KB, 2.1 MB."""
    value = float(n)
    for unit in ("bytes", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit in ("bytes", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def folder_text(path: Path) -> str:
    """The folder a copy sits in, its last two parts: tells a backup's copy from the original."""
    parent = path.parent
    return display(Path(*parent.parts[-2:])) if len(parent.parts) > 1 else display(parent)


def date_text(photo: CopyPhoto) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(photo.date))
    return f"taken {when}" if photo.taken is not None else f"modified {when}"


def card_lines(photo: CopyPhoto) -> list[str]:
    """The lines under a photo: pixel size, format and file size; date; folder; how it copies."""
    lines = [
        f"{photo.width}×{photo.height} · {photo.format or '?'} · {human_size(photo.bytes)}",
        date_text(photo),
        folder_text(photo.path),
    ]
    if not photo.keep:
        how = transform_words(photo.transform)
        lines.append(f"{how} · copy score {photo.score:.2f}" if how else f"copy score {photo.score:.2f}")
    return lines


def badge_text(photo: CopyPhoto, chosen: bool) -> str:
    """The mark above a photo: what happens to it when the others go to the trash."""
    if photo.keep:
        return "Keep (your choice)" if chosen else "Keep (suggested)"
    if photo.reference:
        return "Reference folder: stays"
    return "To the trash"


def trash_summary(groups: Sequence[CopyGroup]) -> str:
    """What "Move the others to the trash" is about to do, in words, before it is confirmed."""
    removable = [p for g in groups for p in g.removable]
    kept = len(groups)
    references = sum(1 for g in groups for p in g.photos if p.reference and not p.keep)
    size = human_size(sum(p.bytes for p in removable))
    n = len(removable)
    text = (
        f"Move {n} photo{'s' if n != 1 else ''} ({size}) from {kept} group{'s' if kept != 1 else ''} "
        f"to the system trash? The {kept} kept photo{'s' if kept != 1 else ''}"
    )
    if references:
        text += f" and the {references} other photo{'s' if references != 1 else ''} in reference folders"
    text += (
        " stay where they are. Each file is checked again before it moves, and the system trash "
        "can put it back."
    )
    return text


def outcome_text(
    asked: int, trashed: Sequence[Path], failed: Path | None, reason: str,
    skipped: Sequence[tuple[Path, str]] = (),
) -> str:
    """What the trash did: all moved, the files it passed over and why, where it stopped."""
    n = len(trashed)
    if failed is None and not skipped and n == asked:
        return f"Moved {n} photo{'s' if n != 1 else ''} to the trash; the system trash can restore them."
    text = f"Moved {n} of {asked} photos to the trash"
    if skipped:
        why = "; ".join(f"{display(p.name)} {reason_}" for p, reason_ in skipped[:3])
        text += f"; left {len(skipped)} in place ({why}{'; …' if len(skipped) > 3 else ''})"
    if failed is not None:
        left = asked - n - len(skipped)
        text += (f", then stopped at {display(failed)}: {reason}. The {left} remaining "
                 f"photo{'s were' if left != 1 else ' was'} left in place; fix the cause and try again")
    return text + "."


def without(report: DuplicateReport, gone: Iterable[Path]) -> DuplicateReport:
    """The report with the photos in `gone` removed (trashed), regrouped at the same threshold:
    the view updates without reading the library again."""
    gone = set(gone)
    if not gone:
        return report
    keep_index: dict[int, int] = {}
    photos = []
    for i, photo in enumerate(report.photos):
        if photo.path not in gone:
            keep_index[i] = len(photos)
            photos.append(photo)
    pairs = tuple(
        replace(p, a=keep_index[p.a], b=keep_index[p.b])
        for p in report.pairs if p.a in keep_index and p.b in keep_index
    )
    return replace(report, photos=tuple(photos), pairs=pairs).at(report.threshold)


def with_not_duplicates(report: DuplicateReport, paths: Iterable[Path]) -> DuplicateReport:
    """The report with one more "not duplicates" set: that group is left out at every threshold
    where it forms again, as the library now remembers."""
    marked = report.not_duplicates | {frozenset(paths)}
    return replace(report, not_duplicates=marked).at(report.threshold)


def apply_choices(group: CopyGroup, chosen: set[Path], rule_key) -> tuple[CopyGroup, bool]:
    """The group with the person's "keep this one" applied (when one of its photos was chosen),
    and whether it was. Groups merged by a lower threshold keep the best-ranked chosen photo."""
    picked = [p for p in group.photos if p.path in chosen]
    if not picked:
        return group, False
    best = min(picked, key=rule_key)
    return group.keeping(best.path), True
