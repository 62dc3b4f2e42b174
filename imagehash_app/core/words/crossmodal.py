"""Text queries over a library: train UGACH on its words, keep its image-side codes, answer words.

The image side of UGACH gives every photo a second code, used only by text queries; search by
example keeps the main hasher. Photo features come from the reservoir where it holds them, and
from the main hasher's decoder otherwise (the library keeps no other real feature).
"""

from __future__ import annotations

import contextlib
import queue
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import numpy as np

from imagehash_app.core.codes import hamming_topk, words_for
from imagehash_app.core.errors import ImagehashError
from imagehash_app.core.hashing.base import Hasher
from imagehash_app.core.hashing.ugach import UGACH, UGACHParams
from imagehash_app.core.store import Catalog, ModelRow
from imagehash_app.core.versions import UnsafeLibraryPathError, own_folder
from imagehash_app.core.words.bags import Vocabulary
from imagehash_app.core.words.results import TextAnswer, TextResult, WordsFinetuneResult, WordsPlan
from imagehash_app.core.words.tokens import words

WORDS_DIR = "words"
_WORDS_NAME = re.compile(r"ugach-[0-9a-f]{8}")  # the folders `finetune` makes (secrets.token_hex(4))
# Offered only from here. Measured (docs/results-words.md): on flowers5 with 1% of photos
# tagged (43 photos) UGACH is no better than the mean-feature baseline; from about 5% (200
# photos, 40 per word) it is. Below 50 photos and 2 words there is nothing to learn a space from.
MIN_PHOTOS_WITH_WORDS = 50
MIN_VOCABULARY = 2
HELD_OUT_SHARE = 0.2
CANDIDATES = 200  # Hamming candidates re-ranked per text query (at least 10 × top_k)
DEFAULT_EPOCHS = 20  # half pre-training the discriminator, half adversarial
# The app trains UGACH without its generator by default: on flowers5 that variant measured mAP
# 0.678 against the full model's 0.294 (docs/results-words.md: the generator picks same-class photos
# the graph did not link and the discriminator pushes them away). `words train --adversarial`
# trains the full model.
ADVERSARIAL = False


# --- photo features -----------------------------------------------------------------------------------------
def photo_features(cat: Catalog, hasher: Hasher, model: ModelRow, image_ids: Sequence[int]) -> np.ndarray:
    """(n, d) features: the reservoir's where kept, the main hasher's decoded codes otherwise
    (a photo with neither gets zeros)."""
    ids = [int(i) for i in image_ids]
    out = np.zeros((len(ids), hasher.feature_dim), dtype=np.float32)
    kept = cat.reservoir_features(ids)
    rest = [i for i in ids if i not in kept]
    codes = cat.codes_of(model.id, rest, words_for(model.bits)) if rest else {}
    decoded = {}
    if codes:
        order = list(codes)
        decoded = dict(zip(order, hasher.decode(np.stack([codes[i] for i in order])), strict=True))
    for row, iid in enumerate(ids):
        f = kept.get(iid)
        if f is None:
            f = decoded.get(iid)
        if f is not None:
            out[row] = f
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def bags_by_photo(cat: Catalog) -> dict[int, list[str]]:
    bags: dict[int, list[str]] = {}
    for iid, word in cat.all_photo_words():
        bags.setdefault(int(iid), []).append(word)
    return bags


# --- offering and training ------------------------------------------------------------------------------------
def plan(cat: Catalog) -> WordsPlan:
    with_words = cat.photos_with_words()
    vocab = Vocabulary.fit(list(bags_by_photo(cat).values()))
    if with_words < MIN_PHOTOS_WITH_WORDS or len(vocab) < MIN_VOCABULARY:
        return WordsPlan(False, (
            f"Search by words learns from photos that carry words (folder names, file names, "
            f"keywords); {with_words} photos carry words and {len(vocab)} words are shared by "
            f"several, it needs at least {MIN_PHOTOS_WITH_WORDS} photos and {MIN_VOCABULARY} words."
        ), with_words, len(vocab))
    return WordsPlan(True, (
        f"{with_words} photos carry words ({len(vocab)} shared words): search by words can learn "
        f"from them."
    ), with_words, len(vocab))


