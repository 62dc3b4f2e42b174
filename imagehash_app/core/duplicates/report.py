"""What a duplicates search answers, and which copy of a group to keep.

Kept apart from the search itself so that both faces (the CLI's table and JSON, the window's
groups view) and the tests share one definition, and so that regrouping at another threshold
(the window's slider) is a pure function of scored pairs, with no photo read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

# Formats a camera or a phone writes first rank above the ones made from them: a HEIC or a TIFF is
# more likely the original than a JPEG exported from it, and a PNG of a photo is usually a
# screenshot. RAW formats rank first once the indexer decodes them.
_FORMAT_RANK: dict[str, int] = {
    "DNG": 0, "CR2": 0, "CR3": 0, "NEF": 0, "ARW": 0, "ORF": 0, "RW2": 0, "RAF": 0,
    "HEIF": 1, "HEIC": 1, "AVIF": 1, "TIFF": 1,
    "JPEG": 2, "MPO": 2,
    "WEBP": 3,
    "PNG": 4,
    "GIF": 5, "BMP": 5,
}
_UNKNOWN_FORMAT_RANK = 6

CRITERIA: dict[str, str] = {
    "pixels": "more pixels",
    "compression": "less compression (JPEG quality, else bytes per pixel)",
    "format": "original formats first (RAW, HEIC/TIFF, JPEG, WebP, PNG, GIF/BMP)",
    "date": "the older photo (taken date, else modification time)",
}
DEFAULT_ORDER: tuple[str, ...] = ("pixels", "compression", "format", "date")

# The eight symmetries of a rectangle, named as Pillow's `Image.Transpose` does them ("" is none;
# "mirror" is left-right, "flip" top-bottom; rotations are counter-clockwise).
TRANSFORMS: tuple[str, ...] = (
    "", "rot90", "rot180", "rot270", "mirror", "flip", "transpose", "transverse")


@dataclass(frozen=True)
class CopyPhoto:
    """One photo of a group of copies, with what the keeper rule and a person look at."""

    path: Path
    bytes: int
    width: int
    height: int
    format: str  # Pillow's format name: "JPEG", "PNG", "HEIF", ...
    modified: float  # seconds since the epoch
    taken: float | None = None  # EXIF DateTimeOriginal, seconds since the epoch, when known
    quality: float | None = None  # estimated JPEG quality 1-100, when known
    reference: bool = False  # in a reference folder: always kept, never touched
    score: float = 1.0  # copy score against the group's keeper (1.0 for the keeper itself)
    transform: str = ""  # how it maps onto the keeper: one of TRANSFORMS
    keep: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def date(self) -> float:
        return self.taken if self.taken is not None else self.modified


@dataclass(frozen=True)
class KeeperRule:
    """The documented, changeable "keep the best copy" rule: criteria compared in `order`, the
    first that differs decides. Reference-folder photos win over any criterion."""

    order: tuple[str, ...] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        unknown = [c for c in self.order if c not in CRITERIA]
        if unknown or not self.order or len(set(self.order)) != len(self.order):
            raise ValueError(
                f"A keeper rule is a comma-separated list of {', '.join(CRITERIA)} "
                f"(each at most once), not {','.join(self.order)!r}.")

    @classmethod
    def parse(cls, text: str) -> KeeperRule:
        """`"pixels,date"` → a rule; the CLI's `--keep` and the settings use this form."""
        return cls(tuple(part.strip().lower() for part in text.split(",") if part.strip()))

    def __str__(self) -> str:
        return ",".join(self.order)

    def describe(self) -> str:
        """The rule in words, for the window and the CLI's summary."""
        return "Keep " + ", then ".join(CRITERIA[c] for c in self.order) + "."

    def sort_key(self, photo: CopyPhoto) -> tuple:
        """Smaller is better; the path breaks every remaining tie so the choice is stable."""
        key: list[object] = [not photo.reference]
        for criterion in self.order:
            key.append(_criterion_value(criterion, photo))
        key.append(str(photo.path))
        return tuple(key)

    def choose(self, photos: Sequence[CopyPhoto]) -> CopyPhoto:
        return min(photos, key=self.sort_key)


def _criterion_value(criterion: str, photo: CopyPhoto) -> float:
    if criterion == "pixels":
        return -photo.pixels
    if criterion == "compression":
        # A JPEG quality estimate compares like with like; bytes per pixel is the fallback that
        # still orders two re-encodes of one size.
        if photo.quality is not None:
            return -photo.quality
        return -(photo.bytes / max(photo.pixels, 1))
    if criterion == "format":
        return _FORMAT_RANK.get(photo.format.upper(), _UNKNOWN_FORMAT_RANK)
    return photo.date  # "date": older first


@dataclass(frozen=True)
class CopyGroup:
    """Photos that are copies of one another; exactly one has `keep` set."""

    photos: tuple[CopyPhoto, ...]

    @property
    def keeper(self) -> CopyPhoto:
        return next(p for p in self.photos if p.keep)

    @property
    def removable(self) -> tuple[CopyPhoto, ...]:
        """What "move the others to the trash" may touch: never the keeper, never a reference."""
        return tuple(p for p in self.photos if not p.keep and not p.reference)

    @property
    def reclaimable_bytes(self) -> int:
        return sum(p.bytes for p in self.removable)

    @property
    def paths(self) -> frozenset[Path]:
        return frozenset(p.path for p in self.photos)

    def keeping(self, path: Path) -> CopyGroup:
        """The same group with `path` as its keeper (a person's "keep this one")."""
        if path not in self.paths:
            raise ValueError(f"{path} is not in this group.")
        return CopyGroup(tuple(replace(p, keep=p.path == path) for p in self.photos))


