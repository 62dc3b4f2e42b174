"""The one table and plot of docs/results-hashing.md ("The seed papers' hashers on one footing")
from the raw `imagehash-app eval` JSON outputs under benchmarks/results/seed-hashers/.

    python -m benchmarks.seed_table NAME PLOT.png JSON [JSON ...] > table.md

Rows of several files are merged (the first file that has a method x bits x refinement wins);
the table has, per method and length, the first stage (Hamming; ADC for DeepQuan), the decoder
re-rank and the best refinement by recall 10@10; the plot draws mAP@k and recall 10@10 / 10@100
against bits, first stage and decoder re-rank, one line per method.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ORDER = ("urph", "itq", "lsh", "harr", "distillhash", "dsg", "dmuh", "deepquan", "dsh", "dpsh", "dsdh")


def _num(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def merged(paths: list[Path]) -> tuple[list[dict[str, Any]], str]:
    """Rows (numbers as numbers) of every file, first one wins per method x bits x refine; and the
    mAP key (mAP@k)."""
    seen: dict[tuple[str, int, str], dict[str, Any]] = {}
    map_key = "mAP@1000"
    for path in paths:
        doc = json.loads(path.read_text())
        for row in doc["rows"]:
            row = {k: _num(v) for k, v in row.items()}
            if row["method"] == "float":
                key = ("float", 0, "-")
            else:
                key = (row["method"], int(row["bits"]), str(row.get("refine", "none")))
            map_key = next((k for k in row if k.startswith("mAP@")), map_key)
            seen.setdefault(key, row)
    return list(seen.values()), map_key


def table(rows: list[dict[str, Any]], map_key: str) -> str:
    p_key = next((k for r in rows for k in r if k.startswith("P@")), "P@10")
    head = (f"| method | bits | first stage {map_key} | {p_key} | 10@10 | 10@100 | decoder {map_key} | "
            "10@10 | 10@100 | best refinement (10@10) | fit s | encode µs | bytes |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    by = {(r["method"], int(r["bits"]) if r["method"] != "float" else 0, str(r.get("refine", "-"))): r for r in rows}
    methods = [m for m in ORDER if any(k[0] == m for k in by)]
    for m in methods:
        for bits in sorted({k[1] for k in by if k[0] == m}):
            first, dec = by.get((m, bits, "none")), by.get((m, bits, "decoder"))
            if first is None:
                continue
            refs = [(r, by[(m, bits, r)]) for r in ("none", "decoder", "asym", "qe") if (m, bits, r) in by]
            best = max(refs, key=lambda x: x[1]["recall10@10"])

            def f(r: dict[str, Any] | None, k: str) -> str:
                return "–" if r is None or k not in r else f"{r[k]:.3f}"

            label = f"{m} (ADC)" if first.get("first_stage") == "adc" or m == "deepquan" else m
            lines.append(
                f"| {label} | {bits} | {f(first, map_key)} | {f(first, p_key)} | {f(first, 'recall10@10')} | "
                f"{f(first, 'recall10@100')} | {f(dec, map_key)} | {f(dec, 'recall10@10')} | "
                f"{f(dec, 'recall10@100')} | {best[0]} ({best[1]['recall10@10']:.3f}) | "
                f"{first.get('fit_s', 0):.1f} | {first.get('encode_us', 0):.1f} | {int(first.get('bytes', 0))} |"
            )
    fl = by.get(("float", 0, "-"))
    if fl and isinstance(fl.get(map_key), float):
        lines.append(f"\nFloat ceiling: {map_key} {fl[map_key]:.3f}, {p_key} {fl[p_key]:.3f}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name, plot, paths = args[0], Path(args[1]), [Path(p) for p in args[2:]]
    rows, map_key = merged(paths)
    print(table(rows, map_key))
    from imagehash_app.cli.eval import plot_rows

    kept = [r for r in rows if r["method"] == "float" or r.get("refine") in ("none", "decoder")]
    for r in kept:
        if r["method"] != "float":
            r["bits"] = int(r["bits"])
    rerank = int(next((r["rerank"] for r in kept if r.get("refine") == "decoder"), 0))
    plot_rows(kept, plot, int(map_key.split("@")[1]), rerank, title=name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