def train(
    cat: Catalog, root: Path, hasher: Hasher, model: ModelRow, *,
    params: UGACHParams | None = None, should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> WordsFinetuneResult:
    """Fit UGACH on 80% of the word-carrying photos (and every photo's feature), score text
    queries on the other 20% against the active version and the mean-feature baseline, save and
    register the new version (inactive) with every photo's image-side code."""
    started = time.perf_counter()
    proposal = plan(cat)
    if not proposal.offered:
        raise ImagehashError(proposal.reason)
    params = params or UGACHParams()
    ids = np.asarray(sorted(cat.image_ids_indexed()), dtype=np.int64)
    bags = bags_by_photo(cat)
    carriers = np.asarray([i for i in ids if i in bags], dtype=np.int64)
    rng = np.random.default_rng(params.seed)
    held = set(rng.choice(carriers, size=max(1, int(len(carriers) * HELD_OUT_SHARE)), replace=False).tolist())
    train_ids = [int(i) for i in carriers if int(i) not in held]
    vocab = Vocabulary.fit([bags[i] for i in train_ids])
    X = photo_features(cat, hasher, model, ids)
    where = {int(i): r for r, i in enumerate(ids)}
    pairs = np.asarray([where[i] for i in train_ids if vocab.known(bags[i])], dtype=np.int64)
    T = vocab.transform([bags[int(ids[p])] for p in pairs])
    ugach = UGACH(X.shape[1], len(vocab), params).fit(X, T, pairs, should_stop, progress)
    if should_stop is not None and should_stop():
        raise ImagehashError("The words fine-tune was stopped; nothing changed.")
    held_rows = np.asarray([where[i] for i in sorted(held)], dtype=np.int64)
    eval_pool = np.asarray([r for r in range(len(ids)) if int(ids[r]) not in set(train_ids)])
    queries = _held_out_queries(vocab, [bags[int(ids[r])] for r in held_rows])
    image_codes = ugach.encode_images(X)
    metrics = _evaluate(lambda q: _hamming_order(ugach, vocab, image_codes, q, eval_pool),
                        queries, ids, eval_pool, held_rows, bags)
    train_rows = np.asarray([where[i] for i in train_ids], dtype=np.int64)
    baseline = _evaluate(lambda q: _mean_feature_order(X, train_rows, ids, bags, q, eval_pool),
                         queries, ids, eval_pool, held_rows, bags)
    previous = cat.active_word_model()
    previous_metrics = None
    if previous is not None:
        try:
            old, doc = UGACH.load(words_path(root, previous.dir))
            old_vocab = Vocabulary(doc["vocabulary"], np.asarray(doc["idf"], np.float32))
            old_codes = old.encode_images(X)
            previous_metrics = _evaluate(
                lambda q: _hamming_order(old, old_vocab, old_codes, q, eval_pool),
                queries, ids, eval_pool, held_rows, bags)
        except (OSError, ValueError, KeyError):
            previous_metrics = None
    directory = f"{WORDS_DIR}/ugach-{secrets.token_hex(4)}"
    ugach.save(root / directory, {
        "vocabulary": vocab.words, "idf": vocab.idf.tolist(), "metrics": metrics,
        "baseline_metrics": baseline, "trained_on": len(pairs), "held_out": len(held_rows),
        "hasher_model": model.id,
    })
    try:
        with cat.transaction():
            new_id = cat.add_word_model(directory, params.bits, _note(metrics, baseline))
            cat.put_word_codes(new_id, ids, image_codes)
    except BaseException:
        shutil.rmtree(root / directory, ignore_errors=True)
        raise
    better = previous_metrics is None or metrics["mAP"] >= previous_metrics["mAP"]
    return WordsFinetuneResult(
        new_id, previous.id if previous else None, metrics, previous_metrics, baseline,
        len(pairs), len(held_rows), round(time.perf_counter() - started, 1), better,
    )


def _note(metrics: dict[str, float], baseline: dict[str, float]) -> str:
    return (f"held-out word queries: mAP {metrics['mAP']:.3f} (mean-feature query "
            f"{baseline['mAP']:.3f})")


def _held_out_queries(vocab: Vocabulary, held_bags: list[list[str]]) -> list[str]:
    counts = Counter(w for b in held_bags for w in set(vocab.known(b)))
    return [w for w, c in counts.most_common(50) if c >= 2]


def _evaluate(order_of, queries, ids, pool, held_rows, bags) -> dict[str, float]:
    """mAP and P@10 of word queries: relevant = held-out photos carrying the word, ranked among
    every photo not trained on."""
    aps, p10 = [], []
    for word in queries:
        order = order_of(word)
        rel = np.array([word in bags.get(int(ids[r]), ()) for r in order])
        if rel.sum() == 0:
            continue
        hits = np.cumsum(rel)
        aps.append(float((hits / np.arange(1, len(rel) + 1))[rel].sum() / hits[-1]))
        p10.append(float(rel[:10].mean()))
    return {"mAP": float(np.mean(aps)) if aps else 0.0, "P@10": float(np.mean(p10)) if p10 else 0.0,
            "queries": len(aps)}


def _hamming_order(model: UGACH, vocab: Vocabulary, codes: np.ndarray, word: str, pool: np.ndarray):
    code = model.encode_texts(vocab.transform([[word]]))
    idx, _ = hamming_topk(code, codes[pool], len(pool))
    return pool[idx[0]]


def _mean_feature_order(X, train_rows, ids, bags, word, pool):
    carrying = [r for r in train_rows if word in bags.get(int(ids[r]), ())]
    proto = X[carrying].mean(0) if carrying else np.zeros(X.shape[1], np.float32)
    return pool[np.argsort(-(X[pool] @ proto), kind="stable")]


def finetune(
    cat: Catalog, root: Path, hasher: Hasher, model: ModelRow, **kwargs
) -> Generator[tuple[int, int, float], None, WordsFinetuneResult]:
    """`train` as a generator of (epoch, epochs, loss) as they come, returning its result. The
    fit runs on a helper thread while this one only relays its progress."""
    return (yield from _train_streaming(cat, root, hasher, model, queue.Queue(), **kwargs))


def _train_streaming(
    cat: Catalog, root: Path, hasher: Hasher, model: ModelRow, events: queue.Queue, **kwargs
) -> Generator[tuple[int, int, float], None, WordsFinetuneResult]:
    done = threading.Event()
    box: dict[str, object] = {}

    def progress(epoch: int, total: int, loss: float) -> None:
        events.put((epoch, total, loss))

    def work() -> None:
        try:
            box["result"] = train(cat, root, hasher, model, progress=progress, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=work, name="imagehash-words-fit", daemon=True)
    thread.start()
    try:
        while not (done.is_set() and events.empty()):
            try:
                yield events.get(timeout=0.2)
            except queue.Empty:
                continue
    finally:  # closed early (cancelled): the fit stops at its next epoch, before the catalogue closes
        thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]


