"""``imagehash-app eval``: every hasher at every code length on one labelled image folder, one table.

Features are extracted once with the chosen backbone and cached in an ``.npz``; the protocol and the
metric definitions are those of :mod:`imagehash_app.core.evaluation`. Seed 003's comparison on one
footing: every method is fitted on the same features, training rows and seed; supervised methods
(``supervised = True``: dsh, dpsh, dsdh) see the labels of the training rows only (or of
``--labelled-per-class`` of them per class, the literature's 500-per-class CIFAR-10 setting); each
is scored after its own first stage (Hamming, or ADC for PQ codes) and after every refinement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from imagehash_app.core.evaluation import (
    REFINEMENTS,
    Benchmark,
    FeatureSet,
    Split,
    extract_features,
    first_stage,
    refiners,
    split_all_queries,
    split_per_class,
    training_sample,
)
from imagehash_app.core.hashing import METHODS, hasher_class, make_hasher

RECALL_SHALLOW = (10, 100)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``eval`` sub-command."""
    p = subparsers.add_parser(
        "eval",
        help="measure the hashers on a labelled image folder",
        description="Fit every method at every code length on DATASET_DIR (one folder per class; "
        "train/ and test/ levels allowed) and print mAP, precision and kNN recall, with and without rerank.",
    )
    p.add_argument(
        "dataset",
        type=Path,
        nargs="?",
        help="folder of class folders (optional with an existing --features-cache)",
    )
    p.add_argument(
        "--backbone", default="mobilenet_v2", help="feature extractor (default mobilenet_v2)"
    )
    p.add_argument(
        "--weights", default="auto", help="'auto' (pretrained), 'none', or a local state-dict file"
    )
    p.add_argument(
        "--methods",
        default="urph,itq,lsh",
        help="comma-separated, or 'all': " + ",".join(METHODS),
    )
    p.add_argument("--bits", default="16,32,64,128", help="comma-separated code lengths")
    p.add_argument("--queries-per-class", type=int, default=100)
    p.add_argument(
        "--train",
        type=int,
        default=20000,
        help="database items the hashers are fitted on (0 = all)",
    )
    p.add_argument(
        "--rerank", type=int, default=1000, help="Hamming candidates re-ranked with the decoder (R)"
    )
    p.add_argument(
        "--refine",
        default=",".join(REFINEMENTS),
        help="second stages to score, comma-separated: " + ",".join(REFINEMENTS) + " (default all)",
    )
    p.add_argument(
        "--labelled-per-class",
        type=int,
        default=0,
        help="supervised methods train on this many labelled training rows per class (0 = all)",
    )
    p.add_argument(
        "--hasher-param",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="override one hyper-parameter of one method (repeatable), e.g. deepquan.epochs=5",
    )
    p.add_argument(
        "--protocol",
        choices=("classes", "groups"),
        default="classes",
        help="classes: queries per class, rest is the database; groups: every image is a query "
        "against all others, label = position // --group-size (UKBench)",
    )
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--map-k", type=int, default=1000, help="k of mAP@k (default 1000)")
    p.add_argument("--precision-k", type=int, default=10, help="k of P@k (default 10)")
    p.add_argument("--json", type=Path, help="write the rows as JSON here")
    p.add_argument(
        "--plot", type=Path, help="write a PNG of mAP@k and recall against code length here"
    )
    p.add_argument(
        "--features-cache",
        type=Path,
        help="npz of extracted features (read if present, else written)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="where urph trains (cpu, cuda)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; returns the exit status."""
    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    if methods == ["all"]:
        methods = list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(
            f"eval: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)} or all",
            file=sys.stderr,
        )
        return 2
    refine = tuple(r.strip() for r in args.refine.split(",") if r.strip())
    bad = [r for r in refine if r not in REFINEMENTS]
    if bad or not refine:
        print(
            f"eval: unknown refinement(s) {', '.join(bad) or '(none given)'}; "
            f"choose from {', '.join(REFINEMENTS)}",
            file=sys.stderr,
        )
        return 2
    try:
        overrides = hasher_params(args.hasher_param)
    except ValueError as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2
    bits_list = [int(b) for b in args.bits.split(",") if b.strip()]
    fs = _features(args)
    if fs is None:
        return 2
    split, labels = _split(fs, args)
    bench = Benchmark(
        fs.features[split.queries],
        fs.features[split.database],
        labels[split.queries],
        labels[split.database],
        exclude=None if args.protocol == "classes" else split.queries,
        map_k=args.map_k,
        p_k=args.precision_k,
    )
    depths = tuple(sorted({*RECALL_SHALLOW, args.rerank} - {0}))
    train_rows = training_sample(split.database, args.train or None, args.seed)
    _log(
        f"{len(split.queries)} queries, {len(split.database)} database items, fit on {len(train_rows)}"
    )
    labelled_rows = labelled_subset(train_rows, labels, args.labelled_per_class, args.seed)
    rows = [
        {
            "method": "float",
            "bits": None,
            "refine": "-",
            "rerank": 0,
            **bench.score_float(depths),
            "fit_s": 0.0,
            "bytes": int(fs.features.shape[1] * 4),
        }
    ]
    print(format_table(rows, args), flush=True)
    for method in methods:
        for bits in bits_list:
            new = _evaluate(
                method,
                bits,
                fs.features,
                labels,
                train_rows,
                labelled_rows,
                bench,
                depths,
                refine,
                args,
                overrides.get(method, {}),
            )
            rows.extend(new)
            print(format_table(new, args, header=False), flush=True)
    print("\n" + format_table(rows, args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "dataset": str(args.dataset) if args.dataset else None,
            "features": fs.meta,
            "protocol": args.protocol,
            "queries": int(len(split.queries)),
            "database": int(len(split.database)),
            "train": int(len(train_rows)),
            "labelled": int(len(labelled_rows)),
            "refinements": list(refine),
            "seed": args.seed,
            "hasher_params": overrides,
            "rerank": args.rerank,
            "command": " ".join(sys.argv),
            "rows": rows,
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    if args.plot:
        plot_rows(
            rows, args.plot, args.map_k, args.rerank, title=str(args.dataset or args.features_cache)
        )
    return 0


def hasher_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``METHOD.KEY=VALUE`` strings → {method: {key: value}}; values are JSON when they parse."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        method, dot, key = name.partition(".")
        if not sep or not dot or method not in METHODS or not key:
            raise ValueError(
                f"--hasher-param {item!r} must read METHOD.KEY=VALUE with a known method"
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(method, {})[key] = value
    return out


def labelled_subset(rows: np.ndarray, labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Seeded ``per_class`` rows of every class among ``rows`` (all of ``rows`` when 0)."""
    if per_class <= 0:
        return rows
    rng = np.random.default_rng(seed + 2)
    picks = []
    for c in np.unique(labels[rows]):
        members = rows[labels[rows] == c]
        picks.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(picks))


