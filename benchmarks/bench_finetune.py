"""The user-library scenario of issue 6: a hasher trained on CIFAR-10 indexes flowers5, then is
fine-tuned on the library. Results go to docs/results-finetune.md.

Part 1 (features, from the cached MobileNetV2 .npz files): flowers5 queries (100 per class) against
the rest as the library; kNN recall 10@10 / 10@100 against exact float cosine and mAP@1000 with the
flower classes as labels, Hamming order and decoder re-rank, before and after fine-tuning (warm start
and from scratch), with the library re-encoded (a) from decoded old codes or (b) exactly (the
backbone run again), at two reservoir sizes. Also the wall time of a fine-tune on 20 000 features.

Part 2 (the real flow through the Library API): a library with the app's MobileNetV2 whose active
version is the CIFAR-10 hasher indexes the flowers5 photos, then `Library.finetune` runs; search
quality before/after through `Library.search_features`, and the wall times.

Data from ../shared/data (`--data`); the photos are unpacked and the feature caches built under
`--work` when missing (benchmarks/data.py):

    nice -n 10 .venv/bin/python -m benchmarks.bench_finetune --json /tmp/finetune.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import data
from imagehash_app.core.evaluation import (
    BLOCK,
    average_precision,
    float_rankings,
    hamming_rankings,
    knn_recall,
    rerank,
    split_per_class,
)
from imagehash_app.core.hashing import load_hasher, make_hasher

RERANK = 1000


def log(*parts: Any) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def scores(hasher, db_codes, q_feats, q_labels, db_feats, db_labels) -> dict[str, float]:
    """mAP@1000 and kNN recall, Hamming order and decoder re-rank of the top RERANK."""
    q_codes = hasher.encode(q_feats)
    decoded = hasher.decode(db_codes)
    truth = np.concatenate([o[:, :10] for o in float_rankings(q_feats, db_feats)])
    acc: dict[str, list] = {}
    start = 0
    for order in hamming_rankings(q_codes, db_codes, hasher.bits):
        rows = slice(start, start + order.shape[0])
        ranked = {
            "hamming": order,
            "rerank": rerank(q_feats[rows], order, lambda i: decoded[i], RERANK),
        }
        for name, o in ranked.items():
            rel = db_labels[o[:, :1000]] == q_labels[rows, None]
            acc.setdefault(f"{name} mAP@1000", []).append(average_precision(rel, k=1000))
            for r in (10, 100):
                acc.setdefault(f"{name} 10@{r}", []).append(knn_recall(truth[rows], o, r))
        start += order.shape[0]
    return {k: round(float(np.concatenate(v).mean()), 4) for k, v in acc.items()}


def fit(X: np.ndarray, bits: int, *, init_from=None, epochs: int | None = None, seed: int = 0):
    # A warm start takes the architecture of the version it starts from, as training.py does.
    params = {k: v for k, v in init_from.params.items() if k != "epochs"} if init_from else {}
    h = make_hasher("urph", bits, X.shape[1], **params)
    t = time.perf_counter()
    h.fit(X, seed=seed, init_from=init_from, epochs=epochs)
    h.meta["backbone"] = "mobilenet_v2"
    return h, time.perf_counter() - t


def foreign_hasher(cifar: np.ndarray, bits: int, work: Path) -> tuple[Any, float]:
    """URPH trained on 20 000 CIFAR-10 features (cached in `work`)."""
    path = work / f"cifar-urph-{bits}"
    if (path / "hasher.json").is_file():
        return load_hasher(path), float(json.loads((path / "fit_seconds").read_text()))
    rng = np.random.default_rng(0)
    X = cifar[np.sort(rng.choice(len(cifar), 20_000, replace=False))]
    h, secs = fit(X, bits)
    h.save(path)
    (path / "fit_seconds").write_text(json.dumps(secs))
    return h, secs


def features_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from imagehash_app.core.training import FINETUNE_EPOCHS, held_out_mask

    fl = np.load(args.flowers)
    X, labels = fl["features"].astype(np.float32), fl["labels"]
    cifar = np.load(args.cifar)["features"].astype(np.float32)
    split = split_per_class(labels, 100, seed=0)
    q, ql = X[split.queries], labels[split.queries]
    db, dbl = X[split.database], labels[split.database]
    old, old_secs = foreign_hasher(cifar, args.bits, work)
    log(f"CIFAR-10 hasher: {old_secs:.0f} s to train on 20 000 features")
    out: dict[str, Any] = {"cifar_fit_s": round(old_secs, 1), "library": len(db), "queries": len(q)}
    float_ap = [
        average_precision(dbl[o[:, :1000]] == ql[i : i + o.shape[0], None], k=1000)
        for i, o in zip(range(0, len(q), BLOCK), float_rankings(q, db), strict=True)
    ]
    out["float cosine"] = {"mAP@1000": round(float(np.concatenate(float_ap).mean()), 4)}
    old_codes = old.encode(db)
    out["cifar hasher"] = scores(old, old_codes, q, ql, db, dbl)
    log("before", out["cifar hasher"])
    own, own_secs = fit(db, args.bits)
    out["trained on the library (reference)"] = {
        **scores(own, own.encode(db), q, ql, db, dbl),
        "fit_s": round(own_secs, 1),
    }
    log("own", out["trained on the library (reference)"])
    rng = np.random.default_rng(1)
    for size in args.reservoirs:
        res = np.sort(rng.choice(len(db), min(size, len(db)), replace=False))
        held = held_out_mask(res + 1, seed=0)
        train = res[~held]
        in_res = np.zeros(len(db), dtype=bool)
        in_res[res] = True
        for how, init, epochs in (
            ("warm start", old, FINETUNE_EPOCHS),
            ("from scratch", None, None),
        ):
            new, secs = fit(db[train], args.bits, init_from=init, epochs=epochs)
            t = time.perf_counter()
            approx = new.encode(old.decode(old_codes))
            approx_s = time.perf_counter() - t
            exact = new.encode(db)
            mixed = np.where(in_res[:, None], exact, approx)
            key = f"reservoir {len(res)}, {how}"
            out[key] = {
                "fit_s": round(secs, 1),
                "train": int(len(train)),
                "(b) exact": scores(new, exact, q, ql, db, dbl),
                "(a) from old codes": scores(new, mixed, q, ql, db, dbl),
                "(a) seconds per 1000 photos": round(approx_s / len(db) * 1000, 4),
                "bits differing (a) vs (b)": round(
                    float(np.bitwise_count(mixed ^ exact).sum(1).mean()), 2
                ),
            }
            log(key, json.dumps(out[key]))
    # Wall time of the default fine-tune on a full reservoir of 20 000 features.
    rng = np.random.default_rng(2)
    X20 = np.concatenate([X, cifar[rng.choice(len(cifar), 20_000 - len(X), replace=False)]])
    held = held_out_mask(np.arange(1, 20_001), seed=0)
    _, secs = fit(X20[~held], args.bits, init_from=old, epochs=FINETUNE_EPOCHS)
    out["fine-tune 20 000 reservoir features (warm, 20 epochs) s"] = round(secs, 1)
    log("20k fine-tune", secs)
    return out


def backbone_rate(images: Path, weights: Path, n: int = 256) -> float:
    """Photos per second of (b): decode + the app's MobileNetV2, as the indexer runs it."""
    from imagehash_app.core.backbone import load_backbone
    from imagehash_app.core.embedding import iter_embeddings

    paths = sorted(images.rglob("*.jpg"))[:n]
    backbone = load_backbone("mobilenet_v2", str(weights), "cpu")
    list(iter_embeddings(paths[:32], backbone))  # warm up
    t = time.perf_counter()
    count = sum(len(b.paths) for b in iter_embeddings(paths, backbone))
    return count / (time.perf_counter() - t)


