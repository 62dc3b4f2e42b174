"""Incremental indexing as a generator of progress events, and the hasher's lifecycle.

Phases: scan (walk folders, diff against the catalogue), embed (decode + backbone; every batch is
one transaction: image rows, reservoir features and codes), then train/encode when the hasher is
due. A kill leaves the catalogue as of the last committed batch; the next run picks up the images
still 'pending'.

Hasher policy. Only the reservoir keeps real features, so a hasher can be (re)fit and every image
re-encoded *exactly* only while the reservoir still holds every indexed image (the library never
outgrew `reservoir_size`). Below `train_min` photos the hasher is PCA-ITQ (training URPH on a handful
of photos means nothing), refit at the end of each run that changed the library; at `train_min` URPH
is trained, and again whenever the library has grown 4x since, while the reservoir holds it all.
Past that, new photos are encoded with the active model; fine-tuning is a separate action.

A training due in the middle of a run happens beside it while embedding goes on: on a thread, or,
when it trains on the library's GPU, in a process of its own started ahead (hashing/fit_process.py);
photos embedded meanwhile get their codes of the new version from the reservoir when it is
switched in. Training never lets the reservoir drop a photo before the new
version has coded it: the run waits for the fit first.

A kill never changes the answers: a resumed run ends with the same versions, codes and results as
a run never interrupted. Photos are embedded in id order, in batches counted from the first
pending one, so a resumed run's batches are the uninterrupted run's remaining ones, and the
policy is asked at the same points (also before the first batch, in case a kill came between a
batch and its decision). A fit that falls due is recorded (`PENDING_FIT_KEY`: method, the exact
reservoir snapshot, the version's name) before it starts, and a resumed run trains that one first,
not one on the larger library it then sees. When a fit beside the run is still going where its own
version would already be due for retraining, the run waits for it, so that when a fit ends (a
matter of timing) never changes what is trained next. `tests/core/test_resume.py` kills the
process at each point; `benchmarks/sweep_kill.py` does it at random ones.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imagehash_app.core import versions
from imagehash_app.core.errors import CancelledError, IncompatibleModelError
from imagehash_app.core.files import (
    FileInfo,
    KnownFile,
    diff_scan,
    folder_error_reason,
    walk_images,
)
from imagehash_app.core.hashing import METHODS
from imagehash_app.core.hashing.base import FitThread, Hasher
from imagehash_app.core.hashing.fit_process import FitProcess
from imagehash_app.core.kill_points import kill_point
from imagehash_app.core.reservoir import (
    FEATURE_DTYPE,
    changed_since_fit,
    clear_changed,
    reservoir_add,
    reservoir_remove,
)
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.core.store import Catalog, FolderRow, ModelRow
from imagehash_app.core.stored_paths import StoredPath, display, to_db
from imagehash_app.core.versions import (
    FINETUNE_PENDING_KEY,
    KEEP_MODELS,
    MODELS_DIR,
    is_version_name,
)

if TYPE_CHECKING:
    from imagehash_app.core.backbone import Backbone
    from imagehash_app.core.embedding import EmbeddedBatch

StopFn = Callable[[], bool]
HasherState = tuple[ModelRow, Hasher] | None  # the active version and its hasher, when there is one
GROWTH_FACTOR = 4  # retrain when the library has grown this much since the last training
SCAN_REPORT_EVERY = 0.5  # seconds between scan progress events
SIGNATURE_MIN_SIDE = 64  # decode size for a signature made after indexing (SIDE is 32)
SIGNATURE_BATCH = 64  # photos per transaction when signatures are filled in
PENDING_FIT_KEY = "fit_pending"  # meta key (JSON): a fit that fell due, until its version is active


@dataclass(frozen=True)
class IndexProgress:
    """One progress event: `done` of `total` in `phase` (total 0 = not known yet)."""

    phase: str  # "scan" | "embed" | "train" | "encode" | "signatures" | "done"
    done: int
    total: int
    rate: float = 0.0  # per second
    eta_s: float | None = None
    message: str = ""


def _progress(phase: str, done: int, total: int, started: float, message: str = "") -> IndexProgress:
    elapsed = max(time.perf_counter() - started, 1e-9)
    rate = done / elapsed
    eta = (total - done) / rate if rate > 0 and total >= done else None
    return IndexProgress(phase, done, total, rate, eta, message)


def plan_training(
    population: int,
    sampled: int,
    active: ModelRow | None,
    settings: LibrarySettings,
    *,
    end_of_run: bool,
    changed: bool,
    upcoming: int = 0,
) -> tuple[str, str] | None:
    """Whether to (re)train now: (method, why) or None. Pure, so the policy is testable alone.

    population: images embedded so far; sampled: of those, kept in the reservoir; upcoming: images
    still to embed in this run (a library with no model must train before the reservoir drops any).
    """
    if population == 0 or sampled == 0:
        return None
    complete = sampled >= population
    urph = population >= settings.train_min
    method = "urph" if urph else "itq"
    if active is None:
        due = (
            not complete
            or end_of_run
            or urph
            or population + upcoming > settings.reservoir_size
        )
        return (method, "first hasher of the library") if due else None
    if not complete:
        return None
    if active.train_size < settings.train_min:  # the PCA-ITQ fallback
        if urph:
            return method, f"library reached {settings.train_min} photos"
        if end_of_run and changed:
            return method, "library changed"
        return None
    if population >= GROWTH_FACTOR * active.train_size:
        return method, f"library grew {population / active.train_size:.1f}x since the last training"
    return None


@dataclass
class _Fit:
    """A hasher version being trained on a snapshot of the reservoir (`ids`) beside the run; the
    job returns the fitted hasher and the snapshot's codes. `name`: its folder under models/."""

    method: str
    why: str
    ids: np.ndarray
    job: FitThread | FitProcess
    name: str

    def due_after(
        self, population: int, sampled: int, settings: LibrarySettings, upcoming: int
    ) -> bool:
        """Whether the policy would retrain with this version already active: then the run
        waits for it, so that how long it took never changes the next decision."""
        version = ModelRow(0, self.method, settings.bits, "", "", 0.0, True, "", len(self.ids), "")
        return plan_training(
            population, sampled, version, settings, end_of_run=False, changed=False,
            upcoming=upcoming,
        ) is not None


