"""Words → photos: does a typed word find the photos that carry no word? (issue 17)

`python -m benchmarks.bench_words` on flowers5 (MobileNetV2 features, benchmarks/data.py):

- *keywords*: every photo in one flat folder under a random name (no word from the path), the
  class name embedded as a keyword in a random 10% only; each class word is a query, scored
  (precision@k, mAP, relevant = the same class) over the 90% without words.
- *folders*: words only from folder names of mixed quality, read by the app's own tokeniser:
  per class some photos under folders that name it ("Roses 2019", "my_roses", "RosesAndMore"),
  some under names shared by every class ("Garden", "Summer holiday"), the rest under camera
  folders ("DCIM/100CANON": no word); scored over the photos whose words do not hold the class.

Methods: the mean feature of the photos carrying the word as a query (cosine); a nearest-
neighbour vote (each photo scored by the share of its k nearest word-carrying photos that carry
the word, ties by cosine to them); UGACH without its adversarial part (graph + discriminator,
random x^G); UGACH; and the app's text search (each UGACH variant's Hamming candidates,
re-ranked by the centred cosine with the mean feature of the photos carrying the words). Ten random draws, mean ± std.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import data
from imagehash_app.core.codes import hamming_topk
from imagehash_app.core.evaluation import FeatureSet
from imagehash_app.core.hashing.ugach import UGACH, UGACHParams
from imagehash_app.core.words.bags import Vocabulary
from imagehash_app.core.words.tokens import folder_words

METHODS = ["mean feature", "mean feature (centred)", "kNN vote", "UGACH no adversarial", "UGACH",
           "UGACH no adversarial + rerank", "UGACH + rerank"]
GOOD_NAMES = ["{c}", "{C} 2019", "my_{c}", "{C}AndMore", "Best of {c}"]
SHARED_NAMES = ["Garden", "Summer holiday", "Walk in the park", "Flowers"]
CAMERA_NAMES = ["DCIM/100CANON", "DCIM/101APPLE", "Camera"]


def keyword_scenario(labels: np.ndarray, classes: list[str], share: float, rng) -> list[list[str]]:
    """Bags: the class word on a random `share` of photos, nothing on the others."""
    tagged = rng.random(len(labels)) < share
    return [[classes[y]] if t else [] for y, t in zip(labels, tagged, strict=True)]


def folder_scenario(labels: np.ndarray, classes: list[str], rng) -> list[list[str]]:
    """Bags from folder names: 30% under a folder naming the class (one of several spellings),
    30% under names shared by all classes, 40% under camera folders."""
    bags = []
    for y in labels:
        r = rng.random()
        if r < 0.3:
            name = rng.choice(GOOD_NAMES).format(c=classes[y], C=classes[y].capitalize())
        elif r < 0.6:
            name = str(rng.choice(SHARED_NAMES))
        else:
            name = str(rng.choice(CAMERA_NAMES))
        bags.append(folder_words(name))
    return bags


def average_precision(relevant: np.ndarray) -> float:
    """AP of one ranking (booleans in rank order) over all its relevant items."""
    hits = np.cumsum(relevant)
    if hits[-1] == 0:
        return 0.0
    ranks = np.arange(1, len(relevant) + 1)
    return float((hits / ranks)[relevant].sum() / hits[-1])


def score(order: np.ndarray, labels: np.ndarray, target: int, ks: tuple[int, ...]) -> dict[str, float]:
    rel = labels[order] == target
    out = {f"P@{k}": float(rel[:k].mean()) for k in ks}
    out["mAP"] = average_precision(rel)
    return out


def run_draw(
    fs: FeatureSet, bags: list[list[str]], seed: int, params: UGACHParams, ks: tuple[int, ...],
    rerank_depth: int,
) -> dict[str, dict[str, float]]:
    """Every method's mean scores over the class-word queries of one draw."""
    X, labels = fs.features, fs.labels
    vocab = Vocabulary.fit([b for b in bags if b])
    carrying = np.array([bool(vocab.known(b)) for b in bags])
    pairs = np.flatnonzero(carrying)
    T = vocab.transform([bags[i] for i in pairs])
    models = {}
    for name, adversarial in (("UGACH no adversarial", False), ("UGACH", True)):
        p = UGACHParams(**{**params.__dict__, "adversarial": adversarial, "seed": seed})
        models[name] = UGACH(X.shape[1], T.shape[1], p).fit(X, T, pairs)
    image_codes = {n: m.encode_images(X) for n, m in models.items()}
    per_method: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    tagged_X = X[pairs]
    nn_k = 10
    mu = X.mean(0)
    sims_to_tagged = X @ tagged_X.T
    top = np.argsort(-sims_to_tagged, axis=1)[:, :nn_k]
    for target, word in enumerate(fs.classes):
        carries = np.array([word in b for b in bags])
        pool = np.flatnonzero(~carries)  # photos without the query word
        with_word = np.flatnonzero(carries)
        if len(with_word) == 0:
            continue
        proto = X[with_word].mean(0)
        cos = X[pool] @ proto
        per_method["mean feature"].append(score(pool[np.argsort(-cos, kind="stable")], labels, target, ks))
        centred = (X[pool] - mu) @ (proto - mu)
        per_method["mean feature (centred)"].append(
            score(pool[np.argsort(-centred, kind="stable")], labels, target, ks))
        votes = np.array([carries[pairs[top[i]]].mean() for i in pool])
        near = np.array([sims_to_tagged[i, top[i]][carries[pairs[top[i]]]].sum() for i in pool])
        order = np.lexsort((-near, -votes))
        per_method["kNN vote"].append(score(pool[order], labels, target, ks))
        query = vocab.transform([[word]])
        for name, model in models.items():
            code = model.encode_texts(query)
            idx, _ = hamming_topk(code, image_codes[name][pool], len(pool))
            ranked = pool[idx[0]]
            per_method[name].append(score(ranked, labels, target, ks))
            head = ranked[:rerank_depth]
            head = head[np.argsort(-((X[head] - mu) @ (proto - mu)), kind="stable")]
            per_method[f"{name} + rerank"].append(
                score(np.concatenate([head, ranked[rerank_depth:]]), labels, target, ks)
            )
    return {m: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            for m, rows in per_method.items() if rows}