def words_path(root: Path, rel: str) -> Path:
    """The folder of a words version as the catalogue names it, checked to be one this module
    makes (`words/ugach-<8 hex>` inside the library) before it is loaded or removed."""
    return own_folder(root, rel, WORDS_DIR, _WORDS_NAME)


def activate(cat: Catalog, root: Path, model_id: int | None) -> None:
    """Keep a words version (text queries use it), or roll back to another one (None: none)."""
    known = {m.id: m for m in cat.word_models()}
    if model_id is not None and model_id not in known:
        raise ImagehashError(f"There is no words version {model_id}; `imagehash-app status` lists them.")
    with cat.transaction():
        cat.set_active_word_model(model_id)
        for m in known.values():  # keep the active one and the newest other
            if m.id != model_id and m.id not in _keep(known, model_id):
                cat.delete_word_model(m.id)
                with contextlib.suppress(UnsafeLibraryPathError):  # a foreign name: left alone
                    shutil.rmtree(words_path(root, m.dir), ignore_errors=True)


def _keep(known: dict, active: int | None) -> set[int]:
    others = sorted((i for i in known if i != active), reverse=True)
    return set(others[:1]) | ({active} if active is not None else set())


def encode_missing(cat: Catalog, root: Path, hasher: Hasher, model: ModelRow) -> int:
    """Give photos indexed since the active words version was trained their image-side code."""
    active = cat.active_word_model()
    if active is None:
        return 0
    missing = cat.missing_word_codes(active.id)
    if not missing:
        return 0
    try:
        ugach, _ = UGACH.load(words_path(root, active.dir))
    except UnsafeLibraryPathError:
        # A folder name the app does not make: text queries stop using that version (search by
        # example and indexing go on); its folder, wherever it points, is left alone.
        with cat.transaction():
            cat.set_active_word_model(None)
        return 0
    for start in range(0, len(missing), 2048):
        chunk = missing[start : start + 2048]
        codes = ugach.encode_images(photo_features(cat, hasher, model, chunk))
        with cat.transaction():
            cat.put_word_codes(active.id, chunk, codes)
    return len(missing)


# --- answering --------------------------------------------------------------------------------------------------
def query_words(text: str) -> list[str]:
    return words(text)


