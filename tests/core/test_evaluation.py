"""Metrics against slow, obviously-correct references; protocol helpers; the eval command end to end."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from imagehash_app.cli import eval as cli_eval
from imagehash_app.core.codes import pack_signs
from imagehash_app.core.evaluation import (
    Benchmark,
    FeatureSet,
    average_precision,
    hamming_rankings,
    labelled_images,
    rerank,
    split_per_class,
)


def slow_ap(rel: list[bool], k: int | None, total: int) -> float:
    top = rel if k is None else rel[:k]
    hits, acc = 0, 0.0
    for i, r in enumerate(top, start=1):
        if r:
            hits += 1
            acc += hits / i
    denom = hits if k is not None else total
    return acc / denom if denom else 0.0


def test_average_precision_matches_reference() -> None:
    rng = np.random.default_rng(0)
    rel = rng.random((6, 20)) < 0.3
    rel[0] = False
    total = rel.sum(axis=1) + 2  # two relevant items never retrieved
    got_all = average_precision(rel, total_relevant=total)
    got_k = average_precision(rel, k=7)
    for i in range(6):
        assert got_all[i] == pytest.approx(slow_ap(list(rel[i]), None, int(total[i])))
        assert got_k[i] == pytest.approx(slow_ap(list(rel[i]), 7, 0))


def test_hamming_ties_break_by_index() -> None:
    signs = np.array([[1, 1, 1, 1], [-1, 1, 1, 1], [1, -1, 1, 1], [1, 1, 1, 1], [-1, -1, -1, -1]])
    order = next(hamming_rankings(pack_signs(signs[:1]), pack_signs(signs), 4))
    assert order.tolist() == [[0, 3, 1, 2, 4]]


def test_benchmark_scores_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = rng.integers(0, 3, 40)
    Q, D, ql, dl = X[:5], X[5:], labels[:5], labels[5:]
    codes = pack_signs(X @ rng.standard_normal((6, 8)))
    bench = Benchmark(Q, D, ql, dl, map_k=10, p_k=5)
    got = bench.score_codes(codes[:5], codes[5:], 8, (10, 20))
    qs = np.unpackbits(codes[:5].view(np.uint8), axis=1, bitorder="little")[:, :8]
    ds = np.unpackbits(codes[5:].view(np.uint8), axis=1, bitorder="little")[:, :8]
    aps, apk, pk, r10, r20 = [], [], [], [], []
    for i in range(5):
        dist = [int((qs[i] != ds[j]).sum()) for j in range(35)]
        order = sorted(range(35), key=lambda j: (dist[j], j))
        truth = sorted(range(35), key=lambda j: -float(Q[i] @ D[j]))[:10]
        rel = [bool(dl[j] == ql[i]) for j in order]
        aps.append(slow_ap(rel, None, int((dl == ql[i]).sum())))
        apk.append(slow_ap(rel, 10, 0))
        pk.append(sum(rel[:5]) / 5)
        r10.append(len(set(truth) & set(order[:10])) / 10)
        r20.append(len(set(truth) & set(order[:20])) / 10)
    assert got["mAP"] == pytest.approx(np.mean(aps))
    assert got["mAP@10"] == pytest.approx(np.mean(apk))
    assert got["P@5"] == pytest.approx(np.mean(pk))
    assert got["recall10@10"] == pytest.approx(np.mean(r10))
    assert got["recall10@20"] == pytest.approx(np.mean(r20))
    assert bench.score_float((10,))["recall10@10"] == 1.0


def test_rerank_with_exact_features_recovers_float_order() -> None:
    rng = np.random.default_rng(2)
    D = rng.standard_normal((30, 5)).astype(np.float32)
    q = rng.standard_normal((1, 5)).astype(np.float32)
    order = np.arange(30)[None, :]
    out = rerank(q, order, lambda idx: D[idx], 12)
    head = np.argsort(-(D[:12] @ q[0]), kind="stable")
    assert out[0, :12].tolist() == head.tolist() and out[0, 12:].tolist() == list(range(12, 30))


def test_split_per_class_is_seeded_and_disjoint() -> None:
    labels = np.repeat(np.arange(4), 10)
    a, b = split_per_class(labels, 3, seed=7), split_per_class(labels, 3, seed=7)
    assert np.array_equal(a.queries, b.queries) and len(a.queries) == 12
    assert np.bincount(labels[a.queries]).tolist() == [3, 3, 3, 3]
    assert not set(a.queries) & set(a.database) and len(a.database) == 28


def test_labelled_images_use_the_folder_that_holds_each_image(tmp_path) -> None:
    for rel in (
        "train/cat/a.jpg",
        "train/dog/b.png",
        "test/cat/c.jpg",
        ".hidden/cat/d.jpg",
        "train/cat/notes.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    paths, labels, classes = labelled_images(tmp_path, frozenset({".jpg", ".png"}))
    assert classes == ["cat", "dog"]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "test/cat/c.jpg",
        "train/cat/a.jpg",
        "train/dog/b.png",
    ]
    assert labels.tolist() == [0, 0, 1]


def test_eval_command_on_a_feature_cache(tmp_path, capsys) -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((4, 16)) * 2
    labels = np.repeat(np.arange(4), 60).astype(np.int32)
    X = (centres[labels] + rng.standard_normal((240, 16))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cache = tmp_path / "f.npz"
    FeatureSet(
        X, labels, ["a", "b", "c", "d"], [f"{i}.jpg" for i in range(240)], {"backbone": "tiny"}
    ).save(cache)
    parser = argparse.ArgumentParser()
    cli_eval.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "eval",
            "--features-cache",
            str(cache),
            "--methods",
            "itq,lsh",
            "--bits",
            "8,16",
            "--queries-per-class",
            "5",
            "--train",
            "100",
            "--rerank",
            "50",
            "--refine",
            "none,decoder",
            "--map-k",
            "50",
            "--json",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert cli_eval.run(args) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["queries"] == 20 and doc["train"] == 100 and len(doc["rows"]) == 1 + 2 * 2 * 2
    assert doc["rows"][0]["method"] == "float" and doc["rows"][0]["recall10@10"] == 1.0
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert "mAP@50" in capsys.readouterr().out


# -- seed 003's two-stage comparison --------------------------------------------------------------
def _eval_args(tmp_path, *extra: str) -> argparse.Namespace:
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((3, 12)) * 2
    labels = np.repeat(np.arange(3), 40).astype(np.int32)
    X = (centres[labels] + rng.standard_normal((120, 12))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cache = tmp_path / "f.npz"
    FeatureSet(X, labels, ["a", "b", "c"], [f"{i}.jpg" for i in range(120)], {}).save(cache)
    parser = argparse.ArgumentParser()
    cli_eval.add_parser(parser.add_subparsers())
    base = ["eval", "--features-cache", str(cache), "--queries-per-class", "4"]
    base += ["--rerank", "30", "--map-k", "40", "--json", str(tmp_path / "r.json")]
    return parser.parse_args([*base, *extra])


def test_eval_all_methods_give_every_column_after_every_refinement(tmp_path) -> None:
    """--methods all: every registered method, each refinement, every metric column, the plot."""
    from test_hashing import FAST
    from test_seed_hashers_supervised import FAST as FAST_SEED

    from imagehash_app.core.evaluation import REFINEMENTS
    from imagehash_app.core.hashing import METHODS

    fast = {**FAST, **FAST_SEED}
    params = [
        f"{m}.{k}={json.dumps(v)}" for m, kv in fast.items() if m in METHODS for k, v in kv.items()
    ]
    extra = ["--methods", "all", "--bits", "8,16", "--labelled-per-class", "20"]
    extra += ["--plot", str(tmp_path / "p.png")]
    for item in params:
        extra += ["--hasher-param", item]
    assert cli_eval.run(_eval_args(tmp_path, *extra)) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["labelled"] == 60 and doc["refinements"] == list(REFINEMENTS)
    rows = doc["rows"][1:]
    assert len(rows) == len(METHODS) * 2 * len(REFINEMENTS)
    columns = ("mAP@40", "P@10", "recall10@10", "recall10@100", "fit_s", "encode_us", "bytes")
    for method in METHODS:
        for bits in (8, 16):
            got = {r["refine"]: r for r in rows if r["method"] == method and r["bits"] == bits}
            assert set(got) == set(REFINEMENTS), (method, bits)
            for r in got.values():
                assert all(isinstance(r[c], (int, float)) for c in columns), (method, r)
                assert 0.0 <= r["mAP@40"] <= 1.0 and r["bytes"] == 8
            # the exact-feature ceiling re-ranks the same candidates as every other strategy
            assert got["float"]["recall10@30"] >= got["none"]["recall10@30"] - 1e-12
            assert got["float"]["recall10@30"] == got["decoder"]["recall10@30"]
    by = {(r["method"], r["bits"]): r for r in rows if r["refine"] == "none"}
    assert (
        by[("deepquan", 16)]["first_stage"] == "adc" and by[("lsh", 16)]["first_stage"] == "hamming"
    )
    sup = [r for r in rows if r["method"] in ("dsh", "dpsh", "dsdh")]
    assert sup and all(r["fit_rows"] == 60 for r in sup)
    assert all(r["fit_rows"] == doc["train"] for r in rows if r["method"] in ("lsh", "itq"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_eval_refuses_unknown_refinements_and_parameters(tmp_path, capsys) -> None:
    assert cli_eval.run(_eval_args(tmp_path, "--methods", "lsh", "--refine", "magic")) == 2
    assert "magic" in capsys.readouterr().err
    assert cli_eval.run(_eval_args(tmp_path, "--methods", "lsh", "--hasher-param", "x.y=1")) == 2
    assert "METHOD.KEY=VALUE" in capsys.readouterr().err


def test_asymmetric_refinement_ranks_by_real_output_against_signs(tmp_path) -> None:
    from imagehash_app.core.evaluation import refiners
    from imagehash_app.core.hashing import make_hasher

    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    bench = Benchmark(X[:3], X[3:], None, None)
    h = make_hasher("lsh", 16, 8).fit(X[3:])
    dc = h.encode(X[3:])
    order = np.tile(np.arange(57), (3, 1))
    out = refiners(h, bench, dc, 20, ("asym", "float"))
    got = out["asym"](np.arange(3), order)
    scores = h.project(X[:3]) @ np.where(h.project(X[3:]) > 0, 1.0, -1.0).T
    for i in range(3):
        assert got[i, :20].tolist() == sorted(range(20), key=lambda j: (-scores[i, j], j))
        assert got[i, 20:].tolist() == list(range(20, 57))
    flt = out["float"](np.arange(3), order)
    assert flt[0, :20].tolist() == np.argsort(-(X[3:23] @ X[0]), kind="stable").tolist()


def test_query_expansion_matches_reference() -> None:
    from imagehash_app.core.evaluation import expand_queries

    rng = np.random.default_rng(6)
    q = rng.standard_normal((2, 4))
    nb = rng.standard_normal((2, 5, 4))
    got = expand_queries(q, nb, k=3, alpha=3.0)
    for i in range(2):
        ref = q[i] + sum(max(0.0, float(q[i] @ nb[i, j])) ** 3 * nb[i, j] for j in range(3))
        np.testing.assert_allclose(got[i], ref / np.linalg.norm(ref))


def test_labelled_subset_takes_per_class_rows_of_the_training_rows() -> None:
    labels = np.repeat(np.arange(3), 10)
    rows = np.arange(0, 30, 2)
    got = cli_eval.labelled_subset(rows, labels, 2, seed=0)
    assert set(got) <= set(rows) and np.bincount(labels[got]).tolist() == [2, 2, 2]
    assert np.array_equal(got, cli_eval.labelled_subset(rows, labels, 2, seed=0))
    assert np.array_equal(cli_eval.labelled_subset(rows, labels, 0, seed=0), rows)
