"""Search benchmarks: exact Hamming top-100 vs faiss, and the graph-vs-scan crossover.

Run from the repository root (results go to docs/results-search.md by hand, JSON by flag):

    nice -n 10 .venv/bin/python -m benchmarks.bench_search --json benchmarks/results/search.json

(a) Exact top-100 over 1 000 000 uniform random 64-bit codes: our blockwise popcount scan
    (imagehash_app.core.codes.hamming_topk) against faiss IndexBinaryFlat, interleaved round by
    round in one process, single queries and a batch, one thread and all threads.
(b) Crossover: an hnswlib graph (CandidateIndex "graph", grown by ``add``) against the exact scan at
    growing library sizes, on clustered codes (signs of a random projection of a Gaussian mixture),
    with tie-aware recall@100 of the graph against the scan's top-100 for several ef factors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imagehash_app.core import codes as codes_mod
from imagehash_app.core import search as search_mod
from imagehash_app.core.codes import hamming_topk, pack_signs
from imagehash_app.core.search import CandidateIndex

BITS = 64
TOP = 100


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- (a) exact scan against faiss ----------------------------------------------------------


def bench_exact(n: int, queries: int, rounds: int, seed: int) -> dict:
    """ms/query of our scan and faiss IndexBinaryFlat, measured alternately in the same run."""
    import faiss

    rng = np.random.default_rng(seed)
    db = rng.integers(0, 2**64, size=(n, 1), dtype=np.uint64)
    q = rng.integers(0, 2**64, size=(queries, 1), dtype=np.uint64)
    index = faiss.IndexBinaryFlat(BITS)
    index.add(db.view(np.uint8).reshape(n, BITS // 8))
    qbytes = q.view(np.uint8).reshape(queries, BITS // 8)
    cpus = codes_mod._available_cpus()

    def faiss_single() -> None:
        for i in range(queries):
            index.search(qbytes[i : i + 1], TOP)

    def ours_single() -> None:
        for i in range(queries):
            hamming_topk(q[i : i + 1], db, TOP)

    def with_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            faiss.omp_set_num_threads(threads)
            return fn()

        return run

    cases = {
        "ours single": with_threads(1, ours_single),
        "faiss single": with_threads(1, faiss_single),
        "ours batch 1 thread": with_threads(1, lambda: hamming_topk(q, db, TOP, workers=1)),
        "faiss batch 1 thread": with_threads(1, lambda: index.search(qbytes, TOP)),
        f"ours batch {cpus} threads": with_threads(
            cpus, lambda: hamming_topk(q, db, TOP, workers=cpus)
        ),
        f"faiss batch {cpus} threads": with_threads(cpus, lambda: index.search(qbytes, TOP)),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # interleaved, so machine noise hits both sides alike
        for name, fn in cases.items():
            times[name].append(_timed(fn) * 1e3 / queries)
    ms = {name: statistics.median(values) for name, values in times.items()}

    faiss.omp_set_num_threads(1)
    fd, fi = index.search(qbytes, TOP)
    oi, od = hamming_topk(q, db, TOP)
    pairs = [("single", "ours single", "faiss single")]
    pairs.append(("batch 1 thread", "ours batch 1 thread", "faiss batch 1 thread"))
    pairs.append(
        (f"batch {cpus} threads", f"ours batch {cpus} threads", f"faiss batch {cpus} threads")
    )
    return {
        "n": n,
        "bits": BITS,
        "k": TOP,
        "queries": queries,
        "rounds": rounds,
        "ms_per_query": ms,
        "ratio_ours_over_faiss": {label: ms[a] / ms[b] for label, a, b in pairs},
        "same_distances_as_faiss": bool(np.array_equal(od, fd)),
        "same_ids_as_faiss": float(np.mean(oi == fi)),
    }


# --- (b) graph vs scan crossover -----------------------------------------------------------


class ClusteredCodes:
    """64-bit codes as signs of a random projection of a Gaussian mixture (real neighbourhoods)."""

    def __init__(self, seed: int, dim: int = 128, clusters: int = 1000, spread: float = 0.7):
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.standard_normal((clusters, dim)).astype(np.float32)
        self.planes = self.rng.standard_normal((dim, BITS)).astype(np.float32)
        self.spread = spread

    def sample(self, n: int, chunk: int = 100_000) -> np.ndarray:
        out = []
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            x = self.centres[self.rng.integers(0, len(self.centres), m)]
            x = x + self.spread * self.rng.standard_normal(x.shape, dtype=np.float32)
            out.append(pack_signs(x @ self.planes))
        return np.concatenate(out)


def tie_aware_recall(found_dist: np.ndarray, exact_dist: np.ndarray) -> float:
    """Share of the exact top-k matched; any code at the k-th distance may stand for another."""
    kth = exact_dist[-1]
    exact_closer = int(np.count_nonzero(exact_dist < kth))
    closer = int(np.count_nonzero(found_dist < kth))
    at_kth = int(np.count_nonzero(found_dist == kth))
    return (closer + min(at_kth, len(exact_dist) - exact_closer)) / len(exact_dist)


def per_query_ms(fn: Callable[[np.ndarray], tuple], queries: np.ndarray) -> tuple[float, list]:
    """Median ms of single-query calls (the interactive case) and the answers."""
    answers, times = [], []
    for i in range(len(queries)):
        start = time.perf_counter()
        answers.append(fn(queries[i : i + 1]))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), answers


def bench_crossover(
    sizes: list[int], ef_factors: list[float], queries: int, seed: int, k: int = TOP
) -> dict:
    """Scan and graph at each size (one graph grown with ``add``), recall against the scan."""
    search_mod.GRAPH_MAX_K = max(search_mod.GRAPH_MAX_K, k)  # measure the graph itself at any k
    gen = ClusteredCodes(seed)
    codes = gen.sample(max(sizes))
    q = gen.sample(queries)
    rows = []
    graph = None
    build_s = 0.0
    for size in sizes:
        start = time.perf_counter()
        if graph is None:
            graph = CandidateIndex(codes[:size], BITS, method="graph")
        else:
            graph.add(codes[len(graph) : size])
        build_s += time.perf_counter() - start
        scan = CandidateIndex(codes[:size], BITS, method="scan")
        scan_ms, exact = per_query_ms(lambda x, s=scan: s.candidates(x, k), q)
        row = {"size": size, "graph_build_s_cumulative": round(build_s, 1), "scan_ms": scan_ms}
        kth = [float(e[1][0, -1]) for e in exact]
        row["mean_kth_distance"] = statistics.mean(kth)
        row["graph"] = []
        for factor in ef_factors:
            graph.ef_factor = factor
            graph_ms, found = per_query_ms(lambda x, g=graph: g.candidates(x, k), q)
            recall = statistics.mean(
                tie_aware_recall(f[1][0], e[1][0]) for f, e in zip(found, exact, strict=True)
            )
            id_recall = statistics.mean(
                len(set(f[0][0].tolist()) & set(e[0][0].tolist())) / k
                for f, e in zip(found, exact, strict=True)
            )
            row["graph"].append(
                {"ef_factor": factor, "ms": graph_ms, "recall": recall, "id_recall": id_recall}
            )
        ok = [g for g in row["graph"] if g["recall"] >= 0.95]
        best = min(ok, key=lambda g: g["ms"]) if ok else None
        row["best_graph_at_0.95"] = best
        row["graph_wins"] = bool(best and best["ms"] < scan_ms)
        rows.append(row)
        print(_crossover_line(row), flush=True)
    wins = [r["graph_wins"] for r in rows]
    crossover = next(
        (r["size"] for i, r in enumerate(rows) if all(wins[i:])), None
    )  # smallest size from which the graph wins at every larger size measured
    return {
        "codes": "sign of a random 128->64 projection of a 1000-cluster Gaussian mixture "
        "(unit-variance centres, spread 0.7); queries fresh from the same mixture",
        "queries": queries,
        "k": k,
        "M": search_mod.GRAPH_M,
        "ef_construction": search_mod.GRAPH_EF_CONSTRUCTION,
        "rows": rows,
        "crossover_size": crossover,
    }


def _crossover_line(row: dict) -> str:
    best = row["best_graph_at_0.95"]
    graph = (
        f"{best['ms']:.3f} ms (ef x{best['ef_factor']}, recall {best['recall']:.3f})"
        if best
        else "-"
    )
    return (
        f"{row['size']:>9,d}  scan {row['scan_ms']:.3f} ms  graph {graph}  "
        f"build {row['graph_build_s_cumulative']} s  wins={row['graph_wins']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact-n", type=int, default=1_000_000)
    parser.add_argument("--exact-queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
    parser.add_argument("--ef-factors", default="1,1.5,2,3,4")
    parser.add_argument("--crossover-queries", type=int, default=200)
    parser.add_argument("--crossover-k", type=int, default=TOP, help="candidates per query (R)")
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--skip-crossover", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    result: dict = {
        "command": "python -m benchmarks.bench_search " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    if not args.skip_exact:
        exact = bench_exact(args.exact_n, args.exact_queries, args.rounds, args.seed)
        result["exact"] = exact
        print(f"exact top-{TOP} over {exact['n']:,} codes, ms/query (median of {args.rounds}):")
        for name, ms in exact["ms_per_query"].items():
            print(f"  {name:<24} {ms:8.3f}")
        for label, ratio in exact["ratio_ours_over_faiss"].items():
            print(f"  ours / faiss, {label:<16} {ratio:6.2f}x")
        print(
            f"  same distances as faiss: {exact['same_distances_as_faiss']}, "
            f"same ids: {exact['same_ids_as_faiss']:.3f}",
            flush=True,
        )
    if not args.skip_crossover:
        sizes = [int(s) for s in args.sizes.split(",")]
        factors = [float(f) for f in args.ef_factors.split(",")]
        result["crossover"] = bench_crossover(
            sizes, factors, args.crossover_queries, args.seed, args.crossover_k
        )
        print(
            f"crossover (graph faster at recall >= 0.95 from): {result['crossover']['crossover_size']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