@dataclass(frozen=True)
class ScoredPair:
    """Two photos (indices into `DuplicateReport.photos`) and their calibrated copy score."""

    a: int
    b: int
    score: float
    transform: str = ""  # how b maps onto a


@dataclass(frozen=True)
class DuplicateReport:
    """Every verified candidate pair at or above `floor`, and the groups at `threshold`.

    `at(threshold)` regroups without reading anything again, so a slider can move live.
    """

    photos: tuple[CopyPhoto, ...]
    pairs: tuple[ScoredPair, ...]
    threshold: float
    floor: float
    rule: KeeperRule = field(default_factory=KeeperRule)
    not_duplicates: frozenset[frozenset[Path]] = frozenset()
    groups: tuple[CopyGroup, ...] = ()
    seconds: float = 0.0
    # How the search went: photos searched, photos still without a signature (indexed before
    # signatures existed: the next index run makes them), candidate pairs, pairs aligned.
    searched: int = 0
    unsigned: int = 0
    candidates: int = 0
    aligned: int = 0

    @classmethod
    def build(
        cls,
        photos: Sequence[CopyPhoto],
        pairs: Iterable[ScoredPair],
        *,
        threshold: float,
        floor: float,
        rule: KeeperRule | None = None,
        not_duplicates: Iterable[frozenset[Path]] = (),
        seconds: float = 0.0,
        searched: int = 0,
        unsigned: int = 0,
        candidates: int = 0,
        aligned: int = 0,
    ) -> DuplicateReport:
        report = cls(tuple(photos), tuple(pairs), threshold, min(floor, threshold),
                     rule or KeeperRule(), frozenset(not_duplicates), seconds=seconds,
                     searched=searched, unsigned=unsigned, candidates=candidates,
                     aligned=aligned)
        return report.at(threshold)

    def at(self, threshold: float, rule: KeeperRule | None = None) -> DuplicateReport:
        """The groups at another threshold (not below `floor`: pairs under it were not kept)."""
        if threshold < self.floor:
            raise ValueError(
                f"The threshold cannot go below {self.floor:.2f}, the lowest this search kept.")
        rule = rule or self.rule
        groups = group_pairs(self.photos, self.pairs, threshold, rule, self.not_duplicates)
        return replace(self, threshold=threshold, rule=rule, groups=groups)

    @property
    def reclaimable_bytes(self) -> int:
        return sum(g.reclaimable_bytes for g in self.groups)


def group_pairs(
    photos: Sequence[CopyPhoto],
    pairs: Iterable[ScoredPair],
    threshold: float,
    rule: KeeperRule,
    not_duplicates: frozenset[frozenset[Path]] = frozenset(),
) -> tuple[CopyGroup, ...]:
    """Connected components of the pairs at or above `threshold`, each with its keeper chosen by
    `rule`, scores and transforms taken against that keeper where the pair was scored. A group a
    person marked "not duplicates" (the same set of paths) is left out. Largest groups first."""
    parent = list(range(len(photos)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    kept = [p for p in pairs if p.score >= threshold]
    for p in kept:
        ra, rb = root(p.a), root(p.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for p in kept:
        for i in (p.a, p.b):
            members.setdefault(root(i), [])
    for i in range(len(photos)):
        if root(i) in members:
            members[root(i)].append(i)
    best: dict[tuple[int, int], ScoredPair] = {}
    top: dict[int, float] = {}  # each photo's best score, for one not paired with its keeper
    for p in kept:
        best[(p.a, p.b)] = p
        top[p.a] = max(top.get(p.a, p.score), p.score)
        top[p.b] = max(top.get(p.b, p.score), p.score)
    groups: list[CopyGroup] = []
    for indices in members.values():
        group_photos = [photos[i] for i in indices]
        if frozenset(p.path for p in group_photos) in not_duplicates:
            continue
        keeper_index = indices[group_photos.index(rule.choose(group_photos))]
        out = []
        for i in indices:
            if i == keeper_index:
                out.append(replace(photos[i], keep=True, score=1.0, transform=""))
                continue
            pair = best.get((keeper_index, i)) or best.get((i, keeper_index))
            score = pair.score if pair else top.get(i, threshold)
            transform = ""
            if pair is not None:
                transform = pair.transform if pair.a == keeper_index else _inverse(pair.transform)
            out.append(replace(photos[i], keep=False, score=score, transform=transform))
        out.sort(key=lambda p: (not p.keep, -p.score, str(p.path)))
        groups.append(CopyGroup(tuple(out)))
    groups.sort(key=lambda g: (-len(g.photos), -g.reclaimable_bytes, str(g.keeper.path)))
    return tuple(groups)


_INVERSES = {"rot90": "rot270", "rot270": "rot90"}


def _inverse(transform: str) -> str:
    """Rotations by 90 and 270 invert each other; every other symmetry is its own inverse."""
    return _INVERSES.get(transform, transform)
