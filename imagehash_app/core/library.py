"""The facade the CLI and the window share: open a library, index folders, search, report status.

A library is a folder (docs/ARCHITECTURE.md): catalog.sqlite3, models/, graph/, lock. One process writes
(it holds the lock); any number read (`read_only=True`) without the lock, thanks to SQLite's WAL.
The index generator works on its own catalogue connection, so the same `Library` can answer
searches from another thread while it indexes.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imagehash_app.core import decode_budget, health, training, versions
from imagehash_app.core.duplicates.report import (
    CopyGroup,
    CopyPhoto,
    DuplicateReport,
    KeeperRule,
)
from imagehash_app.core.duplicates.trash import TrashOutcome
from imagehash_app.core.errors import ImageDecodeError, ImagehashError, LibraryDamagedError
from imagehash_app.core.files import ExcludeRules, count_excluded, query_problem
from imagehash_app.core.images import IMAGE_SUFFIXES, load_rgb, make_thumbnail
from imagehash_app.core.indexer import Indexer, IndexProgress, StopFn
from imagehash_app.core.locking import LOCK_FILE, OWNER_FILE, WriterLock
from imagehash_app.core.method_compare import COMPARE_BUDGET_S, COMPARE_METHODS
from imagehash_app.core.reservoir import FEATURE_DTYPE, reservoir_remove, shrink_reservoir
from imagehash_app.core.settings import IDENTITY_FIELDS, LibrarySettings, default_library_dir
from imagehash_app.core.store import CATALOG_FILE, STATUSES, Catalog, ModelRow
from imagehash_app.core.store.duplicates import TrashedRow
from imagehash_app.core.stored_paths import b64, display
from imagehash_app.core.training import (
    DEFAULT_METHOD,
    FINETUNE_METHODS,
    SUPERVISED_METHODS,
    FinetunePlan,
    FinetuneProgress,
    FinetuneResult,
    ModelInfo,
)
from imagehash_app.core.versions import GRAPH_DIR, KEEP_MODELS, remove_orphans
from imagehash_app.core.weights_download import (  # the faces' way to the first-run download
    STALL_TIMEOUT_S,
    DownloadProgress,
    WeightsNeed,
    download_steps,
    weights_need,
)
from imagehash_app.core.words.results import (
    TextAnswer,
    TextResult,
    WordsFinetuneResult,
    WordsPlan,
)

if TYPE_CHECKING:
    from imagehash_app.core.backbone import Backbone
    from imagehash_app.core.hashing.base import Hasher
    from imagehash_app.core.query_model import QueryBackbone
    from imagehash_app.core.search import CandidateIndex

log = logging.getLogger(__name__)

# Queries embedded and searched together: one batch's features, candidates and responses are what
# a search holds at once, however many queries it is given. Searching all at once held 2 MB a query
# with mobilenet_v2 (2 000 queries peaked 4.4 GB above 20 on a 300-photo library).
QUERY_BATCH = 64
# Queries through the backbone at once: the network's working memory grows with its batch (ONNX
# Runtime, mobilenet_v2: about 18 MB a photo), and a search is a few photos, not an index run.
# With 8, 2 000 queries peaked 6 MB above 20 queries; with the library's batch size (32), 233 MB.
QUERY_EMBED_BATCH = 8
QUERY_CHECK_SIDE = 64  # pixels: enough of a decode to know a query is a photo (library empty)

# glibc's mallopt is MT-Unsafe (glibc manual: "MT-Unsafe init const:mallopt"): the mmap threshold
# of decode_budget.py is set here, while a face imports the engine on its main thread before any
# other thread runs, not at the first decode, which is the first search after a launch, beside the
# GUI, thumbnail and writer threads allocating (issue 14, item 3; tests/core/test_first_use.py).
decode_budget.return_large_buffers()

__all__ = [
    "CopyGroup", "CopyPhoto", "DuplicateReport", "KeeperRule", "TrashOutcome", "TrashedRow",
    "COMPARE_BUDGET_S", "COMPARE_METHODS", "DEFAULT_METHOD", "FINETUNE_METHODS", "SUPERVISED_METHODS", "IDENTITY_FIELDS", "IMAGE_SUFFIXES", "FinetunePlan", "FinetuneProgress",
    "FinetuneResult", "FolderInfo", "IndexProgress", "Library", "LibrarySettings", "LibraryStatus",
    "ModelInfo", "PhotoDetails", "TextAnswer", "TextResult", "WordsFinetuneResult", "WordsPlan", "QueryFailure", "SearchAnswer", "SearchResponse", "SearchResult",
    "b64", "backbone_names", "default_library_dir", "display", "make_thumbnail", "repair",
    "STALL_TIMEOUT_S", "DownloadProgress", "WeightsNeed", "download_steps", "weights_need",
]


@dataclass(frozen=True)
class FolderInfo:
    id: int
    path: Path
    indexed: int
    pending: int
    skipped: int
    online: bool
    offline: int = 0


@dataclass(frozen=True)
class SearchResult:
    """One library photo that looks like a query: its cosine score and Hamming distance."""

    path: Path
    score: float
    hamming: int
    # The calibrated copy score against the query (core/duplicates/score.py), where both have
    # a copy signature; the same in every library, unlike `score`.
    copy_score: float | None = None

    @property
    def is_copy(self) -> bool:
        """A copy of the query (re-encoded, resized, cropped a little, rotated, mirrored...)."""
        from imagehash_app.core.duplicates.score import DEFAULT_THRESHOLD

        return self.copy_score is not None and self.copy_score >= DEFAULT_THRESHOLD


@dataclass(frozen=True)
class SearchResponse:
    """The results of one query, best first, with the query's features: `Library.requery`
    answers another result count from them without reading the photo again."""

    query: Path
    results: list[SearchResult]
    features: np.ndarray | None = field(default=None, compare=False, repr=False)
    # The query photo itself when it is a photo of the library (it then comes first).
    query_in_library: Path | None = None
    signature: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PhotoDetails:
    """What a person looks for under a result: where it is, its pixel size, file size and date
    (the file's modification time), as the last index recorded them."""

    path: Path
    width: int | None
    height: int | None
    size: int
    modified: float  # seconds since the epoch


@dataclass(frozen=True)
class QueryFailure:
    """A query that could not be searched: not a photo file (missing, a folder, a FIFO: `reason`
    is then a whole sentence), or a file that could not be decoded (`decode`, `reason` a few
    words such as "not an image")."""

    path: Path
    reason: str
    decode: bool = False

    @property
    def message(self) -> str:
        """One sentence for a person."""
        if self.decode:
            return f"{display(self.path)} cannot be searched: {self.reason}."
        return self.reason

    def error(self) -> ImagehashError:
        """The failure as the error both faces' boundaries turn into a sentence."""
        if self.decode:
            return ImageDecodeError(self.reason, self.path)
        return ImagehashError(self.reason)


@dataclass(frozen=True)
class SearchAnswer(Sequence[SearchResponse]):
    """What `Library.search` gives both faces: a response per readable query (in the order
    given; it is a sequence of them) and a failure per query that could not be searched. One
    policy: a query's own problem never raises; the face decides (`check()` raises the first)."""

    responses: list[SearchResponse]
    failures: list[QueryFailure] = field(default_factory=list)

    def __getitem__(self, i):  # type: ignore[override]
        return self.responses[i]

    def __len__(self) -> int:
        return len(self.responses)

    def __iter__(self) -> Iterator[SearchResponse]:
        return iter(self.responses)

    def check(self) -> SearchAnswer:
        """Raise the first failure (ImagehashError, ImageDecodeError for an undecodable file)."""
        if self.failures:
            raise self.failures[0].error()
        return self


@dataclass
class LibraryStatus:
    """What `imagehash-app status` reports; `to_dict` is its --json form."""

    library: Path
    indexed: int
    pending: int
    skipped: int
    offline: int
    skipped_reasons: dict[str, int]
    backbone: str
    weights: str
    bits: int
    hasher: str  # which hasher answers and why, for a person
    model: dict[str, Any] | None
    reservoir: dict[str, Any]
    bytes_per_image: dict[str, float]
    disk_bytes: int
    folders: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # things the person should act on
    # folders the last scan could not list: {"path", "path_b64", "reason"}
    unreadable: list[dict[str, str]] = field(default_factory=list)
    set_aside: list[dict[str, Any]] = field(default_factory=list)  # hasher versions that broke
    # the person's marks on results: {"similar": n, "not_similar": m} (Library.mark_similar)
    marks: dict[str, int] = field(default_factory=dict)
    # the words photos carry: {"photos": n, "vocabulary": v, "top": [[word, n], ...],
    # "model": {"id", "note"} of the words version text queries use, or None}
    words: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["library"] = str(self.library)
        return out


@dataclass
class _SearchState:
    """What a search needs, loaded once per catalogue version."""

    token: tuple
    model: ModelRow
    hasher: Hasher
    ids: np.ndarray  # image id of each code position (sorted)
    index: CandidateIndex


@dataclass
class _StoredFeatures:
    """What a search ranks by before the library's first hasher exists: the real features the
    indexer stored for the photos indexed so far (the reservoir holds every one of them until the
    first hasher is trained, see core/indexer.py), L2-normalised, float16 as stored."""

    token: tuple
    ids: np.ndarray  # image id of each row (sorted)
    features: np.ndarray  # float16 (n, d), unit length


# Rows of stored features scored at once (float32 scratch: 4 096 x 1 280 floats, 20 MB).
_STORED_CHUNK = 4096


def library_exists(path: Path) -> bool:
    return (Path(path) / CATALOG_FILE).is_file()


PRIVATE_MODE = 0o700  # a library holds every photo's path and stored features: its user's only

# What a library folder may hold before its catalogue exists (a writer killed while creating it).
_CREATION_LEFTOVERS = frozenset({LOCK_FILE, OWNER_FILE, CATALOG_FILE + "-journal",
                                 CATALOG_FILE + "-wal", CATALOG_FILE + "-shm"})


def _library_location(path: Path | str | None) -> Path:
    """The library folder the caller means: the user's default when None; an empty string is
    refused (an unset shell variable would otherwise make it the current folder)."""
    if path is None:
        path = default_library_dir()
    if not str(path).strip():
        raise ImagehashError(
            "The library location is empty (an unset variable?). Name a folder, or leave "
            "--library out to use your default library."
        )
    return Path(path).expanduser().resolve()


def _prepare_location(path: Path) -> None:
    """Make sure a writer may use `path`: an existing library, or a new one created private
    (0700) where nothing is, or in an empty folder. Never anybody else's non-empty folder."""
    if library_exists(path):
        return
    if path.exists():
        if not path.is_dir():
            raise ImagehashError(
                f"{path} is a file, not a library folder. Choose a folder for the library."
            )
        others = sorted(p.name for p in path.iterdir() if p.name not in _CREATION_LEFTOVERS)
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise ImagehashError(
                f"{path} is not an imagehash-app library and is not empty ({shown}); nothing was "
                "changed. Choose a new or empty folder for a new library."
            )
    path.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_MODE)