def _draw_job(job: tuple) -> tuple[str, int, dict]:
    """One (scenario, seed) draw in a worker process, one torch thread each."""
    import torch

    torch.set_num_threads(1)
    scenario, seed, features_path, limit, share, params, ks, depth = job
    fs = _load(features_path, limit)
    rng = np.random.default_rng(1000 + seed)
    bags = (keyword_scenario(fs.labels, fs.classes, share, rng) if scenario == "keywords"
            else folder_scenario(fs.labels, fs.classes, rng))
    return scenario, seed, run_draw(fs, bags, seed, params, ks, depth)


def _load(path: Path, limit: int) -> FeatureSet:
    fs = FeatureSet.load(path)
    if limit:
        keep = np.random.default_rng(0).permutation(len(fs.labels))[:limit]
        fs = FeatureSet(fs.features[keep], fs.labels[keep], fs.classes,
                        [fs.paths[i] for i in keep], fs.meta)
    return fs


def summarise(draws: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    out = {}
    for m in draws[0]:
        out[m] = {k: [float(np.mean([d[m][k] for d in draws])), float(np.std([d[m][k] for d in draws]))]
                  for k in draws[0][m]}
    return out


def table(summary: dict[str, dict[str, list[float]]]) -> str:
    keys = list(next(iter(summary.values())))
    lines = ["| method | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for m, row in summary.items():
        lines.append(f"| {m} | " + " | ".join(f"{row[k][0]:.3f} ± {row[k][1]:.3f}" for k in keys) + " |")
    return "\n".join(lines)


def end_to_end(args: argparse.Namespace) -> dict:
    """The real path on a small subset: flowers5 photos copied flat under random names, the class
    name embedded as an XMP dc:subject keyword in a random share, indexed by the app (MobileNetV2,
    the shared weights), the words fine-tune, then `Library.search_text` per class word; P@k over
    the photos without the word."""
    import shutil
    import tempfile

    from PIL import Image

    from imagehash_app.core.library import Library
    from imagehash_app.core.settings import LibrarySettings

    source = data.photos("flowers5", args.data, args.work)
    files = sorted(p for p in source.rglob("*.jpg"))
    rng = np.random.default_rng(7)
    chosen = [files[i] for i in rng.permutation(len(files))[: args.end_to_end]]
    root = Path(tempfile.mkdtemp(prefix="bench-words-"))
    folder, truth, tagged = root / "photos", {}, {}
    folder.mkdir()
    for f in chosen:
        name = folder / f"{int(rng.integers(1 << 62)):016x}.jpg"
        label = f.parent.name
        keyword = rng.random() < args.share
        with Image.open(f) as im:
            extra = {"xmp": _xmp(label)} if keyword else {}
            im.convert("RGB").save(name, "JPEG", quality=92, **extra)
        truth[name.resolve()], tagged[name.resolve()] = label, keyword
    settings = LibrarySettings(backbone="mobilenet_v2", weights=str(data.weights(args.data)), bits=64)
    out: dict = {"photos": len(chosen), "tagged": int(sum(tagged.values()))}
    try:
        started = time.perf_counter()
        with Library.open(root / "library", settings=settings) as lib:
            list(lib.index([folder]))
            out["index_s"] = round(time.perf_counter() - started, 1)
            out["photos_with_words"] = lib.status().words["photos"]
            gen = lib.finetune_words()
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
            lib.activate_words_model(result.model_id)
            out["held_out"] = {"ugach": result.metrics, "mean feature": result.baseline_metrics}
            precisions: dict[str, list[float]] = {"P@10": [], "P@50": []}
            for label in sorted(set(truth.values())):
                answer = lib.search_text(label, top_k=50 + out["tagged"])
                hits = [r for r in answer.results if not tagged.get(r.path.resolve(), False)]
                for k in (10, 50):
                    top = hits[:k]
                    precisions[f"P@{k}"].append(
                        float(np.mean([truth[r.path.resolve()] == label for r in top])) if top else 0.0)
            out["search_text"] = {k: float(np.mean(v)) for k, v in precisions.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _xmp(keyword: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        '22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/'
        f'1.1/"><dc:subject><rdf:Bag><rdf:li>{keyword}</rdf:li></rdf:Bag></dc:subject>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data.add_arguments(parser)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.10, help="share of photos given a keyword")
    parser.add_argument("--scenarios", nargs="+", default=["keywords", "folders"])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rerank-depth", type=int, default=200)
    parser.add_argument("--limit", type=int, default=0, help="use only this many photos (smoke runs)")
    parser.add_argument("--jobs", type=int, default=2, help="draws run in parallel processes")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N",
                        help="only the check through the real indexer, on N photos with XMP keywords")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    args = parser.parse_args(argv)
    if args.end_to_end:
        report = end_to_end(args)
        print(json.dumps(report, indent=1))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1))
        return 0
    path = data.features("flowers5", args.data, args.work)
    fs = _load(path, args.limit)
    params = UGACHParams(bits=args.bits, pretrain_epochs=args.pretrain_epochs, epochs=args.epochs)
    ks = (10, 50, 100)
    report: dict = {"data": "flowers5", "photos": len(fs.labels), "classes": fs.classes,
                    "draws": args.draws, "share": args.share, "params": params.__dict__,
                    "rerank_depth": args.rerank_depth, "scenarios": {}}
    jobs = [(sc, seed, path, args.limit, args.share, params, ks, args.rerank_depth)
            for sc in args.scenarios for seed in range(args.draws)]
    started = time.perf_counter()
    results: dict[str, dict[int, dict]] = {sc: {} for sc in args.scenarios}
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for scenario, seed, draw in pool.imap_unordered(_draw_job, jobs):
            results[scenario][seed] = draw
            print(f"{scenario} draw {seed}: " + ", ".join(
                f"{m} {r['mAP']:.3f}" for m, r in draw.items()), file=sys.stderr, flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["jobs"] = args.jobs
    for scenario in args.scenarios:
        draws = [results[scenario][s] for s in sorted(results[scenario])]
        summary = summarise(draws)
        report["scenarios"][scenario] = {"summary": summary, "draws": draws}
        print(f"\n{scenario} (mean ± std over {args.draws} draws)\n{table(summary)}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