class Indexer:
    """Brings a catalogue up to date with its folders. Uses its own catalogue connection."""

    # Where a fit that runs beside embedding goes: None: a process of its own when it trains on a
    # GPU (see hashing/fit_process.py), else a thread. Fits the run waits for stay on a thread.
    fit_in_process: bool | None = None

    def __init__(
        self,
        cat: Catalog,
        root: Path,
        settings: LibrarySettings,
        get_backbone: Callable[[], Backbone],
        should_stop: StopFn | None = None,
    ) -> None:
        self.cat = cat
        self.root = Path(root)
        self.settings = settings
        self.get_backbone = get_backbone
        self.should_stop = should_stop
        self._spare_fit: FitProcess | None = None  # started ahead, waiting for its job

    def _stopping(self) -> bool:
        return bool(self.should_stop and self.should_stop())

    @property
    def changed(self) -> bool:
        """Photos were embedded or removed since the last fit: the ITQ fallback is refit."""
        return changed_since_fit(self.cat)

    # --- the whole run -------------------------------------------------------------------------
    def run(self, folders: Sequence[FolderRow]) -> Iterator[IndexProgress]:
        started = time.perf_counter()
        yield from self.scan(folders)
        kill_point("scanned")
        if self._stopping():
            yield IndexProgress("done", 0, 0, message="Stopped during the scan.")
            return
        try:
            embedded = yield from self.embed()
            if not self._stopping():
                yield from self.maybe_train(end_of_run=True, upcoming=0)
                yield from self.encode_missing()
            if not self._stopping():
                yield from self.fill_signatures()
        except CancelledError:
            embedded = None
        if self._stopping() or embedded is None:
            left = self.cat.status_counts()["pending"]
            yield IndexProgress("done", 0, 0, message=f"Stopped; {left} photos left to index.")
            return
        counts = self.cat.status_counts()
        elapsed = time.perf_counter() - started
        yield IndexProgress(
            "done", embedded, embedded, embedded / max(elapsed, 1e-9), 0.0,
            f"{counts['indexed']} indexed, {counts['skipped']} skipped, "
            f"{counts['offline']} offline ({embedded} embedded in {elapsed:.1f} s).",
        )

    # --- scan ----------------------------------------------------------------------------------
    def scan(self, folders: Sequence[FolderRow]) -> Iterator[IndexProgress]:
        """Walk the online folders, mark offline ones, and apply the diff in one transaction."""
        started = time.perf_counter()
        online = [f for f in folders if f.path.is_dir()]
        offline = [f for f in folders if not f.path.is_dir()]
        with self.cat.transaction():
            for f in offline:
                self.cat.mark_folder_offline(f.id)
            for f in online:
                self.cat.mark_folder_online(f.id)
        known: dict[Path, KnownFile] = {}
        for f in online:
            for image in self.cat.images_of_folder(f.id):
                path = f.path / image.rel_path
                known[path] = KnownFile(image.id, path, image.size, image.mtime_ns, image.fingerprint)
        found: list[tuple[FolderRow, FileInfo]] = []
        unreadable: dict[int, list[tuple[str, str]]] = {f.id: [] for f in folders}
        blocked: list[Path] = []
        last = time.perf_counter()
        for f in online:
            def note(path: Path, exc: OSError, f: FolderRow = f) -> None:
                rel = "" if path == f.path else path.relative_to(f.path).as_posix()
                unreadable[f.id].append((rel, folder_error_reason(exc)))
                blocked.append(path)

            for info in walk_images(f.path, self.settings.exclude_patterns, on_error=note):
                found.append((f, info))
                if time.perf_counter() - last > SCAN_REPORT_EVERY:
                    last = time.perf_counter()
                    yield IndexProgress("scan", len(found), 0, message=f"Scanning {display(f.path)}")
                    if self._stopping():
                        return
        # Photos in a folder that could not be listed are not gone: they wait, offline, for a
        # scan that can read them (their codes stay searchable).
        unreachable = [
            k.id for p, k in known.items() if any(p.is_relative_to(b) for b in blocked)
        ]
        if blocked:
            known = {p: k for p, k in known.items() if not any(p.is_relative_to(b) for b in blocked)}
        owner = {info.path: f for f, info in found}
        diff = diff_scan(known, (info for _, info in found))

        def place(info: FileInfo) -> tuple[int, StoredPath, int, int]:
            f = owner[info.path]
            return f.id, to_db(info.path.relative_to(f.path).as_posix()), info.size, info.mtime_ns

        with self.cat.transaction():
            gone = [k.id for k in diff.deleted] + [old.id for old, _ in diff.changed]
            reservoir_remove(self.cat, gone)
            self.cat.apply_scan(
                deleted=[k.id for k in diff.deleted],
                changed=[(old.id, info.size, info.mtime_ns) for old, info in diff.changed],
                moved=[(place(info), old.id) for old, info in diff.moved],
                new=[place(info) for info in diff.new],
                unreachable=unreachable,
            )
            for folder_id, entries in unreadable.items():
                self.cat.set_unreadable(folder_id, entries)
        yield IndexProgress(
            "scan", len(found), len(found), len(found) / max(time.perf_counter() - started, 1e-9), 0.0,
            f"{len(found)} files: {len(diff.new)} new, {len(diff.changed)} changed, "
            f"{len(diff.moved)} moved, {len(diff.deleted)} deleted, {len(offline)} folders offline"
            + (f", {len(blocked)} could not be read." if blocked else "."),
        )

    # --- embed ---------------------------------------------------------------------------------
    def _requeue_orphans(self) -> None:
        """Indexed images with neither a code of the active model nor a reservoir feature (a model
        was never fit for them) must be embedded again."""
        active = self.cat.active_model()
        with self.cat.transaction():
            ids = self.cat.orphaned_indexed(active.id if active else None)
            if ids:
                reservoir_remove(self.cat, ids)
                self.cat.requeue(ids)

    def embed(self) -> Iterator[IndexProgress]:
        """Embed every pending image; returns how many were embedded. A fit recorded by a run
        that was killed is trained first (beside the batches, as it was then)."""
        self._requeue_orphans()
        decided = self._recorded_fit()
        pending = self.cat.pending_paths()
        if not pending:
            if decided is not None:
                yield from self._train_recorded(decided)
            return 0
        from imagehash_app.core.embedding import iter_embeddings

        backbone = self.get_backbone()
        self._check_weights(backbone)
        ids_by_path = {path: iid for iid, path in pending}
        paths = list(ids_by_path)
        total, done, embedded = len(paths), 0, 0
        started = time.perf_counter()
        yield _progress("embed", 0, total, started, f"Indexing {total} photos")
        batches = iter_embeddings(
            paths, backbone, batch_size=self.settings.batch_size,
            workers=self.settings.threads, should_stop=self.should_stop,
        )
        fit: _Fit | None = None
        self._prepare_fit_process(total)
        hasher_state = self._active_hasher(backbone)
        try:
            if decided is not None:
                fit = self._launch_fit(decided, background=True)
                yield IndexProgress(
                    "train", 0, 0, message=f"{self._fit_message(fit)}; indexing goes on meanwhile"
                )
            # Before the first batch too: a kill may have come between a batch and its decision.
            fit, hasher_state = yield from self._between_batches(
                fit, hasher_state, min(self.settings.batch_size, total)
            )
            for batch in batches:
                if fit is not None and self._outgrows_reservoir(len(batch.paths)):
                    # The fit's snapshot must stay the whole library: finish it before the
                    # reservoir drops anyone, so that every photo gets a code of the new model.
                    hasher_state = yield from self._finish_fit(fit, waited_for=True)
                    fit = None
                self._store_batch(batch, ids_by_path, hasher_state)
                kill_point("batch")
                done += len(batch.paths) + len(batch.failures)
                embedded += len(batch.paths)
                upcoming = 0 if self._stopping() else min(self.settings.batch_size, total - done)
                fit, hasher_state = yield from self._between_batches(
                    fit, hasher_state, upcoming, _progress("embed", done, total, started)
                )
            if fit is not None and not self._stopping():
                yield from self._finish_fit(fit, waited_for=True)
                fit = None
        finally:
            batches.close()
            for job in (fit.job if fit else None, self._spare_fit):
                if job is not None:
                    job.cancel()
            self._spare_fit = None
        return embedded

    def _between_batches(
        self, fit: _Fit | None, hasher_state: HasherState, upcoming: int,
        event: IndexProgress | None = None,
    ) -> Iterator[IndexProgress]:
        """After a batch (`event`, yielded with a word when a new version is switched in): wait
        for a fit whose version would already be due for retraining, switch in a finished one,
        then ask the policy (when `upcoming` photos are still to come). Returns (fit,
        hasher_state)."""
        message = ""
        if (
            fit is not None and not fit.job.done() and upcoming and fit.due_after(
                self.cat.population(), self.cat.reservoir_count(), self.settings, upcoming
            )
        ):
            hasher_state = yield from self._finish_fit(fit, waited_for=True)
            fit = None
        if fit is not None and fit.job.done():
            hasher_state = self._activate(fit)
            message = f"Now searching with the new {fit.method} hasher."
            fit = None
        if event is not None:
            yield dataclasses.replace(event, message=message)
        if fit is None and upcoming and not self._stopping():
            plan = self._plan(end_of_run=False, upcoming=upcoming)
            if plan is not None:
                fit = self._start_fit(*plan, background=True)
                yield IndexProgress(
                    "train", 0, 0, message=f"{self._fit_message(fit)}; indexing goes on meanwhile"
                )
        return fit, hasher_state

    def _check_weights(self, backbone: Backbone) -> None:
        """Codes of one library must come from one set of backbone weights."""
        stored = self.cat.weights_id()
        if stored is None:
            with self.cat.transaction():
                self.cat.set_weights_id(backbone.weights_id)
        elif stored != backbone.weights_id:
            raise IncompatibleModelError(
                f"This library was indexed with other {backbone.name} weights ({stored}; these are "
                f"{backbone.weights_id}). Use the weights the library was created with, or start a "
                "new library with --library DIR."
            )

    def _active_hasher(self, backbone: Backbone) -> HasherState:
        # A version that cannot be loaded is set aside (kept, renamed): it must not block indexing.
        return versions.usable_model(
            self.cat, self.root,
            lambda m: versions.load_version(self.root, m, expect_feature_dim=backbone.feature_dim),
            writable=True,
        )

    def _store_batch(
        self, batch: EmbeddedBatch, ids_by_path: dict[Path, int], hasher_state: HasherState
    ) -> None:
        """One transaction: skipped files, indexed rows, reservoir features and codes."""
        now = time.time()
        skipped = [(reason, ids_by_path[p]) for p, reason in batch.failures]
        ids = [ids_by_path[p] for p in batch.paths]
        rows = [
            (f.fingerprint, f.width, f.height, now, iid)
            for f, iid in zip(batch.facts, ids, strict=True)
        ]
        # Codes are computed from the float16-rounded feature, as stored in the reservoir, so a
        # re-encode from the reservoir reproduces them exactly.
        features = batch.features.astype(FEATURE_DTYPE).astype(np.float32)
        codes = hasher_state[1].encode(features) if hasher_state and ids else None
        signatures = [
            (iid, f.signature, f.format, f.taken, f.quality)
            for f, iid in zip(batch.facts, ids, strict=True) if f.signature
        ]
        with self.cat.transaction():
            self.cat.mark_skipped(skipped)
            self.cat.mark_indexed(rows)
            self.cat.put_signatures(signatures)
            if ids:
                reservoir_add(
                    self.cat, ids, features, self.settings.reservoir_size, self.settings.seed
                )
            if codes is not None:
                self.cat.put_codes(hasher_state[0].id, ids, codes)

    # --- hasher lifecycle ----------------------------------------------------------------------
    def _plan(self, *, end_of_run: bool, upcoming: int) -> tuple[str, str] | None:
        if self.cat.get_meta(FINETUNE_PENDING_KEY) is not None:
            return None  # a fine-tune is re-encoding the library: it decides the next model
        return plan_training(
            self.cat.population(), self.cat.reservoir_count(), self.cat.active_model(),
            self.settings, end_of_run=end_of_run, changed=self.changed, upcoming=upcoming,
        )

    def _outgrows_reservoir(self, incoming: int) -> bool:
        return self.cat.population() + incoming > self.settings.reservoir_size

    def maybe_train(self, *, end_of_run: bool, upcoming: int) -> Iterator[IndexProgress]:
        """Train and switch to a new hasher version when the policy says so; returns whether."""
        plan = self._plan(end_of_run=end_of_run, upcoming=upcoming)
        if plan is None:
            return False
        yield from self.train(*plan)
        return True

    def train(self, method: str, why: str) -> Iterator[IndexProgress]:
        """Fit `method` on the reservoir and switch to it, waiting for the fit."""
        fit = self._start_fit(method, why)
        yield IndexProgress("train", 0, 0, message=self._fit_message(fit))
        yield from self._finish_fit(fit)

    def _fits_in_process(self, device: str) -> bool:
        return self.fit_in_process if self.fit_in_process is not None else device != "cpu"

    def _prepare_fit_process(self, upcoming: int) -> None:
        """Start a fit process ahead when a GPU fit falls due during this run (by the policy, with
        every upcoming photo embedded), so that its start-up passes while photos are embedded."""
        from imagehash_app.core.backbone import training_device
        from imagehash_app.core.hashing import hasher_class

        device = training_device(self.settings.device)
        if not self._fits_in_process(device):
            return
        after = self.cat.population() + upcoming
        plan = plan_training(
            after, min(after, self.settings.reservoir_size), self.cat.active_model(), self.settings,
            end_of_run=False, changed=True,
        )
        if plan and hasher_class(plan[0]).trains_on_device:
            self._spare_fit = FitProcess(device, self.should_stop)

    def _start_fit(self, method: str, why: str, *, background: bool = False) -> _Fit:
        """Record the fit that fell due, then start it (`_launch_fit`)."""
        active = self.cat.active_model()
        with self.cat.transaction():
            ids, X = self.cat.load_reservoir()
            decision = {
                "method": method, "why": why, "ids": ids.tolist(), "seed": self.settings.seed,
                "name": f"{method}-{uuid.uuid4().hex[:12]}", "active": active.id if active else None,
                "beside": background,
            }
            self.cat.set_json(PENDING_FIT_KEY, decision)
            clear_changed(self.cat)
        return self._launch_fit(decision, X, background=background)

    def _recorded_fit(self) -> dict | None:
        """The fit a killed (or stopped) run recorded and never switched in, if it can still be
        trained exactly: the version active then still is, and every photo of its snapshot is
        still in the reservoir. Otherwise the record is dropped and the policy decides anew."""
        raw = self.cat.get_meta(PENDING_FIT_KEY)
        if raw is None:
            return None
        active = self.cat.active_model()
        decision = None
        try:
            decision = json.loads(raw)
            ids = [int(i) for i in decision["ids"]]
            decision["seed"] = int(decision.get("seed", self.settings.seed))
            usable = (
                decision["active"] == (active.id if active else None)
                and decision["method"] in METHODS
                and is_version_name(str(decision["name"]))
                and self.cat.get_meta(FINETUNE_PENDING_KEY) is None
                and len(self.cat.reservoir_ids(ids)) == len(ids) > 0
            )
        except (KeyError, TypeError, ValueError):
            usable = False
        if not usable:
            with self.cat.transaction():
                self.cat.delete_meta(PENDING_FIT_KEY)
            name = str(decision.get("name", "")) if isinstance(decision, dict) else ""
            versions.discard_unregistered(self.cat, self.root, name)  # its killed try
            return None
        return decision

    def _train_recorded(self, decision: dict) -> Iterator[IndexProgress]:
        """Train a recorded fit and switch to it, waiting for it (nothing left to embed). Where it
        was to run beside the batches, it runs as it would have then (a GPU fit in a process of
        its own, with the thread pools of one: the same numbers)."""
        fit = self._launch_fit(decision, background=bool(decision.get("beside")))
        yield IndexProgress("train", 0, 0, message=self._fit_message(fit))
        yield from self._finish_fit(fit)

    def _launch_fit(
        self, decision: dict, X: np.ndarray | None = None, *, background: bool = False
    ) -> _Fit:
        """Start fitting a recorded decision on its snapshot (`X`: its features, read from the
        reservoir when not given): a fit that runs beside embedding and trains on a GPU goes to
        a process of its own, any other to a thread."""
        from imagehash_app.core.backbone import training_device
        from imagehash_app.core.hashing import make_hasher

        method, why, name = str(decision["method"]), str(decision["why"]), str(decision["name"])
        ids = np.asarray(decision["ids"], dtype=np.int64)
        if X is None:
            feats = self.cat.reservoir_features(ids.tolist())
            X = np.stack([feats[int(i)] for i in ids])
        params = self.settings.hasher_params.get(method, {})
        hasher = make_hasher(method, self.settings.bits, X.shape[1], **params)
        hasher.meta["backbone"] = self.settings.backbone
        hasher.meta["library_reason"] = why
        device = training_device(self.settings.device) if hasher.trains_on_device else "cpu"
        seed = int(decision["seed"])
        if background and self._fits_in_process(device):
            child, self._spare_fit = self._spare_fit, None
            child = child or FitProcess(device, self.should_stop)
            fit = _Fit(method, why, ids, child.start(hasher, X, seed=seed), name)
        else:
            extra = {"device": device} if hasher.trains_on_device else {}

            def work(progress, should_stop) -> tuple[Hasher, np.ndarray]:
                hasher.fit(X, progress=progress, should_stop=should_stop, seed=seed, **extra)
                return hasher, hasher.encode(X)

            fit = _Fit(method, why, ids, FitThread(work, self.should_stop), name)
        kill_point("due")
        return fit

    @staticmethod
    def _fit_message(fit: _Fit) -> str:
        return f"Training {fit.method} on {len(fit.ids)} photos ({fit.why})"

    def _finish_fit(self, fit: _Fit, *, waited_for: bool = False) -> Iterator[IndexProgress]:
        """Relay the fit's progress until it ends, then switch to the new version; returns
        `_activate`'s (model row, hasher). `waited_for`: a fit begun beside the run, which the run
        now stops to wait for (said, so that the wait is not taken for a stall)."""
        if waited_for:
            yield IndexProgress("train", 0, 0, message=f"{self._fit_message(fit)}: finishing")
        started = time.perf_counter()
        for report in fit.job.reports():
            yield IndexProgress(
                "train", report.epoch, report.epochs,
                report.epoch / max(time.perf_counter() - started, 1e-9), report.eta_s,
                f"{self._fit_message(fit)} (loss {report.loss:.4f})",
            )
        n = len(fit.ids)
        started = time.perf_counter()
        yield _progress("encode", 0, n, started, f"Encoding {n} photos with the new {fit.method} hasher")
        state = self._activate(fit)
        yield _progress("encode", n, n, started)
        return state

    def _activate(self, fit: _Fit) -> tuple[ModelRow, Hasher]:
        """Save the fitted version, store its codes of every sampled photo (the snapshot's from the
        fit, later ones from the reservoir) and make it active — the catalogue part in one
        transaction, so a kill never leaves a half-registered model. Raises the fit's error.
        Returns the new active version and its hasher, for the batches still to come."""
        hasher, codes = fit.job.result()
        rel = f"{MODELS_DIR}/{fit.name}"  # recorded with the fit when it fell due
        versions.save_recorded(self.root, hasher, rel)  # a killed run's try is overwritten
        kill_point("saved")

        def switch(model_id: int) -> None:
            kill_point("encode")
            versions.encode_sampled(self.cat, model_id, lambda: hasher)
            versions.activate(self.cat, model_id)
            self.cat.delete_meta(PENDING_FIT_KEY)

        versions.register(
            self.cat, method=fit.method, bits=self.settings.bits, backbone=self.settings.backbone,
            rel=rel, train_size=len(fit.ids), note=fit.why, image_ids=fit.ids, codes=codes,
            then=switch,
        )
        kill_point("activated")
        versions.prune_models(self.cat, self.root, KEEP_MODELS)
        return self.cat.active_model(), hasher

    def fill_signatures(self) -> Iterator[IndexProgress]:
        """Photos indexed before copy signatures existed get theirs: each is decoded once more,
        small (JPEG draft mode at `SIGNATURE_MIN_SIDE`), `SIGNATURE_BATCH` per transaction; a
        file that cannot be read now is left for a later run (it keeps its code)."""
        from imagehash_app.core.duplicates.signature import header_facts, thumbnail_of
        from imagehash_app.core.errors import ImageDecodeError
        from imagehash_app.core.images import decoding

        missing = self.cat.missing_signatures()
        if not missing:
            return
        started = time.perf_counter()
        total = len(missing)
        for start in range(0, total, SIGNATURE_BATCH):
            if self._stopping():
                return
            rows = []
            for iid, path in missing[start : start + SIGNATURE_BATCH]:
                header = []
                try:
                    with decoding(path, SIGNATURE_MIN_SIDE,
                                  on_open=lambda im, h=header: h.append(header_facts(im))) as (img, _):
                        signature = thumbnail_of(img)
                except ImageDecodeError:
                    continue
                rows.append((iid, signature, header[0].format, header[0].taken, header[0].quality))
            with self.cat.transaction():
                self.cat.put_signatures(rows)
            done = min(start + SIGNATURE_BATCH, total)
            yield _progress("signatures", done, total, started,
                            f"Copy signatures of {total} photos indexed before them")

    def encode_missing(self) -> Iterator[IndexProgress]:
        """Indexed images in the reservoir without a code of the active model get one (e.g. after
        a kill between embedding and the first training)."""
        active = self.cat.active_model()
        if active is None:
            return
        started = time.perf_counter()
        with self.cat.transaction():
            n = versions.encode_sampled(
                self.cat, active.id, lambda: versions.load_version(self.root, active)
            )
        if n:
            yield _progress("encode", n, n, started)
