"""Moving copies to the system trash, one file at a time, so that nothing is lost.

Why so careful: this is the one place the app removes a person's files. Only through the system
trash (Send2Trash: restoring is the trash's job), never a kept or reference photo, never a file
that changed since it was indexed unless it is still a copy of its keeper, and a failure stops
everything at once with every remaining file left in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imagehash_app.core.stored_paths import display

TrashFn = Callable[[str], None]


def system_trash(path: str) -> None:
    """Send2Trash: the platform's own trash (Recycle Bin, Finder's Trash, freedesktop trash)."""
    from send2trash import send2trash

    send2trash(path)


@dataclass(frozen=True)
class TrashOutcome:
    """What `Library.trash` did: files moved to the trash, files passed over (with why), the
    failure that stopped it (if one did) and the files left untouched after it."""

    trashed: tuple[Path, ...] = ()
    skipped: tuple[tuple[Path, str], ...] = ()
    failed: tuple[Path, str] | None = None
    left: tuple[Path, ...] = ()
    freed_bytes: int = 0
    kept_in_place: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def message(self) -> str:
        """One or two sentences for a person."""
        parts = [f"Moved {len(self.trashed)} file{'s' if len(self.trashed) != 1 else ''} to "
                 f"the trash ({self.freed_bytes / 1e6:.1f} MB)."]
        if self.skipped:
            parts.append(f"Left {len(self.skipped)} in place: "
                         + "; ".join(f"{display(p)} {why}" for p, why in self.skipped[:3])
                         + ("; ..." if len(self.skipped) > 3 else "") + ".")
        if self.failed is not None:
            path, why = self.failed
            parts.append(f"Stopped at {display(path)}: {why}; the {len(self.left)} remaining "
                         "files were left in place. Fix that and run it again.")
        return " ".join(parts)
