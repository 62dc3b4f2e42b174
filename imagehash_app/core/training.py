"""Fine-tuning the hasher on the person's own library: train, evaluate, re-encode, swap, roll back.

Why: a hasher trained on other photos ranks this library's photos worse than one trained on them
(docs/ARCHITECTURE.md, "Why fine-tuning matters"). The reservoir (a uniform sample of real features) is what a
new version trains on; a stable part of it, chosen by image id, is held out to compare versions.

Lifecycle of `finetune()`, a cancellable generator of `FinetuneProgress` that returns a
`FinetuneResult`:

1. train a new `urph` version on the reservoir minus the held-out part, warm-started from the active
   version (or from scratch), on a worker thread (progress: epoch, loss, ETA);
2. evaluate old and new on the held-out features (kNN recall 10@10 and 10@100 against exact float
   cosine, Hamming order and decoder re-rank) and record both in the new version's hasher.json;
3. register the new version (inactive) with exact codes for every reservoir photo, in one
   transaction; from here on a kill resumes instead of starting over (`PENDING_KEY`);
4. re-encode the other photos exactly, by running the backbone over their files again, batch by
   batch, one transaction each, while the old version keeps answering every query. Encoding them
   from their decoded old codes, `new.encode(old.decode(code))`, is instant but was measured to lose
   most of the gain (docs/results-finetune.md), so it is only the fallback for files that cannot
   be read now (offline folders) and an explicit quick mode (`reencode="approx"`);
5. swap in one transaction (stragglers indexed meanwhile are encoded first), then drop versions
   beyond the last `keep`. A version that is not better on held-out data is kept but not
   activated unless `force`; `activate_model()` switches to any kept version instantly.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imagehash_app.core import method_compare, versions
from imagehash_app.core.codes import words_for
from imagehash_app.core.errors import CancelledError, ImagehashError
from imagehash_app.core.hashing.base import META_FILE, Hasher, fit_in_thread
from imagehash_app.core.kill_points import kill_point
from imagehash_app.core.reservoir import FEATURE_DTYPE
from imagehash_app.core.settings import LibrarySettings
from imagehash_app.core.store import CATALOG_FILE, Catalog, ModelRow
from imagehash_app.core.versions import FINETUNE_PENDING_KEY as PENDING_KEY
from imagehash_app.core.versions import KEEP_MODELS, prune_models, version_path

if TYPE_CHECKING:
    from imagehash_app.core.backbone import Backbone
    from imagehash_app.core.hashing.base import Hasher

StopFn = Callable[[], bool]
BackboneFn = Callable[[], "Backbone"]  # the library's backbone, loaded on first use
HELD_OUT_FRACTION = 0.1  # of the reservoir, kept out of training to compare versions
HELD_OUT_MAX = 2000  # enough for stable recall figures; the rest trains
HELD_OUT_MIN = 50  # recall 10@10 needs a few dozen photos to mean anything
MIN_RESERVOIR = 20  # below this a fine-tune has nothing to learn from
REENCODE_BATCH = 4096  # photos per re-encode transaction from stored codes / features
EMBED_BATCH = 256  # photos per transaction when the backbone runs (a few seconds of work)
# Photos per second of decode + MobileNetV2 on 2 CPU cores (docs/results-finetune.md): the exact
# re-encode of photos outside the reservoir costs this; it is most of a fine-tune's time.
EMBED_PHOTOS_PER_S = 80.0
REENCODE_MODES = ("exact", "approx")
SUGGEST_FACTOR = 2.0  # suggest a fine-tune once this many photos per trained one were added
RECALL_K = 10
# Seconds per training sample per epoch on 2 CPU cores (measured, docs/results-finetune.md), for
# the estimate shown before a fine-tune starts (1e-4 on an idle machine, 5e-4 under load).
TRAIN_SECONDS_PER_SAMPLE_EPOCH = 3.0e-4
FINETUNE_EPOCHS = 20  # a warm start gets most of the gain in half the epochs of a first one (measured)
# The methods a fine-tune can train: the sign-code ones (Hamming search, decoder re-rank). DeepQuan's
# PQ codes need their own distance in the first stage, which the library does not have: eval only.
UNSUPERVISED_METHODS = ("urph", "itq", "harr", "distillhash", "dsg", "dmuh")
SUPERVISED_METHODS = ("dsh", "dpsh", "dsdh")
FINETUNE_METHODS = UNSUPERVISED_METHODS + SUPERVISED_METHODS
DEFAULT_METHOD = "urph"
# "Enough labels" for a supervised fine-tune: this many marked pairs of each kind. Folders give
# positives only, and a pairwise objective with no negatives puts every photo on one code.
MIN_MARKS = 3
FOLDER_PAIRS_PER_PHOTO = 5


def method_problem(method: str) -> str:
    """Why `method` cannot be fine-tuned on a library at all ('' when it can)."""
    if method == "deepquan":
        return (
            "DeepQuan's product-quantization codes need their own distance, which library search "
            "does not use; it stays in `imagehash-app eval` (choose one of "
            f"{', '.join(FINETUNE_METHODS)})."
        )
    if method not in FINETUNE_METHODS:
        return f"Unknown method {method!r}; choose one of {', '.join(FINETUNE_METHODS)}."
    return ""


@dataclass(frozen=True)
class FinetuneProgress:
    """One progress event; same fields as IndexProgress so progress bars show either."""

    phase: str  # "prepare" | "train" | "evaluate" | "encode" | "swap" | "done"
    done: int
    total: int
    rate: float = 0.0
    eta_s: float | None = None
    message: str = ""
    loss: float | None = None


@dataclass
class FinetuneResult:
    """What a fine-tune did: the versions, held-out figures, whether the new one answers now."""

    old_model: int
    new_model: int
    activated: bool
    better: bool
    old_metrics: dict[str, float]
    new_metrics: dict[str, float]
    held_out: int
    trained_on: int
    warm_start: bool
    exact_codes: int  # photos encoded from their reservoir feature
    approx_codes: int  # photos encoded from their old code
    seconds: float
    removed_models: list[int] = field(default_factory=list)
    message: str = ""
    method: str = DEFAULT_METHOD
    comparison: list[dict[str, Any]] = field(default_factory=list)  # per candidate, when compared

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelInfo:
    """A kept hasher version, for `models list` and the dialog."""

    id: int
    method: str
    bits: int
    active: bool
    created: float
    train_size: int
    note: str
    metrics: dict[str, Any]
    complete: bool  # every indexed photo has a code of this version

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FinetunePlan:
    """What a fine-tune would do, computed without doing it (for the dialog and the CLI)."""

    active: ModelRow | None
    reservoir: int
    held_out: int
    train: int
    photos: int
    warm_start: bool
    epochs: int
    estimated_s: float
    resumable: bool
    problem: str  # non-empty: why a fine-tune cannot run now
    method: str = DEFAULT_METHOD
    supervised_problem: str = ""  # non-empty: why the supervised methods are not offered (labels)
    compare: tuple[str, ...] = ()  # the methods a comparison would try, in order (empty: none)
    budget_s: float = 0.0  # the comparison's time budget


# --- helpers ---------------------------------------------------------------------------------
def held_out_mask(image_ids: np.ndarray, seed: int, fraction: float = HELD_OUT_FRACTION) -> np.ndarray:
    """A stable held-out set: the photos whose hashed id (with the seed) is smallest, so successive
    fine-tunes keep the same photos out of training and stay comparable. About `fraction` of the
    reservoir, at least HELD_OUT_MIN (a third of a small library), at most HELD_OUT_MAX."""
    n = len(image_ids)
    target = min(max(round(fraction * n), min(HELD_OUT_MIN, n // 3)), HELD_OUT_MAX)
    x = np.asarray(image_ids, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):  # splitmix64: wrapping arithmetic is the point
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(x, kind="stable")[:target]] = True
    return mask


def evaluate_versions(
    hasher: Hasher, X: np.ndarray, queries: np.ndarray, rerank_depth: int, k: int = RECALL_K
) -> dict[str, float]:
    """kNN recall of `hasher` for the rows `queries` of X against all of X (each query left out)
    compared with exact float cosine: 10@10 and 10@100 in Hamming order and after decoder re-rank
    of the top R. The queries are held out of training; the database is the whole reservoir, as
    the library holds both kinds of photo."""
    from imagehash_app.core.evaluation import float_rankings, hamming_rankings, knn_recall, rerank

    n = X.shape[0]
    if n < 2 or len(queries) == 0:
        return {}
    k = min(k, n - 1)
    Q = X[queries]
    truth = np.concatenate([o[:, :k] for o in float_rankings(Q, X, exclude=queries)])
    codes = hasher.encode(X)
    decoded = hasher.decode(codes)
    depth = min(max(rerank_depth, 100), n - 1)
    out: dict[str, list[np.ndarray]] = {key: [] for key in _METRIC_KEYS}
    start = 0
    for order in hamming_rankings(codes[queries], codes, hasher.bits, exclude=queries):
        q = Q[start : start + order.shape[0]]
        reranked = rerank(q, order, lambda idx: decoded[idx], depth)
        t = truth[start : start + order.shape[0]]
        out["hamming_10@10"].append(knn_recall(t, order, 10))
        out["hamming_10@100"].append(knn_recall(t, order, 100))
        out["rerank_10@10"].append(knn_recall(t, reranked, 10))
        out["rerank_10@100"].append(knn_recall(t, reranked, 100))
        start += order.shape[0]
    return {key: round(float(np.concatenate(v).mean()), 4) for key, v in out.items()}


_METRIC_KEYS = ("hamming_10@10", "hamming_10@100", "rerank_10@10", "rerank_10@100")


def score(metrics: dict[str, float]) -> float:
    """One number to compare versions: the mean of the four held-out recalls."""
    return float(np.mean([metrics.get(k, 0.0) for k in _METRIC_KEYS]))


def _stopping(should_stop: StopFn | None) -> bool:
    return bool(should_stop and should_stop())


def encode_for(
    cat: Catalog, root: Path, target: ModelRow, target_hasher: Hasher, image_ids: Sequence[int],
    sources: Sequence[tuple[ModelRow, Hasher]], embedded: dict[int, np.ndarray] | None = None,
) -> tuple[list[int], np.ndarray, int]:
    """Codes of `target` for `image_ids`: exact from the reservoir feature or a freshly `embedded`
    one where there is one, else `target.encode(source.decode(code))` from the first source
    version that has a code (approximate: see docs/results-finetune.md for what it costs).

    Returns (image ids encoded, codes, how many were exact); photos with neither are left out.
    """
    feats = {**(embedded or {}), **cat.reservoir_features(image_ids)}
    exact_ids = [i for i in image_ids if i in feats]
    rest = [i for i in image_ids if i not in feats]
    ids_out: list[int] = list(exact_ids)
    parts = [target_hasher.encode(np.stack([feats[i] for i in exact_ids]))] if exact_ids else []
    for model, hasher in sources:
        if not rest:
            break
        if model.id == target.id:
            continue
        have = cat.codes_of(model.id, rest, words_for(model.bits))
        found = [i for i in rest if i in have]
        if found:
            approx = hasher.decode(np.stack([have[i] for i in found]))
            parts.append(target_hasher.encode(approx))
            ids_out += found
            rest = [i for i in rest if i not in have]
    codes = np.concatenate(parts) if parts else np.zeros((0, words_for(target.bits)), np.uint64)
    return ids_out, codes, len(exact_ids)


def embed_photos(
    cat: Catalog, get_backbone: BackboneFn, settings: LibrarySettings,
    image_ids: Sequence[int], should_stop: StopFn | None,
) -> dict[int, np.ndarray]:
    """Features of the photos' files, run through the backbone again (as the indexer does: rounded
    to float16, so that codes match the ones indexing would give). Unreadable files are left out."""
    from imagehash_app.core.embedding import iter_embeddings

    paths = cat.paths_of(image_ids)
    by_path = {p: i for i, p in paths.items()}
    out: dict[int, np.ndarray] = {}
    batches = iter_embeddings(
        list(by_path), get_backbone(), batch_size=settings.batch_size, workers=settings.threads,
        should_stop=should_stop,
    )
    try:
        for batch in batches:
            rounded = batch.features.astype(FEATURE_DTYPE).astype(np.float32)
            for path, row in zip(batch.paths, rounded, strict=True):
                out[by_path[Path(path)]] = row
    finally:
        batches.close()
    return out


def _register(
    cat: Catalog, root: Path, hasher: Hasher, settings: LibrarySettings, note: str,
    res_ids: np.ndarray, res_X: np.ndarray, pending: dict[str, Any] | None,
) -> int:
    """Save `hasher` and register it (inactive) with exact codes for the reservoir photos, in one
    transaction; a kill before the commit leaves only an orphan folder (removed at next open)."""
    rel = versions.save_version(cat, root, hasher)
    kill_point("finetune-saved")
    codes = hasher.encode(res_X)

    def record(model_id: int) -> None:
        if pending is not None:
            cat.set_json(PENDING_KEY, {**pending, "new": model_id, "exact_codes": len(res_ids)})

    return versions.register(
        cat, method=hasher.method, bits=hasher.bits, backbone=settings.backbone, rel=rel,
        train_size=int(hasher.meta.get("train_size", len(res_ids))), note=note,
        image_ids=res_ids, codes=codes, then=record,
    )


def _open(root: Path, *, read_only: bool = False) -> Catalog:
    """A connection of its own: a fine-tune runs beside searches on the library's connection.
    The caller (`Library`) has checked that it may write."""
    return Catalog.open(root / CATALOG_FILE, read_only=read_only)


# --- the plan --------------------------------------------------------------------------------
def plan(
    root: Path, settings: LibrarySettings, *, epochs: int | None = None, from_scratch: bool = False,
    method: str = DEFAULT_METHOD, compare: Sequence[str] = (), budget_s: float | None = None,
) -> FinetunePlan:
    """What `finetune` would do and roughly how long it takes (no training, no writes); with
    `compare`, the comparison of those methods within `budget_s` takes the training's place."""
    cat = _open(root, read_only=True)
    try:
        active = cat.active_model()
        ids = np.array(cat.reservoir_image_ids(), dtype=np.int64)
        held = int(held_out_mask(ids, settings.seed).sum())
        photos = cat.population()
        pending = cat.get_json(PENDING_KEY)
        marks = cat.mark_counts()
    finally:
        cat.close()
    warm = _warm(method, from_scratch, active)
    n_epochs = _epochs(settings, epochs, warm) if method == "urph" else _method_epochs(settings, epochs, method)
    train = len(ids) - held
    problem = method_compare.comparison_problem(compare) if compare else method_problem(method)
    supervised_problem = labels_problem(marks)
    if not problem and not compare and method in SUPERVISED_METHODS:
        problem = supervised_problem
    if not problem and active is None:
        problem = "The library has no hasher yet: index some photos first."
    elif not problem and len(ids) < MIN_RESERVOIR:
        problem = f"Index at least {MIN_RESERVOIR} photos first ({len(ids)} now)."
    outside = max(photos - len(ids), 0)
    budget = float(method_compare.COMPARE_BUDGET_S if budget_s is None else budget_s)
    training_s = budget if compare else train * n_epochs * TRAIN_SECONDS_PER_SAMPLE_EPOCH
    estimate = training_s + outside / EMBED_PHOTOS_PER_S + 5.0
    return FinetunePlan(
        active=active, reservoir=len(ids), held_out=held, train=train, photos=photos,
        warm_start=warm, epochs=n_epochs, estimated_s=estimate, resumable=pending is not None,
        problem=problem, method=method, supervised_problem=supervised_problem,
        compare=tuple(method_compare.ordered(compare)), budget_s=budget if compare else 0.0,
    )


