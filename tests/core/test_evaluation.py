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
