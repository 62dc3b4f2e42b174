"""`finetune` and `models {list,activate}` sub-commands: thin over `Library`'s fine-tune methods.

Each handler takes the parsed args and an opened Library; `add_parsers` also sets `func` to a
wrapper that opens the library (writer or read-only as the command needs), so `cli.main` can
dispatch these like its own commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from imagehash_app.cli.progress import run_printing_progress
from imagehash_app.core.library import (
    COMPARE_BUDGET_S,
    COMPARE_METHODS,
    DEFAULT_METHOD,
    FINETUNE_METHODS,
    FinetuneResult,
    Library,
)

Handler = Callable[[argparse.Namespace, Library], int]

ROWS = (
    ("hamming_10@10", "kNN recall 10@10, Hamming order"),
    ("hamming_10@100", "kNN recall 10@100, Hamming order"),
    ("rerank_10@10", "kNN recall 10@10, decoder re-rank"),
    ("rerank_10@100", "kNN recall 10@100, decoder re-rank"),
)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register `finetune` and `models` on the CLI's sub-command parser."""
    p = subparsers.add_parser(
        "finetune", help="adapt the hasher to this library's photos (train, compare, switch)"
    )
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="training epochs (default: 20 from the current version, 40 from scratch)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train a new hasher instead of starting from the current one")
    p.add_argument("--force", action="store_true",
                   help="use the new version even if it is not better on held-out photos")
    p.add_argument("--quick", action="store_true",
                   help="re-encode photos outside the reservoir from their old codes instead of "
                        "running the backbone again (instant, but keeps little of the gain)")
    p.add_argument("--method", default=DEFAULT_METHOD, metavar="NAME",
                   help=f"the hashing method to train: {', '.join(FINETUNE_METHODS)} "
                        f"(default {DEFAULT_METHOD}; the last three learn from your labels)")
    p.add_argument("--compare", nargs="?", const=",".join(COMPARE_METHODS), default=None,
                   metavar="METHODS",
                   help="train each unsupervised sign-code method (default all: "
                        f"{','.join(COMPARE_METHODS)}; or a comma-separated few) within --budget "
                        "and keep the one with the best held-out recall 10@10 after re-rank")
    p.add_argument("--budget", type=float, default=COMPARE_BUDGET_S, metavar="SECONDS",
                   help=f"time for --compare's training and measuring (default {COMPARE_BUDGET_S:.0f})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _bind(p, cmd_finetune, writer=True)

    p = subparsers.add_parser("models", help="list the kept hasher versions or switch between them")
    msub = p.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    lp = msub.add_parser("list", help="kept versions, the active one marked with *")
    lp.add_argument("--json", action="store_true")
    _bind(lp, cmd_models_list, writer=False)
    ap = msub.add_parser("activate", help="make version ID answer searches (instant roll back)")
    ap.add_argument("id", type=int, metavar="ID")
    _bind(ap, cmd_models_activate, writer=True)


def _bind(parser: argparse.ArgumentParser, handler: Handler, *, writer: bool) -> None:
    def func(args: argparse.Namespace) -> int:
        with Library.open(args.library, read_only=not writer) as lib:
            return handler(args, lib)

    parser.set_defaults(func=func, handler=handler, needs_writer=writer)


def cmd_finetune(args: argparse.Namespace, lib: Library) -> int:
    """Run the fine-tune with a progress bar on stderr, then print what it did."""
    compare = tuple(m.strip().lower() for m in (args.compare or "").split(",") if m.strip())
    p = lib.finetune_plan(epochs=args.epochs, from_scratch=args.from_scratch, method=args.method,
                          compare=compare, budget_s=args.budget)
    if p.problem and not p.resumable:
        print(f"imagehash-app: {p.problem}", file=sys.stderr)
        return 1
    if not args.json:
        if p.resumable:
            print("Resuming the interrupted fine-tune.", file=sys.stderr)
        elif compare:
            print(f"Comparing {', '.join(p.compare)} on {p.train:,} photos ({p.held_out:,} held out) "
                  f"within {_duration(p.budget_s)}; about {_duration(p.estimated_s)} in all.",
                  file=sys.stderr)
        else:
            how = f"from version {p.active.id}" if p.warm_start else "from scratch"
            print(f"Fine-tuning {p.method} on {p.train:,} photos ({p.held_out:,} held out), {how}, "
                  f"{p.epochs} epochs; about {_duration(p.estimated_s)}.", file=sys.stderr)
    result: FinetuneResult = run_printing_progress(lib.finetune(
        epochs=args.epochs, from_scratch=args.from_scratch, force=args.force,
        reencode="approx" if args.quick else "exact", method=args.method,
        compare=compare, budget_s=args.budget,
    ))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_result(result))
    return 0