def _evaluate(
    method: str,
    bits: int,
    X: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    labelled_rows: np.ndarray,
    bench: Benchmark,
    depths: tuple[int, ...],
    refine: tuple[str, ...],
    args: argparse.Namespace,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Fit one hasher and score its first stage and every refinement of it."""
    cls = hasher_class(method)
    hasher = make_hasher(method, bits, X.shape[1], **(params or {}))
    fit_kw: dict[str, Any] = {}
    if getattr(cls, "trains_on_device", False):
        fit_kw["device"] = args.device
    rows = train_rows
    if getattr(cls, "supervised", False):
        rows = labelled_rows
        fit_kw["labels"] = labels[rows]
    started = time.perf_counter()
    hasher.fit(X[rows], seed=args.seed, **fit_kw)
    fit_s = time.perf_counter() - started
    qc = hasher.encode(bench.queries)
    started = time.perf_counter()
    dc = hasher.encode(bench.database)
    encode_s = time.perf_counter() - started
    base = {
        "method": method,
        "bits": bits,
        "first_stage": getattr(hasher, "first_stage", "hamming"),
        "fit_s": round(fit_s, 2),
        "fit_rows": int(len(rows)),
        "encode_s": round(encode_s, 3),
        "encode_us": round(1e6 * encode_s / max(len(dc), 1), 1),
        "bytes": int(dc.shape[1] * 8),
        "code_bytes": -(-bits // 8),
    }
    scores = bench.score_refinements(
        first_stage(hasher, bench.queries, qc, dc, bench.exclude),
        refiners(hasher, bench, dc, args.rerank, refine),
        depths,
    )
    return [
        {**base, "refine": name, "rerank": 0 if name == "none" else args.rerank, **scores[name]}
        for name in refine
    ]


def _features(args: argparse.Namespace) -> FeatureSet | None:
    """Cached features when the cache exists, else extract (and cache) them."""
    cache = args.features_cache
    if cache is not None and cache.is_file():
        fs = FeatureSet.load(cache)
        _log(f"features from {cache}: {fs.features.shape[0]} x {fs.features.shape[1]} ({fs.meta})")
        return fs
    if args.dataset is None or not args.dataset.is_dir():
        print(
            "eval: give DATASET_DIR (a folder of class folders) or an existing --features-cache",
            file=sys.stderr,
        )
        return None
    fs = extract_features(args.dataset, args.backbone, args.weights, progress=_log)
    if cache is not None:
        fs.save(cache)
        _log(f"features cached in {cache}")
    return fs


def _split(fs: FeatureSet, args: argparse.Namespace) -> tuple[Split, np.ndarray]:
    if args.protocol == "groups":
        order = np.argsort(np.array(fs.paths), kind="stable")
        labels = np.empty(len(fs.paths), dtype=np.int64)
        labels[order] = np.arange(len(fs.paths)) // args.group_size
        return split_all_queries(len(fs.paths)), labels
    return split_per_class(fs.labels, args.queries_per_class, args.seed), fs.labels.astype(np.int64)


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace, header: bool = True) -> str:
    """Fixed-width text table: one line per method x bits x rerank."""
    r = args.rerank
    cols = [
        ("method", 11, "s"),
        ("bits", 4, "s"),
        ("refine", 7, "s"),
        ("rerank", 6, "s"),
        ("mAP", 6, ".3f"),
        (f"mAP@{args.map_k}", 9, ".3f"),
        (f"P@{args.precision_k}", 6, ".3f"),
        ("recall10@10", 11, ".3f"),
        ("recall10@100", 12, ".3f"),
        (f"recall10@{r}", 12, ".3f"),
        ("fit_s", 7, ".1f"),
        ("encode_us", 9, ".1f"),
        ("bytes", 6, "d"),
    ]
    lines = []
    if header:
        lines.append("  ".join(f"{name:>{w}}" for name, w, _ in cols))
    for row in rows:
        lines.append("  ".join(_cell(row, name, w, fmt) for name, w, fmt in cols))
    return "\n".join(lines)


def _cell(row: dict[str, Any], name: str, width: int, fmt: str) -> str:
    v = row.get(name)
    if name == "bits":
        return f"{'-' if v is None else v:>{width}}"
    if name == "rerank":
        return f"{v if v else '-':>{width}}"
    if v is None:
        return " " * width
    return f"{v:>{width}{fmt}}"


def plot_rows(rows: list[dict[str, Any]], path: Path, map_k: int, rerank: int, title: str) -> None:
    """mAP@k and kNN recall against code length: one panel row per refinement, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (f"mAP@{map_k}", f"mAP@{map_k}"),
        ("recall10@10", "kNN recall 10@10"),
        ("recall10@100", "kNN recall 10@100"),
    ]
    scored = [r for r in rows if r["method"] != "float"]
    refines = list(dict.fromkeys(r.get("refine", "none") for r in scored)) or ["none"]
    methods = list(dict.fromkeys(r["method"] for r in scored))
    floats = [r for r in rows if r["method"] == "float"]
    fig, axes = plt.subplots(
        len(refines), 3, figsize=(14, 3.2 * len(refines)), squeeze=False, sharex=True
    )
    cmap = plt.get_cmap("tab20")
    for i, refine in enumerate(refines):
        for ax, (key, label) in zip(axes[i], panels, strict=True):
            for j, method in enumerate(methods):
                pts = sorted(
                    (r["bits"], r[key])
                    for r in scored
                    if r["method"] == method and r.get("refine", "none") == refine and key in r
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), "-o", ms=3, color=cmap(j % 20), label=method)
            if floats and key in floats[0]:
                ax.axhline(floats[0][key], color="k", lw=0.8, ls=":", label="float cosine")
            ax.set_xscale("log", base=2)
            ax.set_title(f"{label} | {refine}" + (f" (top {rerank})" if refine != "none" else ""))
            ax.grid(alpha=0.3)
        axes[i][0].set_ylabel(refine)
    for ax in axes[-1]:
        ax.set_xlabel("code length (bits)")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _log(msg: str, end: str = "\n") -> None:
    print(msg, file=sys.stderr, end=end, flush=True)