def search(
    cat: Catalog, root: Path, hasher: Hasher | None, model: ModelRow | None, text: str, top_k: int,
) -> TextAnswer:
    """Photos for typed words: Hamming candidates from the text's code among the image-side codes,
    plus the photos carrying the words, re-ranked by cosine with the mean look of those photos.
    Without a words version, the photos carrying the words (by how many they carry)."""
    asked = query_words(text)
    known_words = {w for w, _ in cat.vocabulary()}
    found = [w for w in asked if w in known_words]
    answer = TextAnswer(found, [w for w in asked if w not in known_words])
    if not asked:
        answer.note = "Type a word that photos carry (a folder name, a keyword)."
        return answer
    if not found:
        answer.note = f"No photo carries {', '.join(asked)}."
        return answer
    bags = bags_by_photo(cat)
    carriers = [i for i, b in bags.items() if any(w in b for w in found)]
    matched = {i: sum(w in bags[i] for w in found) for i in carriers}
    active = cat.active_word_model()
    if active is None or hasher is None or model is None:
        answer.note = ("Only photos carrying these words: search by words has not learnt from "
                       "this library yet (Improve search… offers it once enough photos carry words).")
        order = sorted(carriers, key=lambda i: (-matched[i], i))[:top_k]
        paths = cat.paths_of(order)
        answer.results = [TextResult(paths[i], float(matched[i]) / len(found), 0,
                                     matched[i] == len(found)) for i in order if i in paths]
        return answer
    ugach, doc = UGACH.load(words_path(root, active.dir))
    vocab = Vocabulary(doc["vocabulary"], np.asarray(doc["idf"], np.float32))
    ids, codes = cat.load_word_codes(active.id, words_for(active.bits))
    if len(ids) == 0:
        return answer
    in_vocab = vocab.known(found)
    positions: dict[int, int] = {}
    hams = np.full(len(ids), active.bits, dtype=np.int64)
    if in_vocab:
        query_code = ugach.encode_texts(vocab.transform([in_vocab]))
        idx, dist = hamming_topk(query_code, codes, min(len(ids), max(CANDIDATES, 10 * top_k)))
        hams[idx[0]] = dist[0]
        positions = {int(ids[p]): int(p) for p in idx[0]}
    where = {int(i): p for p, i in enumerate(ids)}
    for i in carriers:
        if i in where:
            positions.setdefault(i, where[i])
    candidates = list(positions)
    feats = photo_features(cat, hasher, model, candidates + carriers)
    cand_f, carrier_f = feats[: len(candidates)], feats[len(candidates):]
    # Centred by the library's mean feature (kept by the model): pooled ReLU features share a
    # large common part, and the centred cosine ranks far better (docs/results-words.md).
    mean = ugach.image_mean
    proto = carrier_f.mean(0) - mean
    proto /= max(float(np.linalg.norm(proto)), 1e-12)
    centred = cand_f - mean
    scores = (centred @ proto) / np.maximum(np.linalg.norm(centred, axis=1), 1e-12)
    order = np.argsort(-scores, kind="stable")[:top_k]
    chosen = [candidates[o] for o in order]
    paths = cat.paths_of(chosen)
    answer.results = [
        TextResult(paths[i], float(scores[o]), int(hams[positions[i]]), matched.get(i, 0) == len(found))
        for i, o in zip(chosen, order, strict=True) if i in paths
    ]
    return answer


def suggest_keywords(
    cat: Catalog, root: Path, hasher: Hasher, model: ModelRow, image_id: int, limit: int = 10,
) -> list[tuple[str, float]]:
    """Words of the photo's nearest word-carrying neighbours in the shared Hamming space, by
    share of those neighbours carrying them; its own words left out."""
    active = cat.active_word_model()
    bags = bags_by_photo(cat)
    own = set(bags.get(image_id, ()))
    if active is None:
        return []
    ids, codes = cat.load_word_codes(active.id, words_for(active.bits))
    where = {int(i): p for p, i in enumerate(ids)}
    if image_id not in where:
        return []
    rows = np.asarray([p for p, i in enumerate(ids) if int(i) in bags and int(i) != image_id])
    if len(rows) == 0:
        return []
    k = min(20, len(rows))
    idx, _ = hamming_topk(codes[where[image_id]][None], codes[rows], k)
    counts = Counter(w for p in idx[0] for w in set(bags[int(ids[rows[p]])]) if w not in own)
    return [(w, c / k) for w, c in counts.most_common(limit)]