def format_result(r: FinetuneResult) -> str:
    """The old/new table and a sentence on what was done."""
    old, new = f"v{r.old_model} (old)", f"v{r.new_model} (new)"
    width = max(len(text) for _, text in ROWS)
    lines = []
    if r.comparison:
        lines.append("Methods compared on the held-out photos (recall 10@10 after re-rank):")
        lines.append(format_comparison(r.comparison, r.method))
        lines.append("")
    lines.append(f"{'held-out photos: ' + format(r.held_out, ','):<{width}}  {old:>10}  {new:>10}")
    for key, text in ROWS:
        a, b = r.old_metrics.get(key), r.new_metrics.get(key)
        if a is None or b is None:
            continue
        lines.append(f"{text:<{width}}  {a:>10.3f}  {b:>10.3f}  {b - a:+.3f}")
    how = "from the previous version" if r.warm_start else f"{r.method} from scratch"
    lines.append(
        f"Trained {how} on {r.trained_on:,} photos; re-encoded {r.exact_codes:,} photos exactly "
        f"and {r.approx_codes:,} from their previous codes; {_duration(r.seconds)} in all."
    )
    if r.removed_models:
        lines.append("Removed older versions: " + ", ".join(f"v{i}" for i in r.removed_models) + ".")
    lines.append(r.message)
    return "\n".join(lines)


def format_comparison(records: list[dict], chosen: str) -> str:
    """One line per compared method: its held-out figures or why it did not finish."""
    lines = []
    for c in records:
        if c["status"] == "done":
            m = c["metrics"]
            text = (f"  {c['method']:<12} {m.get('rerank_10@10', 0):.3f}  (codes alone "
                    f"{m.get('hamming_10@10', 0):.3f}; trained {c['fit_s']:.0f} s, measured {c['eval_s']:.0f} s)")
        else:
            text = f"  {c['method']:<12} {c['status']}" + (f" after {c['fit_s']:.0f} s" if c.get("fit_s") else "")
        lines.append(text + ("   <- chosen" if c["method"] == chosen and c["status"] == "done" else ""))
    return "\n".join(lines)


def cmd_models_list(args: argparse.Namespace, lib: Library) -> int:
    models = lib.models()
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=2, default=str))
        return 0
    if not models:
        print("No hasher yet: index some photos first (imagehash-app index PATH).")
        return 0
    print(f"  {'ID':>3}  {'method':<11} {'bits':>4}  {'created':<16}  {'trained on':>10}  "
          f"{'re-rank 10@10':>13}  note")
    for m in models:
        ft = m.metrics.get("finetune", {}).get("new", {})
        recall = f"{ft['rerank_10@10']:.3f}" if "rerank_10@10" in ft else "-"
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.created))
        mark = "*" if m.active else " "
        note = m.note + ("" if m.complete else " (codes incomplete)")
        print(f"{mark} {m.id:>3}  {m.method:<11} {m.bits:>4}  {created:<16}  {m.train_size:>10,}  "
              f"{recall:>13}  {note}")
    return 0


def cmd_models_activate(args: argparse.Namespace, lib: Library) -> int:
    info = lib.activate_model(args.id)
    print(f"Version {info.id} ({info.method}, {info.bits} bits) answers searches now.")
    return 0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
