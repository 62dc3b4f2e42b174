"""A bounded, uniform sample of the library's real features: what the hasher trains on.

Only these features are kept (as float16, half the bytes of float32, ample for training); every
other photo is stored as its binary code alone. Files come and go, so plain reservoir sampling
(Algorithm R) is extended with *random pairing* (Gemulla, Lehner & Haas, VLDB 2006): a deletion is
remembered as uncompensated and paired with a later insertion, which keeps the sample uniform over
the photos currently in the library. The sampler's counters are persisted in the catalogue and its
random numbers are derived from (seed, insertions so far), so results do not depend on restarts.

Whether the sample changed since the hasher was last fit is kept beside it (`CHANGED_KEY`), set in
the transaction that changes it: a run killed after embedding still refits the fallback hasher
when it resumes, as the run that was never interrupted would have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from imagehash_app.core.store import FEATURE_DTYPE, Catalog

__all__ = [
    "FEATURE_DTYPE", "RandomPairingSampler", "changed_since_fit", "clear_changed", "reservoir_add",
    "reservoir_remove", "shrink_reservoir",
]
_KEYS = ("reservoir_seen", "reservoir_c1", "reservoir_c2")
CHANGED_KEY = "changed_since_fit"  # meta key: photos were embedded or removed since the last fit


@dataclass
class SamplerState:
    """population: items currently in the library; sample: items kept; c1/c2: uncompensated
    deletions from inside / outside the sample; seen: insertions ever (seeds the RNG)."""

    population: int = 0
    sample: int = 0
    c1: int = 0
    c2: int = 0
    seen: int = 0


ADD = -1  # insert() result: keep the item in a free slot
SKIP = -2  # insert() result: do not keep it


class RandomPairingSampler:
    """Decides, insertion by insertion, whether an item enters a sample of at most `capacity`."""

    def __init__(self, capacity: int, state: SamplerState, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.state = state
        self.rng = rng

    def insert(self) -> int:
        """Returns ADD, SKIP, or the slot (0 ≤ slot < capacity) whose item is replaced."""
        s = self.state
        s.population += 1
        s.seen += 1
        if s.c1 + s.c2 == 0:
            if s.sample < self.capacity:
                s.sample += 1
                return ADD
            if self.rng.random() * s.population < self.capacity:
                return int(self.rng.integers(self.capacity))
            return SKIP
        if self.rng.random() * (s.c1 + s.c2) < s.c1:
            s.c1 -= 1
            s.sample += 1
            return ADD
        s.c2 -= 1
        return SKIP

    def remove(self, in_sample: bool) -> None:
        """An item left the library; it was in the sample or not."""
        s = self.state
        s.population -= 1
        if in_sample:
            s.sample -= 1
            s.c1 += 1
        else:
            s.c2 += 1


def _load_state(cat: Catalog) -> SamplerState:
    seen, c1, c2 = (cat.get_int(k) for k in _KEYS)
    return SamplerState(cat.population(), cat.reservoir_count(), c1, c2, seen)


def _save_state(cat: Catalog, state: SamplerState) -> None:
    for key, value in zip(_KEYS, (state.seen, state.c1, state.c2), strict=True):
        cat.set_meta(key, str(value))


def _free_slots(cat: Catalog, capacity: int, sample: int) -> Iterator[int]:
    """The free slots, lowest first. Slots fill from 0 and only deletions leave holes, so a dense
    sample (the common case) needs no scan of the table."""
    top = cat.reservoir_top_slot()
    if top is None or top + 1 == sample:
        return iter(range(sample, capacity))
    used = cat.reservoir_slots()
    return (slot for slot in range(capacity) if slot not in used)


def reservoir_add(
    cat: Catalog, image_ids: Sequence[int], features: np.ndarray, capacity: int, seed: int
) -> int:
    """Offer newly embedded images (already marked indexed) to the reservoir; call inside the
    batch's transaction. Returns how many were kept."""
    state = _load_state(cat)
    state.population -= len(image_ids)  # the batch was counted in population already
    rng = np.random.default_rng([seed, state.seen])
    sampler = RandomPairingSampler(capacity, state, rng)
    free = _free_slots(cat, capacity, state.sample)
    blobs = np.ascontiguousarray(features, dtype=FEATURE_DTYPE)
    kept = 0
    for image_id, row in zip(image_ids, blobs, strict=True):
        decision = sampler.insert()
        if decision == SKIP:
            continue
        replace = decision != ADD
        if decision == ADD:
            slot = next(free, None)
            if slot is None:  # capacity shrank below the stored sample: treat as a replacement
                slot, replace = int(rng.integers(capacity)), True
        else:
            slot = decision
        cat.reservoir_put(int(image_id), slot, row.tobytes(), replace=replace)
        kept += 1
    _save_state(cat, state)
    if len(image_ids):
        cat.set_meta(CHANGED_KEY, "1")
    return kept


def reservoir_remove(cat: Catalog, image_ids: Sequence[int]) -> None:
    """Images leave the library (deleted, changed, folder removed): account for them in the
    sampler and drop their features. Call inside a transaction, before deleting the rows."""
    ids = [int(i) for i in image_ids]
    if not ids:
        return
    in_population = cat.embedded_among(ids)
    state = _load_state(cat)
    sampled = cat.reservoir_ids(in_population)
    sampler = RandomPairingSampler(1, state, np.random.default_rng(0))
    for image_id in in_population:
        sampler.remove(image_id in sampled)
    cat.reservoir_delete(sampled)
    _save_state(cat, state)
    if in_population:
        cat.set_meta(CHANGED_KEY, "1")


def changed_since_fit(cat: Catalog) -> bool:
    """Photos were embedded or removed since the last fit was decided (`clear_changed`)."""
    return cat.get_meta(CHANGED_KEY) == "1"


def clear_changed(cat: Catalog) -> None:
    """A fit was decided on the sample as it is now; call inside that decision's transaction."""
    cat.set_meta(CHANGED_KEY, "0")


def shrink_reservoir(cat: Catalog, capacity: int, seed: int) -> None:
    """Apply a smaller reservoir size: keep a uniform random subset and renumber the slots."""
    rows = cat.reservoir_image_ids()
    if len(rows) <= capacity:
        return
    rng = np.random.default_rng([seed, len(rows), capacity])
    keep = set(rng.choice(rows, size=capacity, replace=False).tolist())
    cat.reservoir_delete([i for i in rows if i not in keep])
    cat.reservoir_renumber(sorted(keep))

