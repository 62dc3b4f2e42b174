"""The feature reservoir: uniform over the photos currently in the library, bounded, float16."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagehash_app.core.reservoir import (
    ADD,
    SKIP,
    RandomPairingSampler,
    SamplerState,
    reservoir_add,
    reservoir_remove,
    shrink_reservoir,
)
from imagehash_app.core.store import Catalog


def chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square (Wilson-Hilferty approximation)."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * np.sqrt(a)) ** 3


def simulate(trial: int, capacity: int, first: int, deleted: range, later: int) -> set[int]:
    """Insert `first` items, delete `deleted`, insert `later` more; return the sampled items."""
    sampler = RandomPairingSampler(capacity, SamplerState(), np.random.default_rng([7, trial]))
    slots: list[int | None] = [None] * capacity
    for item in range(first + later):
        if item == first:
            for gone in deleted:
                inside = gone in slots
                if inside:
                    slots[slots.index(gone)] = None
                sampler.remove(inside)
        decision = sampler.insert()
        if decision == ADD:
            slots[slots.index(None)] = item
        elif decision != SKIP:
            slots[decision] = item
    return {s for s in slots if s is not None}


def test_sample_is_uniform_over_current_items_after_deletions() -> None:
    capacity, first, later, trials = 12, 48, 24, 2000
    deleted = range(8, 32)  # a block of early items leaves the library
    alive = [i for i in range(first + later) if i not in deleted]
    counts = dict.fromkeys(alive, 0)
    for trial in range(trials):
        sample = simulate(trial, capacity, first, deleted, later)
        assert len(sample) == capacity and sample <= set(alive)
        for item in sample:
            counts[item] += 1
    expected = trials * capacity / len(alive)
    observed = np.array(list(counts.values()), dtype=float)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < chi2_critical(len(alive) - 1), chi2
    # and not trivially: early and late items are both well represented
    assert observed[: first - len(deleted)].mean() > 0.8 * expected
    assert observed[first - len(deleted):].mean() > 0.8 * expected


def make_images(cat: Catalog, root: Path, n: int) -> list[int]:
    with cat.transaction():
        folder = cat.add_folder(root)
        return [
            cat.conn.execute(
                "INSERT INTO images(folder_id, rel_path, size, mtime_ns, status, indexed_at) "
                "VALUES (?, ?, 1, 1, 'indexed', 1.0)", (folder.id, f"{i}.jpg"),
            ).lastrowid
            for i in range(n)
        ]


def test_catalogue_reservoir_is_bounded_and_removed_images_leave_it(tmp_path: Path) -> None:
    cat = Catalog.open(tmp_path / "catalog.sqlite3")
    ids = make_images(cat, tmp_path, 50)
    feats = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    for start in range(0, 50, 10):
        with cat.transaction():
            reservoir_add(cat, ids[start : start + 10], feats[start : start + 10], 10, seed=3)
    assert cat.reservoir_count() == 10
    slots = sorted(r[0] for r in cat.conn.execute("SELECT slot FROM reservoir"))
    assert slots == list(range(10))
    kept, stored = cat.load_reservoir()
    np.testing.assert_allclose(stored, feats[kept - ids[0]], atol=1e-2)  # float16 storage
    assert cat.reservoir_bytes() == 10 * 8 * 2
    with cat.transaction():
        reservoir_remove(cat, kept[:3].tolist())
        cat.conn.executemany("DELETE FROM images WHERE id = ?", [(int(i),) for i in kept[:3]])
    assert cat.reservoir_count() == 7
    assert (cat.get_int("reservoir_c1"), cat.get_int("reservoir_c2")) == (3, 0)
    with cat.transaction():
        shrink_reservoir(cat, 4, seed=0)
    assert cat.reservoir_count() == 4
    assert sorted(r[0] for r in cat.conn.execute("SELECT slot FROM reservoir")) == [0, 1, 2, 3]
    cat.close()


def test_reservoir_decisions_are_reproducible(tmp_path: Path) -> None:
    kept = []
    for run in range(2):
        cat = Catalog.open(tmp_path / f"c{run}.sqlite3")
        ids = make_images(cat, tmp_path, 30)
        feats = np.ones((30, 4), np.float32)
        for start in range(0, 30, 7):
            with cat.transaction():
                reservoir_add(cat, ids[start : start + 7], feats[start : start + 7], 5, seed=1)
        kept.append(cat.load_reservoir()[0].tolist())
        cat.close()
    assert kept[0] == kept[1]