def exposed_to_others(path: Path) -> bool:
    """Whether other users of the computer can read into the library (it holds every photo's path
    and stored features): any group or other permission bit on its folder."""
    try:
        return bool(stat.S_IMODE(Path(path).stat().st_mode) & 0o077)
    except OSError:
        return False


class Library:
    """An open library. Use `Library.open`; close it (or use it as a context manager)."""

    def __init__(self, path: Path, cat: Catalog, lock: WriterLock | None) -> None:
        self.path = path
        self._cat = cat
        self._lock = lock
        self._mutex = threading.RLock()  # guards self._cat and the caches
        self._backbone = None
        self._query_model = None  # query_model.QueryBackbone, False: none usable, None: not tried
        self._backbone_lock = threading.Lock()
        self._search_state: _SearchState | _StoredFeatures | None = None
        self._persist_graph = False  # warm_search: a reader that may save the graph it built
        self.settings = LibrarySettings.from_dict(cat.settings_doc() or {})

    # --- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: Path | None = None, *, read_only: bool = False,
        settings: LibrarySettings | None = None,
    ) -> Library:
        """Open the library at `path` (default: the user's), creating it when missing.

        Writers take the lock (LibraryLockedError if another process has it). `settings` are used
        at creation; for an existing library they must agree on backbone, weights and bits.
        """
        path = _library_location(path)
        if read_only:
            if path.exists() and not path.is_dir():
                raise ImagehashError(f"{path} is a file, not a library folder.")
            return cls(path, Catalog.open(path / CATALOG_FILE, read_only=True), None)
        with health.translated(path):
            _prepare_location(path)
            lock = WriterLock(path)
            try:
                lock.acquire()
            except OSError:  # taken, but its owner note could not be written (a full disk)
                lock.release()
                raise
        try:
            cat = Catalog.open(path / CATALOG_FILE)
            if not cat.has_settings():
                initial = _normalised(settings or LibrarySettings())
                initial.validate()
                with cat.transaction():
                    cat.set_settings_doc(initial.to_dict())
            lib = cls(path, cat, lock)
        except BaseException:
            lock.release()
            raise
        try:
            if settings is not None:
                lib.update_settings(**_differences(lib.settings, _normalised(settings)))
            remove_orphans(lib._cat, lib.path)
        except BaseException:
            lib.close()
            raise
        return lib

    def close(self) -> None:
        with self._mutex:
            self._cat.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def read_only(self) -> bool:
        return self._lock is None

    def _require_writer(self) -> None:
        if self.read_only:
            raise ImagehashError("This library is open read-only; open it for writing to change it.")

    # --- settings ------------------------------------------------------------------------------
    def update_settings(self, **changes: Any) -> None:
        """Change settings; backbone, weights and bits only while nothing is indexed yet."""
        self._require_writer()
        names = {f.name for f in dataclasses.fields(LibrarySettings)}
        unknown = set(changes) - names
        if unknown:
            raise ImagehashError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        new = _normalised(dataclasses.replace(self.settings, **changes))
        new.validate()
        ExcludeRules(new.exclude_patterns)  # a pattern that is not valid says so, before it is kept
        with self._mutex:
            fixed = [k for k in IDENTITY_FIELDS if getattr(new, k) != getattr(self.settings, k)]
            if fixed and (self._cat.population() or self._cat.models()):
                was = ", ".join(f"{k} {getattr(self.settings, k)}" for k in fixed)
                raise ImagehashError(
                    f"The library at {self.path} was created with {was}; these cannot change once "
                    "photos are indexed. Leave the option out to keep using them, or make a new "
                    "library for the other choice: imagehash-app --library OTHER_DIR index PATH"
                )
            with self._cat.transaction():
                if fixed:  # nothing indexed: forget which weights an earlier run loaded
                    self._cat.forget_weights_id()
                if new.reservoir_size < self.settings.reservoir_size:
                    shrink_reservoir(self._cat, new.reservoir_size, new.seed)
                self._cat.set_settings_doc(new.to_dict())
            self.settings = new
            if "device" in changes or "threads" in changes or fixed:
                self._backbone = None
                self._query_model = None

    # --- folders -------------------------------------------------------------------------------
    def folders(self) -> list[FolderInfo]:
        with self._mutex:
            counts = self._cat.folder_counts()
            out = []
            for f in self._cat.folders():
                c = counts.get(f.id, dict.fromkeys(STATUSES, 0))
                out.append(FolderInfo(
                    f.id, f.path, c["indexed"], c["pending"], c["skipped"], f.path.is_dir(),
                    c["offline"],
                ))
            return out

    def details(self, paths: Sequence[Path]) -> dict[Path, PhotoDetails]:
        """Recorded details of library photos (results), by path; photos not in it are left out."""
        out: dict[Path, PhotoDetails] = {}
        with self._mutex:
            for path in dict.fromkeys(Path(p) for p in paths):
                facts = self._cat.photo_facts(path)
                if facts is not None:
                    width, height, size, mtime_ns = facts
                    out[path] = PhotoDetails(path, width, height, int(size or 0), (mtime_ns or 0) / 1e9)
        return out

    def count_excluded(self, patterns: Sequence[str]) -> tuple[int, int]:
        """(photos `patterns` would leave out, photos in the library's reachable folders): the
        live count the Preferences dialog shows while patterns are typed (no writes)."""
        ExcludeRules(patterns)  # not valid: raises, in words
        with self._mutex:
            roots = [f.path for f in self._cat.folders()]
        out, total = 0, 0
        for root in roots:
            if root.is_dir():
                left_out, everything = count_excluded(root, patterns)
                out, total = out + left_out, total + everything
        return out, total

    def add_folder(self, path: Path) -> FolderInfo:
        """Remember a folder. A folder inside a known one is already covered; a folder that
        contains known ones absorbs them (their photos keep their codes)."""
        return self._folder_info(self._remember_folder(path))

    def _remember_folder(self, path: Path) -> Path:
        """Add `path` (see `add_folder`); the library folder that covers it now."""
        self._require_writer()
        path = Path(path).expanduser().resolve()
        if not path.is_dir():
            raise ImagehashError(f"{path} is not a folder (or is not reachable now).")
        with self._mutex:
            for f in self._cat.folders():
                if path == f.path or path.is_relative_to(f.path):
                    return f.path
            with self._cat.transaction():
                row = self._cat.add_folder(path)
                for f in self._cat.folders():
                    if f.id != row.id and f.path.is_relative_to(path):
                        prefix = f.path.relative_to(path).as_posix() + "/"
                        self._cat.move_folder_images(f.id, row.id, prefix)
                        self._cat.delete_folder(f.id)
            return row.path

    def _folder_info(self, path: Path) -> FolderInfo:
        return next(f for f in self.folders() if f.path == path)

    def remove_folder(self, path: Path) -> None:
        """Forget a folder and its photos (their features leave the reservoir too)."""
        self._require_writer()
        path = Path(path).expanduser().resolve()
        with self._mutex:
            row = self._cat.folder_by_path(path)
            if row is None:
                known = ", ".join(str(f.path) for f in self._cat.folders()) or "none"
                raise ImagehashError(f"{path} is not a folder of this library (folders: {known}).")
            with self._cat.transaction():
                ids = self._cat.folder_image_ids(row.id)
                reservoir_remove(self._cat, ids)
                self._cat.delete_folder(row.id)

    # --- indexing ------------------------------------------------------------------------------
    def index(
        self, paths: Sequence[Path] | None = None, *, should_stop: StopFn | None = None
    ) -> Iterator[IndexProgress]:
        """Add `paths` as folders (if given) and bring them — or all folders — up to date."""
        self._require_writer()
        targets = [self._remember_folder(p) for p in paths] if paths else None
        return self._index(targets, should_stop)

    def update(
        self, folders: Sequence[Path] | None = None, *, should_stop: StopFn | None = None
    ) -> Iterator[IndexProgress]:
        """Bring folders the library already has — the ones holding `folders`, or all — up to
        date, adding none: the window adds a folder once, then updates it. A path in no folder of
        the library (one removed while a watcher's update waited) is passed over."""
        self._require_writer()
        if folders is None:
            return self._index(None, should_stop)
        with self._mutex:
            known = self._cat.folders()
        targets = []
        for p in folders:
            p = Path(p).expanduser().resolve()
            row = next((f for f in known if p == f.path or p.is_relative_to(f.path)), None)
            if row is not None:
                targets.append(row.path)
        return self._index(targets, should_stop)

    def _index(
        self, targets: list[Path] | None, should_stop: StopFn | None
    ) -> Iterator[IndexProgress]:
        with health.translated(self.path):
            cat = Catalog.open(self.path / CATALOG_FILE)
            try:
                before = cat.total_changes
                health.drop_broken_rows(cat)
                aside = len(versions.set_aside_records(cat))
                versions.usable_model(cat, self.path, _load_model(self.path), writable=True)
                for m in versions.set_aside_records(cat)[aside:]:
                    yield IndexProgress("scan", 0, 0, message=(
                        f"Set aside hasher {m['dir']}, which cannot be loaded (kept as "
                        f"{m['kept_as'] or 'nothing'}); the library goes on without it."
                    ))
                wanted = set(targets) if targets is not None else None
                folders = [f for f in cat.folders() if wanted is None or f.path in wanted]
                indexer = Indexer(cat, self.path, self.settings, self.backbone, should_stop)
                for event in indexer.run(folders):
                    if event.phase == "done":
                        yield from self._read_words(cat, should_stop)
                    yield event
                self._ensure_query_record()
                if cat.total_changes != before or not (self.path / health.BACKUP_FILE).exists():
                    health.make_backup(cat.conn, self.path)
            finally:
                cat.close()

    def _read_words(self, cat: Catalog, should_stop: StopFn | None) -> Iterator[IndexProgress]:
        """Read the words of photos not read at their current path and mtime, then give photos
        new since the words version was trained their image-side code."""
        from imagehash_app.core.words import crossmodal
        from imagehash_app.core.words.reading import read_words

        for done, total, elapsed in read_words(cat, should_stop):
            rate = done / max(elapsed, 1e-9)
            yield IndexProgress("words", done, total, rate, (total - done) / rate if rate else None)
        if cat.active_word_model() is not None:
            usable = versions.usable_model(cat, self.path, _load_model(self.path), writable=True)
            if usable is not None:
                crossmodal.encode_missing(cat, self.path, usable[1], usable[0])

    def backbone(self) -> Backbone:
        """The library's backbone, loaded once and shared by indexing and search."""
        with self._backbone_lock:
            if self._backbone is None:
                from imagehash_app.core.backbone import load_backbone

                s = self.settings
                try:
                    self._backbone = load_backbone(
                        s.backbone, s.weights, s.device, threads=s.threads
                    )
                except ValueError as exc:  # unknown backbone name and the like
                    raise ImagehashError(str(exc)) from exc
                if not self.read_only:
                    self._record_query_model(self._backbone)
            return self._backbone

    def _record_query_model(self, backbone: Backbone) -> None:
        """Keep what a query needs to run the export just checked without PyTorch (a writer,
        once per export: `core/query_model.py`)."""
        from imagehash_app.core import query_model

        try:
            record = query_model.make_record(backbone)
        except OSError as exc:  # the export vanished meanwhile: queries use PyTorch
            log.warning("could not record the ONNX export for queries: %s", exc)
            return
        with self._mutex:
            if record is None or query_model.parse_record(
                self._cat.get_json(query_model.RECORD_KEY)
            ) == record:
                return
            with health.translated(self.path), self._cat.transaction():
                self._cat.set_json(query_model.RECORD_KEY, dataclasses.asdict(record))

    def _ensure_query_record(self) -> None:
        """After an index run that loaded no backbone (nothing new), record the checked export
        if the catalogue has none that a query could use (a library indexed before records were
        kept, a cache emptied, an upgrade): once, so that later queries skip PyTorch."""
        from imagehash_app.core import query_model

        s = self.settings
        if self._backbone is not None or s.device not in ("auto", "cpu"):
            return
        if s.device == "auto" and query_model.gpu_may_be_present():
            return
        with self._mutex:
            record = query_model.parse_record(self._cat.get_json(query_model.RECORD_KEY))
            weights_id = self._cat.weights_id()
        if weights_id is None:  # nothing embedded yet: no backbone to load
            return
        if query_model.why_not(record, backbone=s.backbone, device=s.device, weights_id=weights_id):
            self.backbone()  # records it (a backbone that has no export records nothing)

    def warm_search(self, *, persist_graph: bool = False) -> None:
        """Load what the first search needs (the query backbone run once, the codes, the graph,
        the hasher's decoder) so that it answers at once: the window calls this from a worker
        thread right after it shows. Errors are left for the search itself to report.
        `persist_graph`: a reader in the process that holds the library's lock (the window's)
        may save a graph it had to build, so that the next launch loads it instead."""
        self._persist_graph = persist_graph
        with self._mutex:
            empty = self._cat.population() == 0
        if empty or weights_need(self.settings.backbone, self.settings.weights) is not None:
            return  # nothing to search yet, or the model is not here: never a download at launch
        backbone = self.query_backbone()
        backbone.embed_pixels(np.zeros((1, backbone.input_size, backbone.input_size, 3), np.uint8))
        with self._mutex, health.translated(self.path):
            state = self._state()
            if isinstance(state, _SearchState) and len(state.ids):  # (stored features: loaded)
                state.index.candidates(state.index.codes[:1], 10)  # pages the graph in
                state.hasher.decode(state.index.codes[:1])
                state.hasher.encode(np.zeros((1, state.hasher.feature_dim), np.float32))

    def query_backbone(self) -> Backbone | QueryBackbone:
        """What embeds query photos: the backbone when it is loaded (indexing), else the export
        recorded by the last writer in ONNX Runtime alone (no PyTorch: a cold query costs little
        more than Python's start), else the backbone built in PyTorch."""
        with self._backbone_lock:
            if self._backbone is not None:
                return self._backbone
            if self._query_model is None:
                self._query_model = self._load_query_model()
            if self._query_model is not False:
                return self._query_model
        return self.backbone()

    def _load_query_model(self) -> QueryBackbone | bool:
        """The torch-free query backbone, or False (with the reason logged) when there is none."""
        from imagehash_app.core import query_model

        s = self.settings
        with self._mutex:
            record = query_model.parse_record(self._cat.get_json(query_model.RECORD_KEY))
            weights_id = self._cat.weights_id()
        reason = query_model.why_not(
            record, backbone=s.backbone, device=s.device, weights_id=weights_id
        )
        if reason is None:
            try:
                return query_model.load(record, s.threads)
            except Exception as exc:  # ONNX Runtime refused the file: PyTorch still can
                reason = f"ONNX Runtime could not load it ({exc})"
        log.info("queries use the PyTorch backbone: %s", reason)
        return False

    # --- search --------------------------------------------------------------------------------
    def embed(
        self, images: Sequence[Path]
    ) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
        """Features of query images with the library's backbone: (features of the readable ones,
        their resolved paths, [(path, reason)] for the others)."""
        return self._embed([Path(p).expanduser().resolve() for p in images])

    def _embed(
        self, paths: Sequence[Path]
    ) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
        features, ok, failures, _ = self._embed_with_signatures(paths)
        return features, ok, failures

    def _embed_with_signatures(
        self, paths: Sequence[Path]
    ) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]], list[bytes]]:
        """`_embed`, plus each readable query's copy signature (made from the same decode)."""
        from imagehash_app.core.embedding import iter_embeddings

        backbone = self.query_backbone()
        feats: list[np.ndarray] = [np.zeros((0, backbone.feature_dim), np.float32)]
        ok: list[Path] = []
        failures: list[tuple[Path, str]] = []
        signatures: list[bytes] = []
        batch_size = max(1, min(len(paths), self.settings.batch_size, QUERY_EMBED_BATCH))
        # In this process: a query must not wait behind an index run's photos in the decode pool.
        for batch in iter_embeddings(
            paths, backbone, batch_size=batch_size, workers=1, processes=False
        ):
            feats.append(batch.features)
            ok += batch.paths
            failures += batch.failures
            signatures += [f.signature for f in batch.facts]
        return np.concatenate(feats), ok, failures, signatures

    def search(self, images: Sequence[Path], top_k: int = 20) -> SearchAnswer:
        """Photos of the library that look like each query image, best first; a query that is
        itself a library photo comes back first. Queries that cannot be searched come back as
        failures (never raised here): the command line stops on the first, the window reports
        them and shows the others' results."""
        queries, paths, failures = _checked_queries(images)
        responses: list[SearchResponse] = []
        for answer in self._search_batches(paths, top_k):
            responses += answer.responses
            failures += answer.failures
        if len(failures) > 1:  # in the order the queries were given
            rank = {q: i for i, q in reversed(list(enumerate(queries)))}
            failures.sort(key=lambda f: rank[f.path])
        return SearchAnswer(responses, failures)

    def iter_search(self, images: Sequence[Path], top_k: int = 20) -> Iterator[SearchAnswer]:
        """`search`, streamed: the answer for each `QUERY_BATCH` queries as soon as it is ready,
        so that memory does not grow with the number of queries. Every path is checked first:
        when some are not photo files (a folder, a FIFO, a missing file) the first answer holds
        only those failures, before any photo is read."""
        _, paths, failures = _checked_queries(images)
        if failures:
            yield SearchAnswer([], failures)
        yield from self._search_batches(paths, top_k)

    def requery(self, answer: SearchAnswer, top_k: int) -> SearchAnswer:
        """The same queries at another result count, from the features the answer kept (no photo
        read, no backbone run); its failures stay as they were."""
        kept = [r for r in answer.responses if r.features is not None]
        hits = self._search_features(
            np.stack([r.features for r in kept]), top_k, [r.query for r in kept],
            [r.signature for r in kept],
        ) if kept else []
        again = {r.query: r for r in self.search(
            [r.query for r in answer.responses if r.features is None], top_k  # no features kept
        )}
        found = {
            r.query: SearchResponse(r.query, h, r.features, r.query_in_library, r.signature)
            for r, h in zip(kept, hits, strict=True)
        }
        responses = [found.get(r.query) or again[r.query] for r in answer.responses]
        return SearchAnswer(responses, list(answer.failures))

    def _search_batches(self, paths: Sequence[Path], top_k: int) -> Iterator[SearchAnswer]:
        """Embed and search `QUERY_BATCH` queries at a time (checked, resolved paths)."""
        if not paths:
            return
        searchable = self._searchable()
        for start in range(0, len(paths), QUERY_BATCH):
            batch = paths[start : start + QUERY_BATCH]
            if not searchable:  # nothing to compare with: no backbone run (nor download), but
                yield _unanswered(batch)  # a photo that cannot be read still says so
                continue
            features, ok, failed, signatures = self._embed_with_signatures(batch)
            hits = self._search_features(features, top_k, ok, signatures)
            with self._mutex:
                own = [q if self._cat.image_id_for(q) is not None else None for q in ok]
            yield SearchAnswer(
                [SearchResponse(q, r, f, o, s) for q, r, f, o, s in
                 zip(ok, hits, features, own, signatures, strict=True)],
                [QueryFailure(p, reason, decode=True) for p, reason in failed],
            )

    def searched_photos(self) -> int:
        """How many photos the last search ranked (all the searchable photos at that moment:
        during the first index, those indexed so far)."""
        state = self._search_state
        return 0 if state is None else len(state.ids)

    def search_features(
        self, features: np.ndarray, top_k: int = 20, query_paths: Sequence[Path] | None = None
    ) -> list[list[SearchResult]]:
        """Search with features already embedded by this library's backbone (no backbone run).

        `query_paths`, when given, lets a query that is a library photo come first.
        """
        resolved = None if query_paths is None else [
            Path(p).expanduser().resolve() for p in query_paths
        ]
        return self._search_features(features, top_k, resolved)

    def _search_features(
        self, features: np.ndarray, top_k: int, query_paths: Sequence[Path] | None,
        signatures: Sequence[bytes | None] | None = None,
    ) -> list[list[SearchResult]]:
        features = np.atleast_2d(np.asarray(features, dtype=np.float32))
        out: list[list[SearchResult]] = []
        for start in range(0, len(features), QUERY_BATCH):  # bounded scratch per batch
            batch = features[start : start + QUERY_BATCH]
            with self._mutex:
                if query_paths is None:
                    own: list[int | None] = [None] * len(batch)
                else:
                    own = [
                        self._cat.image_id_for(p) for p in query_paths[start : start + QUERY_BATCH]
                    ]
                sigs = (
                    [None] * len(batch) if signatures is None
                    else list(signatures[start : start + QUERY_BATCH])
                )
                with health.translated(self.path):
                    out += self._search(batch, top_k, own, sigs)
        return out

    def _searchable(self) -> bool:
        with self._mutex:
            state = self._state()
            return state is not None and len(state.ids) > 0

    def _state(self) -> _SearchState | _StoredFeatures | None:
        """Codes, index and hasher of the active model (or, before the first hasher exists, the
        stored features of the photos indexed so far); reloaded when the catalogue changed."""
        token = self._cat.change_token()
        state = self._search_state
        if state is not None and state.token == token:
            return state
        model = self._cat.active_model()
        if model is None:
            self._search_state = self._stored_features(token)
            return self._search_state
        if isinstance(state, _StoredFeatures):
            state = None
        from imagehash_app.core.codes import words_for
        from imagehash_app.core.search import GRAPH_MAX_K, CandidateIndex

        if state is not None and state.model.id == model.id:
            hasher = state.hasher
        else:
            usable = versions.usable_model(
                self._cat, self.path, _load_query_model(self.path), writable=not self.read_only
            )
            if usable is None:
                raise LibraryDamagedError(
                    f"The hasher of the library at {self.path} cannot be loaded; run "
                    f"`imagehash-app --library {self.path} index` to set it aside and train a new one."
                )
            model, hasher = usable
            token = self._cat.change_token()
        ids, codes = self._cat.load_codes(model.id, words_for(model.bits))
        # Readers load a saved graph but never write one: a read-only command changes nothing.
        graph = self.path / GRAPH_DIR / f"{model.id}.hnsw"
        # A search asks for R = rerank_depth candidates at least, and the graph answers only up to
        # GRAPH_MAX_K: with a deeper R (the default 200) it would be built (12.5 min for 1 M codes
        # on 2 cores, docs/results-search.md) and never used. The scan answers then.
        method = "scan" if self.settings.rerank_depth > GRAPH_MAX_K else "auto"
        index = CandidateIndex(
            codes, model.bits, method, graph_path=graph,
            save_graph=not self.read_only or self._persist_graph,
        )
        self._search_state = _SearchState(token, model, hasher, ids, index)
        return self._search_state

    def _stored_features(self, token: tuple) -> _StoredFeatures | None:
        """The reservoir's features of indexed photos, normalised (None when it holds none)."""
        ids, feats = self._cat.load_reservoir()
        if len(ids) == 0:
            return None
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        unit = (feats / np.maximum(norms, 1e-12)).astype(FEATURE_DTYPE)
        return _StoredFeatures(token, ids, unit)

    def _search_stored(
        self, state: _StoredFeatures, features: np.ndarray, top_k: int, own: Sequence[int | None]
    ) -> list[list[SearchResult]]:
        """Exact cosine ranking over the stored features (no code yet: `hamming` is -1)."""
        if features.shape[1] != state.features.shape[1]:
            raise ImagehashError(
                f"Query features have {features.shape[1]} dimensions, the library's stored "
                f"features have {state.features.shape[1]}."
            )
        query = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        scores = np.concatenate([
            query @ state.features[lo : lo + _STORED_CHUNK].astype(np.float32).T
            for lo in range(0, len(state.ids), _STORED_CHUNK)
        ], axis=1)
        out = []
        for q, own_id in enumerate(own):
            row = scores[q]
            k = min(top_k, len(row))
            best = np.argpartition(-row, k - 1)[:k]
            order = [int(i) for i in best[np.lexsort((best, -row[best]))]]  # ties: by position
            pos = _position(state.ids, own_id)
            if pos is not None:  # the query is a library photo: it comes first
                order = [pos] + [i for i in order if i != pos][: k - 1]
            paths = self._cat.paths_of([int(state.ids[i]) for i in order])
            out.append([SearchResult(paths[int(state.ids[i])], float(row[i]), -1) for i in order])
        return out

    def _search(
        self, features: np.ndarray, top_k: int, own: Sequence[int | None],
        signatures: Sequence[bytes | None] | None = None,
    ) -> list[list[SearchResult]]:
        from imagehash_app.core.search import Hit, cosine_scores, two_stage_search

        state = self._state()
        if state is None or len(state.ids) == 0 or top_k < 1:
            return [[] for _ in range(len(features))]
        if isinstance(state, _StoredFeatures):
            return self._search_stored(state, features, top_k, own)
        hasher = state.hasher
        if features.shape[1] != hasher.feature_dim:
            raise ImagehashError(
                f"Query features have {features.shape[1]} dimensions, the library's hasher expects "
                f"{hasher.feature_dim}."
            )
        # Encode as library photos are encoded (from the float16-rounded feature), so that a query
        # which is a library photo gets exactly its stored code.
        query_codes = hasher.encode(features.astype(FEATURE_DTYPE).astype(np.float32))
        hits = two_stage_search(
            features, query_codes, state.index, hasher.decode, top_k, self.settings.rerank_depth
        )
        out = []
        for q, (row, own_id) in enumerate(zip(hits, own, strict=True)):
            pos = _position(state.ids, own_id)
            if pos is not None:  # the query is a library photo: it comes first
                mine = next((h for h in row if h.position == pos), None)
                if mine is None:
                    code = state.index.codes[pos : pos + 1]
                    score = float(cosine_scores(features[q : q + 1], hasher.decode(code)[None])[0, 0])
                    ham = int(np.bitwise_count(code[0] ^ query_codes[q]).sum())
                    mine = Hit(pos, score, ham)
                row = [mine] + [h for h in row if h.position != pos]
            signature = signatures[q] if signatures is not None else None
            if signature is None and own_id is not None:
                signature = self._cat.signatures_of([own_id]).get(own_id)
            copies, missed = self._copies(signature, q, features, query_codes, state, own_id, row)
            if missed:  # copies the codes missed (rotated, mirrored) go before the first result
                # that is not a copy, so that a short result list still shows them
                at = next((i for i, h in enumerate(row) if h.position != pos
                           and copies.get(h.position, 0.0) < _copy_threshold()), len(row))
                row = row[:at] + sorted(missed, key=lambda h: -copies[h.position]) + row[at:]
            row = row[:top_k]
            paths = self._cat.paths_of([int(state.ids[h.position]) for h in row])
            out.append([
                SearchResult(paths[int(state.ids[h.position])], h.score, h.hamming,
                             copies.get(h.position) if copies else None)
                for h in row
            ])
        return out

    def _copies(self, signature: bytes | None, q: int, features: np.ndarray,
                query_codes: np.ndarray, state: _SearchState, own_id: int | None,
                row: list) -> tuple[dict[int, float], list]:
        """Copy scores (by code position) of the results and of the library's copies of the query
        that the codes missed (a rotated or mirrored copy), and hits for those missed copies."""
        from imagehash_app.core.duplicates.engine import query_candidates
        from imagehash_app.core.duplicates.score import score_pairs
        from imagehash_app.core.search import Hit, cosine_scores

        if not signature:
            return {}, []
        copy_index = self._copy_index()
        positions = {h.position: h for h in row}
        ids = {int(state.ids[p]) for p in positions}
        ids.update(query_candidates(copy_index, signature))
        if own_id is not None:
            ids.discard(own_id)
        stored = self._cat.signatures_of(sorted(ids))
        scored = sorted(stored)
        if not scored:
            return {}, []
        scores, _ = score_pairs([signature] * len(scored), [stored[i] for i in scored])
        out: dict[int, float] = {}
        missed = []
        for image_id, s in zip(scored, scores, strict=True):
            pos = _position(state.ids, image_id)
            if pos is None:
                continue
            out[pos] = round(float(s), 4)
            if pos not in positions and s >= _copy_threshold():
                code = state.index.codes[pos : pos + 1]
                cos = float(cosine_scores(features[q : q + 1], state.hasher.decode(code)[None])[0, 0])
                missed.append(Hit(pos, cos, int(np.bitwise_count(code[0] ^ query_codes[q]).sum())))
        return out, missed

    def _copy_index(self):
        """The library's invariant vectors for copy candidates (engine.CopyIndex), made once per
        catalogue version."""
        from imagehash_app.core.duplicates.engine import CopyIndex

        token = self._cat.change_token()
        cached = getattr(self, "_copy_cache", None)
        if cached is None or cached[0] != token:
            rows = self._cat.copy_rows()
            cached = (token, CopyIndex.build([r.id for r in rows], [r.signature for r in rows]))
            self._copy_cache = cached
        return cached[1]

    # --- fine-tuning and hasher versions ----------------------------------------------------------
    def finetune_plan(
        self, *, epochs: int | None = None, from_scratch: bool = False,
        method: str = DEFAULT_METHOD, compare: Sequence[str] = (), budget_s: float | None = None,
    ) -> FinetunePlan:
        """What `finetune` would do and roughly how long it takes (no training, no writes)."""
        with health.translated(self.path):
            return training.plan(
                self.path, self.settings, epochs=epochs, from_scratch=from_scratch, method=method,
                compare=compare, budget_s=budget_s,
            )

    def finetune(
        self,
        *,
        epochs: int | None = None,
        from_scratch: bool = False,
        force: bool = False,
        keep: int = KEEP_MODELS,
        should_stop: StopFn | None = None,
        reencode: str = "exact",
        batch_size: int | None = None,
        method: str = DEFAULT_METHOD,
        compare: Sequence[str] = (),
        budget_s: float | None = None,
    ) -> Generator[FinetuneProgress, None, FinetuneResult]:
        """Train, compare and (if better, or `force`) activate a new hasher version, re-encoding
        the library with this library's backbone; see core/training.py for the lifecycle. A
        generator of progress that returns the `FinetuneResult`; searches keep answering meanwhile.
        `compare` (COMPARE_METHODS or some of them) trains each within `budget_s` and keeps the
        best on held-out photos instead of training `method`."""
        self._require_writer()
        return training.finetune(
            self.path, self.settings, self.backbone, epochs=epochs, from_scratch=from_scratch,
            force=force, keep=keep, should_stop=should_stop, reencode=reencode,
            batch_size=batch_size, method=method, compare=compare, budget_s=budget_s,
        )

    def models(self) -> list[ModelInfo]:
        """The kept hasher versions with their recorded figures, oldest first."""
        with health.translated(self.path):
            return training.list_models(self.path)

    def activate_model(self, model_id: int) -> ModelInfo:
        """Make a kept version answer searches: keep a fine-tune's result, or roll back to an
        earlier version, instantly."""
        self._require_writer()
        with health.translated(self.path):
            return training.activate_model(self.path, model_id)

    def finetune_suggestion(self) -> str | None:
        """A sentence for the person when the library grew enough since its hasher was trained."""
        with health.translated(self.path):
            return training.suggestion(self.path)

    # --- the person's marks on results ------------------------------------------------------------
    def mark_similar(self, query: Path, result: Path, similar: bool) -> None:
        """Record that `result` is ("More like this") or is not ("Not similar") like `query`; the
        supervised fine-tunes learn from these pairs. Both must be library photos: a query from
        outside the library has no stored feature to learn from, so it is refused in words (add
        its folder first). Marking a pair again replaces its mark."""
        self._require_writer()
        with self._mutex, health.translated(self.path):
            ids = []
            for what, path in (("query", query), ("result", result)):
                image_id = self._cat.image_id_for(Path(path).resolve())
                if image_id is None:
                    raise ImagehashError(
                        f"Only photos in the library can be marked, and the {what} "
                        f"{display(Path(path))} is not one; add its folder to the library first."
                    )
                ids.append(image_id)
            if ids[0] == ids[1]:
                raise ImagehashError("A photo cannot be marked against itself; pick another result.")
            with self._cat.transaction():
                self._cat.put_mark(ids[0], ids[1], bool(similar))

    def marks(self) -> list[tuple[Path, Path, bool]]:
        """The marked pairs as (photo, photo, similar), the pair's two photos in id order."""
        with self._mutex, health.translated(self.path):
            rows = self._cat.marks()
            paths = self._cat.paths_of([i for m in rows for i in (m.query_id, m.result_id)])
            return [
                (paths[m.query_id], paths[m.result_id], m.similar)
                for m in rows if m.query_id in paths and m.result_id in paths
            ]

    def mark_counts(self) -> dict[str, int]:
        """How many pairs the person marked: {"similar": n, "not_similar": m}."""
        with self._mutex, health.translated(self.path):
            return self._cat.mark_counts()

    # --- words ---------------------------------------------------------------------------------------
    def vocabulary(self, limit: int | None = None) -> list[tuple[str, int]]:
        """The words the library's photos carry with how many carry each, most carried first."""
        with self._mutex, health.translated(self.path):
            vocab = self._cat.vocabulary()
        return vocab if limit is None else vocab[:limit]

    def suggest_words(self, prefix: str, limit: int = 10) -> list[str]:
        """Words of the vocabulary starting with what is typed (its last word), most carried first."""
        from imagehash_app.core.words.tokens import words

        typed = words(prefix)
        if not typed or not prefix or not prefix[-1].isalnum():
            return []
        with self._mutex, health.translated(self.path):
            return [w for w, _ in self._cat.words_starting(typed[-1], limit)]

    def words_of(self, photo: Path) -> list[tuple[str, str]]:
        """[(word, source)] a library photo carries (source: folder, file, keyword, title, caption)."""
        with self._mutex, health.translated(self.path):
            image_id = self._cat.image_id_for(Path(photo).expanduser().resolve())
            return [] if image_id is None else self._cat.words_of([image_id]).get(image_id, [])

    def search_text(self, text: str, top_k: int = 20) -> TextAnswer:
        """Photos for typed words ("lisbon tram"), with and without those words: Hamming
        candidates from the text's UGACH code, re-ranked (core/words/crossmodal.py)."""
        from imagehash_app.core.words import crossmodal

        with self._mutex, health.translated(self.path):
            state = self._state()
            hasher, model = (state.hasher, state.model) if state is not None else (None, None)
            return crossmodal.search(self._cat, self.path, hasher, model, text, top_k)

    def suggest_keywords(self, photo: Path, limit: int = 10) -> list[tuple[str, float]]:
        """Words of the photo's neighbours in the shared words/photos space, with the share of
        those neighbours carrying each; empty until search by words has learnt."""
        from imagehash_app.core.words import crossmodal

        with self._mutex, health.translated(self.path):
            state = self._state()
            image_id = self._cat.image_id_for(Path(photo).expanduser().resolve())
            if state is None or image_id is None:
                return []
            return crossmodal.suggest_keywords(
                self._cat, self.path, state.hasher, state.model, image_id, limit
            )

    def words_finetune_plan(self) -> WordsPlan:
        """Whether search by words can learn (enough photos carry words), and why."""
        from imagehash_app.core.words import crossmodal

        with self._mutex, health.translated(self.path):
            return crossmodal.plan(self._cat)

    def finetune_words(
        self, *, epochs: int | None = None, should_stop: StopFn | None = None, seed: int = 0,
        adversarial: bool | None = None,
    ) -> Generator[FinetuneProgress, None, WordsFinetuneResult]:
        """Train a words (UGACH) version on the photos carrying words, inactive until
        `activate_words_model` keeps it; a generator of progress returning its figures.
        `adversarial=False` trains UGACH's ablation without the generator (None: the default,
        `crossmodal.ADVERSARIAL`)."""
        self._require_writer()
        return self._finetune_words(epochs, should_stop, seed, adversarial)

    def _finetune_words(
        self, epochs: int | None, should_stop: StopFn | None, seed: int, adversarial: bool | None
    ) -> Generator[FinetuneProgress, None, WordsFinetuneResult]:
        from imagehash_app.core.hashing.ugach import UGACHParams
        from imagehash_app.core.words import crossmodal

        with health.translated(self.path):
            cat = Catalog.open(self.path / CATALOG_FILE)
            try:
                usable = versions.usable_model(cat, self.path, _load_model(self.path), writable=True)
                if usable is None:
                    raise ImagehashError(
                        "Search by words needs the library's hasher first; run `imagehash-app index`."
                    )
                epochs = epochs or crossmodal.DEFAULT_EPOCHS
                if adversarial is None:
                    adversarial = crossmodal.ADVERSARIAL
                params = UGACHParams(
                    bits=self.settings.bits, seed=seed, adversarial=adversarial,
                    pretrain_epochs=max(1, epochs // 2), epochs=max(1, epochs - epochs // 2),
                )
                yield FinetuneProgress("prepare", 0, 0, message="reading the photos' words")
                run = crossmodal.finetune(
                    cat, self.path, usable[1], usable[0], params=params, should_stop=should_stop
                )
                while True:
                    try:
                        epoch, total, loss = next(run)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    yield FinetuneProgress("train", epoch, total, loss=loss)
                yield FinetuneProgress("done", 1, 1, message=crossmodal._note(
                    result.metrics, result.baseline_metrics))
                return result
            finally:
                cat.close()

    def activate_words_model(self, model_id: int | None) -> None:
        """Keep a words version (text queries use it) or roll back (None: no version)."""
        self._require_writer()
        from imagehash_app.core.words import crossmodal

        with self._mutex, health.translated(self.path):
            crossmodal.activate(self._cat, self.path, model_id)

    # --- duplicates (issue 15) --------------------------------------------------------------------
    def keeper_rule(self) -> KeeperRule:
        """The library's "keep the best copy" rule (settings: duplicate_keep)."""
        return KeeperRule.parse(self.settings.duplicate_keep)

    def reference_folders(self) -> list[Path]:
        """Folders whose photos are always kept and never touched (settings)."""
        return [Path(p) for p in self.settings.reference_folders]

    def duplicates(
        self,
        threshold: float | None = None,
        folders: Sequence[Path] | None = None,
        *,
        reference_folders: Sequence[Path] = (),
        rule: KeeperRule | None = None,
        floor: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> DuplicateReport:
        """Groups of copies among the library's photos (or those under `folders`), each with
        the photo to keep. Pairs scoring at least `floor` (default a little below `threshold`)
        are kept in the report so that `report.at(t)` regroups without searching again.
        `reference_folders` add to the library's own; `rule` replaces its keeper rule.
        Pairs marked "not duplicates" never come back. Works read-only too."""
        from imagehash_app.core.duplicates import library_ops
        from imagehash_app.core.duplicates.score import DEFAULT_THRESHOLD, default_floor

        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ImagehashError(f"The copy threshold is a score from 0 to 1, not {threshold}.")
        floor = default_floor(threshold) if floor is None else min(float(floor), threshold)
        references = [*self.reference_folders(), *_resolved(reference_folders)]
        with health.translated(self.path):
            return library_ops.find_duplicates(
                self._cat, threshold, floor,
                folders=None if folders is None else _resolved(folders),
                reference_folders=references, rule=rule or self.keeper_rule(),
                lock=self._mutex, progress=progress, cancel=cancel,
            )

    def mark_not_duplicates(self, paths: Sequence[Path]) -> None:
        """Remember that these photos are not copies of one another: their pairs never group
        again (kept in the library, across sessions)."""
        from imagehash_app.core.duplicates import library_ops

        self._require_writer()
        with self._mutex, health.translated(self.path):
            library_ops.mark_not_duplicates(self._cat, _resolved(paths))

    def trash(
        self,
        paths: Sequence[Path],
        *,
        trash_fn: Callable[[str], None] | None = None,
        keepers: Mapping[Path, Path] | None = None,
        reference_folders: Sequence[Path] = (),
    ) -> TrashOutcome:
        """Move library photos (a report's removable ones) to the system trash, one at a time:
        never a photo in a reference folder or one of `keepers`' values (path -> the copy kept in
        its place, recorded with it); a file changed since it was indexed only if it is still a
        copy of its keeper; each one recorded and removed from the catalogue as it goes; the
        first failure stops it, leaving the rest in place (`TrashOutcome.failed`, `.left`).
        `trash_fn` replaces Send2Trash (tests)."""
        from imagehash_app.core.duplicates import library_ops

        self._require_writer()
        with self._mutex, health.translated(self.path):
            return library_ops.trash(
                self._cat, _resolved(paths),
                keepers={Path(k).resolve(): Path(v).resolve() for k, v in (keepers or {}).items()},
                reference_folders=[*self.reference_folders(), *_resolved(reference_folders)],
                trash_fn=trash_fn,
            )

    def trashed(self) -> list[TrashedRow]:
        """Files moved to the trash from this library, oldest first: where each was, the copy
        kept in its place, its size and when."""
        with self._mutex, health.translated(self.path):
            return self._cat.trashed()

    # --- reports -------------------------------------------------------------------------------
    def skipped(self) -> list[tuple[Path, str]]:
        with self._mutex:
            return self._cat.skipped()

    def status(self) -> LibraryStatus:
        with self._mutex, health.translated(self.path):
            cat, s = self._cat, self.settings
            counts = cat.status_counts()
            model = cat.active_model()
            population = cat.population()
            sampled = cat.reservoir_count()
            disk = _disk_bytes(self.path)
            total = sum(counts.values())
            return LibraryStatus(
                library=self.path,
                indexed=counts["indexed"], pending=counts["pending"],
                skipped=counts["skipped"], offline=counts["offline"],
                skipped_reasons=cat.skipped_reasons(),
                backbone=s.backbone, weights=s.weights, bits=s.bits,
                hasher=_hasher_reason(model, population, s),
                model=None if model is None else {
                    "id": model.id, "method": model.method, "bits": model.bits,
                    "train_size": model.train_size, "created": model.created, "dir": model.dir,
                    "why": model.note,
                },
                reservoir={
                    "count": sampled, "capacity": s.reservoir_size, "bytes": cat.reservoir_bytes(),
                    "dtype": "float16",
                },
                bytes_per_image={
                    "code": s.bits / 8,
                    "on_disk": round(disk / total, 1) if total else 0.0,
                },
                disk_bytes=disk,
                folders=[
                    {"path": str(f.path), "path_b64": b64(f.path), "indexed": f.indexed,
                     "pending": f.pending, "skipped": f.skipped, "offline": f.offline,
                     "online": f.online}
                    for f in self.folders()
                ],
                warnings=self._warnings(),
                unreadable=[
                    {"path": str(p), "path_b64": b64(p), "reason": reason}
                    for p, reason in cat.unreadable()
                ],
                set_aside=versions.set_aside_records(cat),
                marks=cat.mark_counts(),
                words=self._words_status(cat),
            )

    def _words_status(self, cat: Catalog) -> dict[str, Any]:
        vocab = cat.vocabulary()
        active = cat.active_word_model()
        return {
            "photos": cat.photos_with_words(), "vocabulary": len(vocab),
            "top": [[w, n] for w, n in vocab[:10]],
            "model": None if active is None else {"id": active.id, "note": active.note},
        }

    def _warnings(self) -> list[str]:
        out = []
        if exposed_to_others(self.path):
            out.append(
                f"Other users of this computer can read this library (it holds every photo's "
                f"path); make it private with: chmod 700 {display(self.path)}"
            )
        return out

    def no_results_reason(self) -> str:
        """Why a search answers nothing, for a person: no photos yet, or no hasher yet."""
        with self._mutex:
            population = self._cat.population()
            if population == 0:
                return "the library has no indexed photos yet (imagehash-app index PATH adds some)"
            if self._cat.active_model() is None:
                return (
                    f"the library's {population:,} photos have no hasher yet; run "
                    "`imagehash-app index` to train it"
                )
            return "no photo of the library matched"


def backbone_names() -> list[str]:
    """The feature extractors a new library may use (the test-only "tiny" one left out)."""
    from imagehash_app.core.backbone import BACKBONES

    return [n for n in BACKBONES if n != "tiny"]


def repair(path: Path, *, restore_backup: bool) -> tuple[Path, list[str]]:
    """Mend the damaged catalogue of the library at `path`, holding its lock: put the last backup
    back, or start a new catalogue with the same folders and settings (index it again then).
    Returns where the damaged catalogue is kept and, for a rebuild, the folders kept."""
    path = Path(path)
    if not path.is_dir() or not any(
        (path / name).exists() for name in (health.CATALOG_FILE, health.BACKUP_FILE)
    ):
        raise ImagehashError(f"There is no library at {path} to repair; check --library.")
    lock = WriterLock(path)
    lock.acquire()
    try:
        with health.translated(path):
            if restore_backup:
                return health.restore_backup(path), []
            return health.rebuild_catalog(path)
    finally:
        lock.release()


def _unanswered(paths: Sequence[Path]) -> SearchAnswer:
    """Empty responses for queries a library without codes cannot answer; the files are decoded
    (small, no backbone) so that one that is not a photo is a failure as it is elsewhere."""
    responses, failures = [], []
    for p in paths:
        try:
            load_rgb(p, min_side=QUERY_CHECK_SIDE)
        except ImageDecodeError as exc:
            failures.append(QueryFailure(p, exc.reason, decode=True))
        else:
            responses.append(SearchResponse(p, []))
    return SearchAnswer(responses, failures)


def _checked_queries(
    images: Sequence[Path],
) -> tuple[list[Path], list[Path], list[QueryFailure]]:
    """Every query resolved (once), those that are photo files, and a failure for each other one
    (only a stat: opening a FIFO or a device could hang)."""
    queries = [Path(image).expanduser().resolve() for image in images]
    paths: list[Path] = []
    failures: list[QueryFailure] = []
    for p in queries:
        problem = query_problem(p)
        if problem:
            failures.append(QueryFailure(p, problem))
        else:
            paths.append(p)
    return queries, paths, failures


def _load_model(root: Path) -> Callable[[ModelRow], Hasher]:
    """Loader of a registered hasher version, for `versions.usable_model`."""
    return lambda m: versions.load_version(root, m)


def _load_query_model(root: Path) -> Callable[[ModelRow], Hasher]:
    """Loader of a version's query side (encoder, decoder; no PyTorch where it can), for searches."""
    return lambda m: versions.load_query_version(root, m)


def _copy_threshold() -> float:
    from imagehash_app.core.duplicates.score import DEFAULT_THRESHOLD

    return DEFAULT_THRESHOLD


def _resolved(paths: Sequence[Path]) -> list[Path]:
    return [Path(p).expanduser().resolve() for p in paths]


def _position(ids: np.ndarray, image_id: int | None) -> int | None:
    if image_id is None:
        return None
    pos = int(np.searchsorted(ids, image_id))
    return pos if pos < len(ids) and ids[pos] == image_id else None


def _hasher_reason(model: ModelRow | None, population: int, s: LibrarySettings) -> str:
    if model is None:
        return "none yet: index photos to train one" if population == 0 else (
            "none yet: run index again to train it"
        )
    if model.method == "itq" and model.train_size < s.train_min:
        return (
            f"itq: fallback until {s.train_min:,} photos are indexed ({population:,} now)"
        )
    return f"{model.method} trained on {model.train_size:,} photos"


def _normalised(settings: LibrarySettings) -> LibrarySettings:
    """A weights file is stored as an absolute path and must exist."""
    w = settings.weights
    if w in ("auto", "none"):
        return settings
    path = Path(w).expanduser().resolve()
    if not path.is_file():
        raise ImagehashError(
            f"Weights file {w} not found. Pass a local state dict (e.g. --weights "
            "mobilenet_v2-imagenet.pth) or leave --weights out to use torchvision's pretrained weights."
        )
    return dataclasses.replace(settings, weights=str(path))


def _differences(old: LibrarySettings, new: LibrarySettings) -> dict[str, Any]:
    return {
        f.name: getattr(new, f.name)
        for f in dataclasses.fields(LibrarySettings)
        if getattr(new, f.name) != getattr(old, f.name)
    }


def _disk_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total
