"""Hasher versions, the one module both indexing and fine-tuning use: registering is one
transaction, 'codes still missing' means the same to both, and only recorded folders go."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagehash_app.core import versions
from imagehash_app.core.hashing import make_hasher
from imagehash_app.core.reservoir import reservoir_add
from imagehash_app.core.store import Catalog

DIM, BITS = 16, 32


@pytest.fixture
def cat(tmp_path: Path):
    """A catalogue with 12 embedded photos, 8 of them kept in the reservoir."""
    cat = Catalog.open(tmp_path / "catalog.sqlite3")
    with cat.transaction():
        folder = cat.add_folder(tmp_path)
        cat.apply_scan([], [], [], [(folder.id, f"p{i}.jpg", 1, 1) for i in range(12)], [])
    ids = [i for i, _ in cat.pending_paths()]
    feats = np.random.default_rng(0).standard_normal((12, DIM)).astype(np.float32)
    with cat.transaction():
        cat.mark_indexed([(None, 1, 1, 1.0, i) for i in ids])
        reservoir_add(cat, ids, feats, 8, seed=0)
    yield cat
    cat.close()


def _hasher(cat: Catalog):
    _, X = cat.load_reservoir()
    return make_hasher("itq", BITS, DIM).fit(X, seed=0)


def _register(cat: Catalog, ids, codes, then=None) -> int:
    return versions.register(
        cat, method="itq", bits=BITS, backbone="tiny", rel="models/itq-0123456789ab",
        train_size=len(ids), note="test", image_ids=ids, codes=codes, then=then,
    )


def test_register_is_one_transaction(cat: Catalog) -> None:
    ids, X = cat.load_reservoir()
    codes = _hasher(cat).encode(X)

    def fail(model_id: int) -> None:
        raise RuntimeError("killed before the commit")

    with pytest.raises(RuntimeError):
        _register(cat, ids, codes, then=fail)
    assert cat.models() == [] and len(cat.load_codes(1, 1)[0]) == 0  # no row, no codes
    assert len(cat.missing_codes(1)) == 12
    model_id = _register(cat, ids, codes)
    assert [m.id for m in cat.models()] == [model_id] and not cat.models()[0].active
    loaded_ids, loaded = cat.load_codes(model_id, 1)
    assert loaded_ids.tolist() == ids.tolist() and (loaded == codes).all()


def test_codes_still_missing_for_indexing_and_fine_tuning(cat: Catalog) -> None:
    hasher = _hasher(cat)
    ids, X = cat.load_reservoir()
    model_id = _register(cat, ids[:3], hasher.encode(X[:3]))
    embedded = sorted(cat.embedded_among(range(1, 13)))
    assert versions.missing_codes(cat, model_id) == [i for i in embedded if i not in ids[:3]]
    assert versions.missing_codes(cat, model_id, limit=2, after=embedded[0]) == [
        i for i in embedded if i not in ids[:3] and i > embedded[0]
    ][:2]
    assert versions.missing_codes(cat, model_id, sampled_only=True) == ids[3:].tolist()
    with cat.transaction():
        assert versions.encode_sampled(cat, model_id, lambda: hasher) == len(ids) - 3
        versions.activate(cat, model_id)
    assert versions.missing_codes(cat, model_id, sampled_only=True) == []
    assert len(versions.missing_codes(cat, model_id)) == 12 - len(ids)  # outside the reservoir
    assert (cat.load_codes(model_id, 1)[1] == hasher.encode(X)).all()  # exact, from the features
    assert cat.active_model().id == model_id


def test_discard_unregistered_removes_only_the_apps_unregistered_folder(cat: Catalog) -> None:
    root = cat.path.parent
    mine = root / "models" / "itq-0123456789ab"
    registered = root / "models" / "itq-ba9876543210"
    theirs = root / "models" / "mywork"
    for folder in (mine, registered, theirs):
        folder.mkdir(parents=True)
        (folder / "f").write_text("x")
    ids, X = cat.load_reservoir()
    versions.register(
        cat, method="itq", bits=BITS, backbone="tiny", rel="models/itq-ba9876543210",
        train_size=len(ids), note="", image_ids=[], codes=np.zeros((0, 1), np.uint64),
    )
    for name in ("itq-ba9876543210", "mywork", "../mywork", "itq-0123456789ab"):
        versions.discard_unregistered(cat, root, name)
    assert not mine.exists() and registered.is_dir() and theirs.is_dir()