def library_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Index the flowers photos with the CIFAR hasher active and a reservoir smaller than the
    library, fine-tune (exact re-encode, and the quick one on a copy), compare searches."""
    import shutil

    from imagehash_app.core.embedding import iter_embeddings
    from imagehash_app.core.library import Library
    from imagehash_app.core.settings import LibrarySettings
    from imagehash_app.core.store import CATALOG_FILE, Catalog

    old, _ = foreign_hasher(np.load(args.cifar)["features"].astype(np.float32), args.bits, work)
    root = Path(tempfile.mkdtemp(prefix="finetune-lib-", dir=work))
    settings = LibrarySettings(
        backbone="mobilenet_v2", weights=str(args.weights), bits=args.bits, device="cpu",
        reservoir_size=args.library_reservoir,
    )
    out: dict[str, Any] = {"reservoir": args.library_reservoir}
    with Library.open(root / "library", settings=settings) as lib:
        cat = Catalog.open(lib.path / CATALOG_FILE)
        old.save(lib.path / "models" / "cifar")
        with cat.transaction():
            cat.set_active_model(cat.add_model(
                "urph", args.bits, "mobilenet_v2", "", "models/cifar", 20_000, "trained on CIFAR-10"))
        cat.close()
        t = time.perf_counter()
        deque(lib.index([args.images]), maxlen=0)  # run the index to the end
        out["index_s"] = round(time.perf_counter() - t, 1)
        out["photos"] = lib.status().indexed
        log("indexed", out["photos"], "photos in", out["index_s"], "s")
        # Ground truth: every photo's real feature, from the library's own backbone.
        cat = Catalog.open(lib.path / CATALOG_FILE, read_only=True)
        paths = cat.paths_of([r[0] for r in cat.conn.execute("SELECT id FROM images ORDER BY id")])
        cat.close()
        order = sorted(paths)
        feats = np.concatenate([
            b.features for b in iter_embeddings([paths[i] for i in order], lib.backbone())
        ])
        labels = np.array([paths[i].parent.name for i in order])
        queries = split_per_class(labels, 100, seed=0).queries
        where = {paths[i]: k for k, i in enumerate(order)}
        truth = np.concatenate([o[:, :10] for o in float_rankings(feats[queries], feats, exclude=queries)])
        out["before"] = search_quality(lib, feats, labels, queries, where, truth)
        log("before", out["before"])
        lib_copy = root / "quick"
        shutil.copytree(lib.path, lib_copy, ignore=shutil.ignore_patterns("lock*"))
        for name, path, mode in (("exact", lib.path, "exact"), ("quick", lib_copy, "approx")):
            with (Library.open(path) if name == "quick" else _same(lib)) as target:
                t = time.perf_counter()
                result = drain(target.finetune(reencode=mode))
                out[f"finetune {name}"] = {
                    "seconds": round(time.perf_counter() - t, 1),
                    "exact_codes": result.exact_codes, "approx_codes": result.approx_codes,
                    "activated": result.activated, "held_out": result.held_out,
                    "held-out old": result.old_metrics, "held-out new": result.new_metrics,
                    "after": search_quality(target, feats, labels, queries, where, truth),
                }
                log(name, json.dumps(out[f"finetune {name}"]))
    return out


class _same:
    """Use an open library in a `with` without closing it."""

    def __init__(self, lib) -> None:
        self.lib = lib

    def __enter__(self):
        return self.lib

    def __exit__(self, *exc: object) -> None:
        return None


def drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def search_quality(lib, feats, labels, queries, where, truth) -> dict[str, float]:
    """mAP@1000 and kNN recall 10@10 of the library's own search (the query photo left out)."""
    aps, recalls = [], []
    rows = lib.search_features(feats[queries], top_k=1001)
    for qi, (q, hits) in enumerate(zip(queries, rows, strict=True)):
        ranked = np.array([where[h.path] for h in hits if where[h.path] != q][:1000])
        aps.append(average_precision((labels[ranked] == labels[q])[None], k=1000)[0])
        recalls.append(np.isin(truth[qi], ranked[:10]).mean())
    return {"mAP@1000": round(float(np.mean(aps)), 4), "10@10": round(float(np.mean(recalls)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data.add_arguments(parser)
    parser.add_argument("--flowers", type=Path, default=None,
                        help="flowers5 features .npz (default: built under --work)")
    parser.add_argument("--cifar", type=Path, default=None,
                        help="CIFAR-10 features .npz (default: built under --work)")
    parser.add_argument("--images", type=Path, default=None,
                        help="the flowers5 photos (default: unpacked under --work)")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--reservoirs", type=int, nargs="+", default=[20_000, 1000])
    parser.add_argument("--library-reservoir", type=int, default=1000,
                        help="reservoir of the real-flow library (smaller than it, to exercise re-encoding)")
    parser.add_argument("--skip", choices=("features", "library"), action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.weights = data.weights(args.data)
    args.images = args.images or data.photos("flowers5", args.data, args.work)
    args.flowers = args.flowers or data.features("flowers5", args.data, args.work)
    args.cifar = args.cifar or data.features("cifar10", args.data, args.work)
    log("torch threads", torch.get_num_threads())
    out: dict[str, Any] = {"bits": args.bits, "torch_threads": torch.get_num_threads()}
    if "features" not in args.skip:
        out["features"] = features_part(args, args.work)
        out["(b) backbone photos/s"] = round(backbone_rate(args.images, args.weights), 1)
        log("(b) backbone photos/s", out["(b) backbone photos/s"])
    if "library" not in args.skip:
        out["library"] = library_part(args, args.work)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