def _method_epochs(settings: LibrarySettings, epochs: int | None, method: str) -> int:
    """The epochs a fit of `method` will run (its configured or default count), for the estimate."""
    if epochs is not None:
        return int(epochs)
    if method_problem(method):
        return 0
    from imagehash_app.core.hashing import hasher_class

    configured = settings.hasher_params.get(method, {}).get("epochs")
    cls = hasher_class(method)
    default = {**getattr(cls, "DEFAULTS", {}), **getattr(cls, "defaults", {})}.get("epochs")
    if default is None and method in SUPERVISED_METHODS:
        from imagehash_app.core.hashing.supervised import COMMON

        default = COMMON["epochs"]
    return int(configured or default or 1)


def _warm(method: str, from_scratch: bool, active: ModelRow | None) -> bool:
    """Only URPH warm-starts, and only from a URPH version."""
    return method == "urph" and not from_scratch and active is not None and active.method == "urph"


def _epochs(settings: LibrarySettings, epochs: int | None, warm: bool) -> int:
    if epochs is not None:
        return int(epochs)
    configured = settings.hasher_params.get("urph", {}).get("epochs")
    if configured is not None:
        return int(configured) if not warm else max(1, int(configured) // 2)
    from imagehash_app.core.hashing.urph import DEFAULTS

    return FINETUNE_EPOCHS if warm else int(DEFAULTS["epochs"])


# --- fine-tune -------------------------------------------------------------------------------
def labels_problem(marks: dict[str, int]) -> str:
    """Why the supervised methods cannot learn from this library's marks yet ('' when they can)."""
    similar, not_similar = marks.get("similar", 0), marks.get("not_similar", 0)
    if similar >= MIN_MARKS and not_similar >= MIN_MARKS:
        return ""
    return (
        f"The supervised methods learn from your marks: mark at least {MIN_MARKS} results "
        f"\"More like this\" and {MIN_MARKS} \"Not similar\" (now {similar} and {not_similar}), "
        "then fine-tune again."
    )


def folder_pairs(
    ids: np.ndarray, paths: dict[int, Path], seed: int, per_photo: int = FOLDER_PAIRS_PER_PHOTO
) -> list[tuple[int, int]]:
    """Positive pairs (rows of `ids`) of photos in the same directory: up to `per_photo` random
    partners each, so a folder of thousands does not make millions. Never negatives: photos in
    different folders may be copies of each other (a backup folder)."""
    rng = np.random.default_rng(seed)
    by_dir: dict[Path, list[int]] = {}
    for row, image_id in enumerate(ids):
        path = paths.get(int(image_id))
        if path is not None:
            by_dir.setdefault(path.parent, []).append(row)
    out: set[tuple[int, int]] = set()
    for rows in by_dir.values():
        if len(rows) < 2:
            continue
        k = min(per_photo, len(rows) - 1)
        for at, r in enumerate(rows):
            picks = rng.choice(len(rows) - 1, size=k, replace=False)  # every other row, r left out
            for o in (rows[p + (p >= at)] for p in picks):
                out.add((min(r, o), max(r, o)))
    return sorted(out)


def _supervised_training_set(
    cat: Catalog, settings: LibrarySettings, train_ids: np.ndarray, X_train: np.ndarray,
    get_backbone: BackboneFn | None, should_stop: StopFn | None,
) -> Generator[FinetuneProgress, None, tuple[np.ndarray, dict[str, Any], dict[str, Any]]]:
    """The training rows and labelled pairs of a supervised fine-tune: the reservoir's training
    photos with their same-folder positive pairs, plus both ends of every marked pair (their
    reservoir feature, held-out ones included: a mark is worth more than a clean held-out set,
    or the backbone run on their file). Returns (X, fit keyword arguments, the record)."""
    problem = labels_problem(cat.mark_counts())
    if problem:
        raise ImagehashError(problem)
    marks = cat.marks()
    row_of = {int(i): r for r, i in enumerate(train_ids)}
    ends = sorted({i for m in marks for i in (m.query_id, m.result_id)} - set(row_of))
    extra = cat.reservoir_features(ends)
    missing = [i for i in ends if i not in extra]
    if missing and get_backbone is not None:
        yield FinetuneProgress("prepare", 0, len(missing), message=f"Reading {len(missing)} marked photos")
        extra.update(embed_photos(cat, get_backbone, settings, missing, should_stop))
    ids = list(map(int, train_ids)) + [i for i in ends if i in extra]
    X = np.concatenate([X_train, np.stack([extra[i] for i in ends if i in extra])]) if extra else X_train
    row_of = {i: r for r, i in enumerate(ids)}
    marked = [
        (row_of[m.query_id], row_of[m.result_id], 1 if m.similar else -1)
        for m in marks if m.query_id in row_of and m.result_id in row_of
    ]
    problem = labels_problem({
        "similar": sum(s > 0 for *_, s in marked), "not_similar": sum(s < 0 for *_, s in marked)
    })
    if problem:  # marked photos whose files cannot be read now
        raise ImagehashError(problem.replace("then fine-tune", "with photos that can be read now, then fine-tune"))
    taken = {(min(a, b), max(a, b)) for a, b, _ in marked}
    folder = [(a, b, 1) for a, b in folder_pairs(np.array(ids), cat.paths_of(ids), settings.seed)
              if (a, b) not in taken]  # a mark overrides what the folders say
    pairs = np.array(marked + folder, dtype=np.int64)
    record = {"pairs": {
        "marked": len(marked), "folder": len(folder),
        "positive": int((pairs[:, 2] > 0).sum()), "negative": int((pairs[:, 2] < 0).sum()),
        "marked_image_ids": sorted([[ids[a], ids[b], s] for a, b, s in marked]),
    }}
    return X, {"pairs": pairs}, record


def finetune(
    root: Path,
    settings: LibrarySettings,
    get_backbone: BackboneFn | None,
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
    """Train, evaluate, re-encode and (if better, or `force`) activate a new hasher version of
    `method` (one of FINETUNE_METHODS; URPH by default, the only one that warm-starts).

    `compare` (unsupervised sign-code methods, core/method_compare.py) trains each of them within
    `budget_s` seconds (five minutes by default) instead, and takes the one with the best held-out
    recall 10@10 after re-rank through the same keep / roll-back flow; `method` is then ignored.

    `reencode="exact"` runs the backbone again over the photos outside the reservoir (their old
    codes are used only where a file cannot be read); "approx" encodes them from their decoded old
    codes, instantly but losing most of the gain when the library outgrew the reservoir.

    A fine-tune killed or cancelled during its re-encode resumes where it stopped the next time
    this is called (the options of the new call are then ignored). Cancelled before that, nothing
    of it is kept. Raises CancelledError when `should_stop` stops it. Without `get_backbone`
    every photo outside the reservoir is encoded from its old code.
    """
    if reencode not in REENCODE_MODES:
        raise ValueError(f"reencode must be one of {REENCODE_MODES}, not {reencode!r}")
    problem = method_compare.comparison_problem(compare) if compare else method_problem(method)
    if problem:
        raise ImagehashError(problem)
    started = time.perf_counter()
    cat = _open(root)
    try:
        pending = cat.get_json(PENDING_KEY)
        if pending is not None and cat.model(int(pending.get("new", -1))) is None:
            with cat.transaction():  # its version was dropped meanwhile: nothing to resume
                cat.delete_meta(PENDING_KEY)
            pending = None
        if pending is None:
            pending = yield from _train_and_register(
                cat, root, settings, epochs, from_scratch, force, reencode, should_stop, method,
                get_backbone, tuple(compare), budget_s,
            )
        else:
            yield FinetuneProgress("prepare", 0, 0, message="Resuming the interrupted fine-tune")
        result = yield from _reencode_and_swap(
            cat, root, settings, pending, keep, should_stop, batch_size, get_backbone
        )
    finally:
        cat.close()
    result.seconds = round(time.perf_counter() - started, 2)
    yield FinetuneProgress("done", 1, 1, message=result.message)
    return result


def _train_and_register(
    cat: Catalog, root: Path, settings: LibrarySettings, epochs: int | None, from_scratch: bool,
    force: bool, reencode: str, should_stop: StopFn | None, method: str,
    get_backbone: BackboneFn | None, compare: tuple[str, ...] = (), budget_s: float | None = None,
) -> Generator[FinetuneProgress, None, dict[str, Any]]:
    active = cat.active_model()
    if active is None:
        raise ImagehashError("The library has no hasher yet: index some photos first.")
    ids, X = cat.load_reservoir()
    if len(ids) < MIN_RESERVOIR:
        raise ImagehashError(
            f"Too few photos to learn from ({len(ids)}); index at least {MIN_RESERVOIR} first."
        )
    held = held_out_mask(ids, settings.seed)
    X_train, X_held = X[~held], X[held]
    queries = np.flatnonzero(held)
    old = versions.load_version(root, active)
    comparison: list[dict[str, Any]] = []
    new_m: dict[str, float] | None = None
    if compare:
        budget = method_compare.COMPARE_BUDGET_S if budget_s is None else float(budget_s)
        yield FinetuneProgress(
            "prepare", 0, len(compare),
            message=f"Comparing {len(compare)} methods on {len(X_train):,} photos "
                    f"({len(X_held):,} held out) within {budget:.0f} s",
        )

        def fit_candidate(name: str, n: int | None, stop: StopFn) -> Generator[FinetuneProgress, None, Hasher]:
            hasher, _warm_start = yield from _fit_method(
                name, settings, old, active, X_train, n, from_scratch, {}, stop, comparing=True,
            )
            return hasher

        def held_out(hasher: Hasher) -> dict[str, float]:
            return evaluate_versions(hasher, X, queries, settings.rerank_depth)

        best, candidates = yield from method_compare.compare(
            compare, fit_candidate, held_out, budget_s=budget,
            event=lambda done, total, text: FinetuneProgress("prepare", done, total, message=text),
            epochs=method_compare.COMPARE_EPOCHS if epochs is None else epochs,
            should_stop=should_stop,
        )
        comparison = [c.to_dict() for c in candidates]
        won = method_compare.winner(candidates)
        if best is not None and won is not None:
            new, method, warm, new_m = best, won.method, False, dict(won.metrics)
            n_epochs = won.epochs
        else:  # nothing finished in the budget: URPH, as a plain fine-tune trains it
            method = DEFAULT_METHOD
            n_epochs = _epochs(settings, epochs, _warm(method, from_scratch, active))
            new, warm = yield from _fit_method(
                method, settings, old, active, X_train, epochs, from_scratch, {}, should_stop,
            )
        how = "chosen by comparison"
    else:
        warm = _warm(method, from_scratch, active) and old.bits == settings.bits
        # URPH's epochs are the fine-tune's own (fewer when warm); other methods keep their
        # defaults unless the person asks for a number.
        n_epochs = _epochs(settings, epochs, warm) if method == "urph" else epochs
        how = f"from version {active.id}" if warm else "from scratch"
        fit_kwargs: dict[str, Any] = {}
        labels: dict[str, Any] = {}
        if method in SUPERVISED_METHODS:
            X_train, fit_kwargs, labels = yield from _supervised_training_set(
                cat, settings, ids[~held], X_train, get_backbone, should_stop
            )
        yield FinetuneProgress(
            "prepare", 0, n_epochs or 0,
            message=f"Training on {len(X_train):,} photos ({len(X_held):,} held out), {how}",
        )
        new, warm = yield from _fit_method(
            method, settings, old, active, X_train, epochs, from_scratch, fit_kwargs, should_stop,
        )
        if labels:
            new.meta["finetune_labels"] = labels
    if _stopping(should_stop):
        raise CancelledError("Fine-tuning was cancelled; the current version stays in use.")
    yield FinetuneProgress("evaluate", 0, 2, message=f"Comparing versions on {len(X_held):,} held-out photos")
    old_m = evaluate_versions(old, X, queries, settings.rerank_depth)
    yield FinetuneProgress("evaluate", 1, 2, message="Comparing versions")
    if new_m is None:  # a comparison's winner was measured on the same held-out photos already
        new_m = evaluate_versions(new, X, queries, settings.rerank_depth)
    yield FinetuneProgress("evaluate", 2, 2, message="Compared")
    better = score(new_m) > score(old_m)
    record = {
        "held_out": int(len(X_held)), "trained_on": int(len(X_train)), "previous": active.id,
        "warm_start": warm, "epochs": n_epochs, "old": old_m, "new": new_m, "better": better,
        "method": method, **new.meta.pop("finetune_labels", {}),
    }
    if comparison:
        record["compare"] = comparison
    new.meta["metrics"] = {**new.meta.get("metrics", {}), "finetune": record}
    new.meta["library_population"] = cat.population()
    new.meta["library_reason"] = "fine-tuned on the library"
    if _stopping(should_stop):
        raise CancelledError("Fine-tuning was cancelled; the current version stays in use.")
    pending = {
        "old": active.id, "activate": bool(better or force), "better": better, "force": force,
        "old_metrics": old_m, "new_metrics": new_m, "held_out": int(len(X_held)),
        "trained_on": int(len(X_train)), "warm_start": warm, "reencode": reencode,
        "method": method, "comparison": comparison,
    }
    note = f"{method} fine-tuned {how} on {len(X_train):,} photos"
    if "pairs" in record:
        note += f" with {record['pairs']['marked']:,} marked and {record['pairs']['folder']:,} folder pairs"
    _register(cat, root, new, settings, note, ids, X, pending)
    return cat.get_json(PENDING_KEY)


def _fit_method(
    method: str, settings: LibrarySettings, old: Hasher, active: ModelRow, X_train: np.ndarray,
    epochs: int | None, from_scratch: bool, fit_kwargs: dict[str, Any], should_stop: StopFn | None,
    *, comparing: bool = False,
) -> Generator[FinetuneProgress, None, tuple[Hasher, bool]]:
    """A new version of `method` fitted on `X_train` on a worker thread, relaying its progress;
    returns (the hasher, whether it warm-started from the active version). Raises CancelledError
    when `should_stop` stops it."""
    from imagehash_app.core.backbone import training_device
    from imagehash_app.core.hashing import make_hasher

    warm = _warm(method, from_scratch, active) and old.bits == settings.bits
    n_epochs = epochs if comparing else (_epochs(settings, epochs, warm) if method == "urph" else epochs)
    # A warm start must have the old version's architecture; from scratch, the library's settings.
    params = dict(old.params) if warm else dict(settings.hasher_params.get(method, {}))
    if method == "urph" or n_epochs is not None:
        params.pop("epochs", None)
    new = make_hasher(method, settings.bits, X_train.shape[1], **params)
    new.meta["backbone"] = settings.backbone
    kwargs = dict(fit_kwargs)
    accepted = inspect.signature(new.fit).parameters
    if "device" in accepted:
        kwargs["device"] = training_device(settings.device)
    if "epochs" in accepted and n_epochs is not None:
        kwargs["epochs"] = n_epochs
    if warm:
        kwargs["init_from"] = old

    def fit(progress: Callable[..., None], stop: StopFn) -> None:
        new.fit(X_train, progress=progress, should_stop=stop, seed=settings.seed, **kwargs)

    t0 = time.perf_counter()
    for report in fit_in_thread(fit, should_stop):
        yield FinetuneProgress(
            "train", report.epoch, report.epochs, report.epoch / max(time.perf_counter() - t0, 1e-9),
            report.eta_s, f"Training {method}: epoch {report.epoch}/{report.epochs}, loss {report.loss:.4f}",
            report.loss,
        )
    if _stopping(should_stop):
        raise CancelledError("Fine-tuning was cancelled; the current version stays in use.")
    return new, warm


def _reencode_and_swap(
    cat: Catalog, root: Path, settings: LibrarySettings, pending: dict[str, Any], keep: int,
    should_stop: StopFn | None, batch_size: int | None, get_backbone: BackboneFn | None,
) -> Generator[FinetuneProgress, None, FinetuneResult]:
    target = cat.model(int(pending["new"]))
    old = cat.model(int(pending["old"])) or cat.active_model()
    new_hasher = versions.load_version(root, target)
    sources = [(m, versions.load_version(root, m)) for m in _source_models(cat, target, old)]
    exact_mode = pending.get("reencode", "exact") == "exact" and get_backbone is not None
    batch_size = batch_size or (EMBED_BATCH if exact_mode else REENCODE_BATCH)
    total = len(versions.missing_codes(cat, target.id))
    done, exact, approx, last = 0, int(pending.get("exact_codes", 0)), 0, 0
    t0 = time.perf_counter()
    yield FinetuneProgress("encode", 0, total, message=f"Re-encoding {total:,} photos")
    while True:
        if _stopping(should_stop):
            raise CancelledError(
                "Fine-tuning was paused during re-encoding; it resumes where it stopped next time."
            )
        batch = versions.missing_codes(cat, target.id, limit=batch_size, after=last)
        if not batch:
            break
        embedded = None
        if exact_mode:
            outside = sorted(set(batch) - cat.reservoir_ids(batch))
            embedded = embed_photos(cat, get_backbone, settings, outside, should_stop) if outside else {}
            if _stopping(should_stop):
                continue  # the batch is not stored; the check above ends the loop
        got, codes, n_exact = encode_for(cat, root, target, new_hasher, batch, sources, embedded)
        with cat.transaction():
            cat.put_codes(target.id, got, codes)
        kill_point("reencoded")
        exact += n_exact
        approx += len(got) - n_exact
        done += len(batch)
        last = batch[-1]  # photos with no code to start from are left for the indexer
        rate = done / max(time.perf_counter() - t0, 1e-9)
        yield FinetuneProgress(
            "encode", min(done, total), total, rate, max(total - done, 0) / rate,
            f"Re-encoding: {min(done, total):,}/{total:,} photos",
        )
    yield FinetuneProgress("swap", 0, 1, message="Switching versions")
    activate = bool(pending.get("activate"))
    with cat.transaction():
        # Photos indexed after the loop (another process) still get their code before the swap.
        late = versions.missing_codes(cat, target.id)
        if late:
            got, codes, _ = encode_for(cat, root, target, new_hasher, late, sources)
            cat.put_codes(target.id, got, codes)
        if activate:
            versions.activate(cat, target.id)
        cat.delete_meta(PENDING_KEY)
    removed = prune_models(cat, root, keep, protect=(target.id,))
    old_m, new_m = pending.get("old_metrics", {}), pending.get("new_metrics", {})
    better = bool(pending.get("better"))
    if activate and better:
        message = f"Version {target.id} is better on your photos and answers searches now."
    elif activate:
        message = f"Version {target.id} was not better on held-out photos but is active, as asked."
    else:
        message = (
            f"Version {target.id} was not better on held-out photos; version {old.id} stays active "
            f"(use `models activate {target.id}` to switch anyway)."
        )
    yield FinetuneProgress("swap", 1, 1, message=message)
    return FinetuneResult(
        old_model=old.id, new_model=target.id, activated=activate, better=better,
        old_metrics=old_m, new_metrics=new_m, held_out=int(pending.get("held_out", 0)),
        trained_on=int(pending.get("trained_on", 0)), warm_start=bool(pending.get("warm_start")),
        exact_codes=exact, approx_codes=approx, seconds=0.0, removed_models=removed,
        message=message, method=str(pending.get("method", target.method)),
        comparison=list(pending.get("comparison", [])),
    )


def _source_models(cat: Catalog, target: ModelRow, preferred: ModelRow | None) -> list[ModelRow]:
    """Versions whose codes can be decoded to re-encode for `target`: the preferred one first,
    then the active one, then the others, newest first."""
    models = [m for m in cat.models() if m.id != target.id]
    return sorted(models, key=lambda m: (
        0 if preferred is not None and m.id == preferred.id else 1 if m.active else 2, -m.id,
    ))


# --- versions --------------------------------------------------------------------------------
def list_models(root: Path) -> list[ModelInfo]:
    """The kept versions with their recorded metrics, oldest first."""
    cat = _open(root, read_only=True)
    try:
        population = cat.population()
        out = []
        for m in cat.models():
            try:
                doc = json.loads((version_path(root, m.dir) / META_FILE).read_text())
            except (OSError, ValueError, ImagehashError):
                doc = {}
            n = cat.embedded_code_count(m.id)
            out.append(ModelInfo(
                m.id, m.method, m.bits, m.active, m.created, m.train_size, m.note,
                doc.get("metrics", {}), n >= population,
            ))
        return out
    finally:
        cat.close()


def activate_model(root: Path, model_id: int) -> ModelInfo:
    """Make a kept version answer searches (instant roll back). Photos indexed since it was last
    active get its code first (from their reservoir feature or another version's code)."""
    cat = _open(root)
    try:
        target = cat.model(int(model_id))
        if target is None:
            known = ", ".join(str(m.id) for m in cat.models()) or "none"
            raise ImagehashError(f"There is no version {model_id} in this library (kept: {known}).")
        pending = cat.get_json(PENDING_KEY)
        if pending is not None and int(pending.get("new", -1)) == target.id:
            raise ImagehashError(
                f"Version {target.id} is still being re-encoded; run `finetune` again to finish it."
            )
        hasher = versions.load_version(root, target)
        sources = [(m, versions.load_version(root, m)) for m in _source_models(cat, target, cat.active_model())]
        with cat.transaction():
            missing = versions.missing_codes(cat, target.id)
            if missing:
                got, codes, _ = encode_for(cat, root, target, hasher, missing, sources)
                cat.put_codes(target.id, got, codes)
            versions.activate(cat, target.id)
    finally:
        cat.close()
    return next(m for m in list_models(root) if m.id == int(model_id))


# --- suggestion ------------------------------------------------------------------------------
def suggestion(root: Path) -> str | None:
    """A sentence for the person when the library grew or changed enough since the active version
    was trained on it (photos added since ≥ SUGGEST_FACTOR - 1 times those it was trained on)."""
    cat = _open(root, read_only=True)
    try:
        active = cat.active_model()
        if active is None or cat.get_json(PENDING_KEY) is not None:
            return None
        population = cat.population()
        try:
            doc = json.loads((version_path(root, active.dir) / META_FILE).read_text())
        except (OSError, ValueError, ImagehashError):
            doc = {}
        base = int(doc.get("library_population") or active.train_size or 0)
        added = cat.embedded_since(active.created)
    finally:
        cat.close()
    if base <= 0 or population < MIN_RESERVOIR:
        return None
    if added < (SUGGEST_FACTOR - 1.0) * base and population < SUGGEST_FACTOR * base:
        return None
    return (
        f"{added:,} photos were added since the search was last trained on your library "
        f"({base:,} then, {population:,} now). Library > Improve search for my photos… adapts it."
    )

