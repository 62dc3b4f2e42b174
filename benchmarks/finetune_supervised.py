"""What a supervised fine-tune (DSH, DPSH, DSDH) gains in the app from the person's own labels:
photos in the same folder (positives) and results marked "More like this" / "Not similar".

On a library indexed from a labelled folder tree (flowers5: one folder per class), a simulated
person searches `--queries` photos and marks, in each answer's top 10, the first `--marks`
results from the query's own folder "More like this" and the first `--marks` from another folder
"Not similar" (what someone sorting photos would click). Then each method is fine-tuned
(`Library.finetune(method=..., force=True)`) from the same active version, and the held-out photos
(the fine-tune's own held-out set) are scored before and after: kNN recall 10@10 against exact
float features (what search is judged on) and class mAP@100 / P@10 with the folders as classes,
first stage and decoder re-rank. Between methods the first version is made active again.

    python -m benchmarks.finetune_supervised LIBRARY --methods dsh,dpsh,dsdh --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def drain(gen):  # type: ignore[no-untyped-def]
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def mark(lib, queries: int, marks: int, seed: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The simulated person's marks; returns how many of each kind."""
    from imagehash_app.core.store import CATALOG_FILE, Catalog

    cat = Catalog.open(lib.path / CATALOG_FILE, read_only=True)
    try:
        ids = cat.reservoir_image_ids()
        paths = cat.paths_of(ids)
    finally:
        cat.close()
    rng = np.random.default_rng(seed)
    counts = {"similar": 0, "not_similar": 0}
    for image_id in rng.choice(ids, size=queries, replace=False):
        query = paths[int(image_id)]
        answer = lib.search([query], top_k=11)
        same = diff = 0
        for r in answer.responses[0].results:
            if Path(r.path) == query:
                continue
            similar = Path(r.path).parent == query.parent
            if (same if similar else diff) >= marks:
                continue
            lib.mark_similar(query, Path(r.path), similar)
            same, diff = same + similar, diff + (not similar)
            counts["similar" if similar else "not_similar"] += 1
    return counts


def score(root: Path, model, X: np.ndarray, labels: np.ndarray, held: np.ndarray, rerank: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Held-out figures of one version: recall against float, class mAP@100 and P@10."""
    from imagehash_app.core import versions
    from imagehash_app.core.evaluation import Benchmark, first_stage, refiners
    from imagehash_app.core.training import evaluate_versions

    hasher = versions.load_version(root, model)
    bench = Benchmark(X[held], X, labels[held], labels, exclude=held, map_k=100, p_k=10)
    dc = hasher.encode(X)
    scores = bench.score_refinements(
        first_stage(hasher, bench.queries, dc[held], dc, held),
        refiners(hasher, bench, dc, rerank, ("none", "decoder")), (10, 100),
    )
    recall = evaluate_versions(hasher, X, held, rerank)
    return {"method": model.method, "model": model.id, "recall": recall,
            **{f"{k}_{ref}": round(v, 4) for ref, s in scores.items() for k, v in s.items()
               if k in ("mAP@100", "P@10")}}


def main(argv: list[str] | None = None) -> int:
    from imagehash_app.core.library import Library
    from imagehash_app.core.store import CATALOG_FILE, Catalog
    from imagehash_app.core.training import held_out_mask

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--methods", default="dsh,dpsh,dsdh")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--marks", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    with Library.open(args.library) as lib:
        counts = mark(lib, args.queries, args.marks, args.seed)
        print(f"marked: {counts}", file=sys.stderr, flush=True)
        cat = Catalog.open(lib.path / CATALOG_FILE, read_only=True)
        try:
            ids, X = cat.load_reservoir()
            folders = cat.paths_of([int(i) for i in ids])
            first = cat.active_model()
        finally:
            cat.close()
        names = [folders[int(i)].parent.name for i in ids]
        labels = np.unique(names, return_inverse=True)[1]
        held = np.flatnonzero(held_out_mask(ids, lib.settings.seed))
        rows = [{"stage": "before", **score(lib.path, first, X, labels, held, lib.settings.rerank_depth)}]
        print(json.dumps(rows[-1]), flush=True)
        for method in args.methods.split(","):
            started = time.perf_counter()
            result = drain(lib.finetune(method=method, force=True, keep=10))
            cat = Catalog.open(lib.path / CATALOG_FILE, read_only=True)
            try:
                model = cat.model(result.new_model)
            finally:
                cat.close()
            rows.append({"stage": "after", "seconds": round(time.perf_counter() - started, 1),
                         "pairs": next(m for m in lib.models() if m.id == model.id)
                         .metrics.get("finetune", {}).get("pairs", {}),
                         **score(lib.path, model, X, labels, held, lib.settings.rerank_depth)})
            rows[-1]["pairs"].pop("marked_image_ids", None)
            print(json.dumps(rows[-1]), flush=True)
            lib.activate_model(first.id)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "marks": counts,
                                         "held_out": int(len(held)), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
