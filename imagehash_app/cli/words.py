"""`search --text` and the `words` sub-commands (list, train, activate, suggest): thin over the
Library's words methods."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imagehash_app.cli.progress import run_printing_progress
from imagehash_app.core.library import Library, TextAnswer, WordsFinetuneResult, b64, display


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("words", help="the words photos carry, and search by words")
    wsub = p.add_subparsers(dest="words_action", metavar="ACTION", required=True)
    lp = wsub.add_parser("list", help="the words photos carry, most carried first")
    lp.add_argument("--top", type=int, default=50, metavar="N")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=cmd_list)
    tp = wsub.add_parser("train", help="learn search by words (UGACH) from the photos carrying words")
    tp.add_argument("--epochs", type=int, default=None, metavar="N")
    mode = tp.add_mutually_exclusive_group()
    mode.add_argument("--adversarial", action="store_true",
                      help="the full UGACH with its generator (measured worse on flowers5)")
    mode.add_argument("--no-adversarial", action="store_true",
                      help="UGACH without the generator, random pairs against the true ones "
                           "(the default)")
    tp.add_argument("--force", action="store_true", help="keep the new version even if not better")
    tp.add_argument("--json", action="store_true")
    tp.set_defaults(func=cmd_train)
    ap = wsub.add_parser("activate", help="make words version ID answer text queries ('none': none)")
    ap.add_argument("id", metavar="ID")
    ap.set_defaults(func=cmd_activate)
    sp = wsub.add_parser("suggest", help="keywords for a photo, from its neighbours' words")
    sp.add_argument("photo", type=Path, metavar="PHOTO")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_suggest)


def _open(args: argparse.Namespace, read_only: bool) -> Library:
    return Library.open(args.library, read_only=read_only)


def search_text(args: argparse.Namespace) -> int:
    with _open(args, True) as lib:
        answer = lib.search_text(args.text, top_k=args.top)
    if args.json:
        print(json.dumps(_answer_dict(args.text, answer)))
        return 0
    print(f"{args.text!r}: " + (", ".join(answer.words) or "no known word")
          + (f" (no photo carries {', '.join(answer.unknown)})" if answer.unknown else ""))
    if answer.note:
        print(f"  ({answer.note})")
    for rank, r in enumerate(answer.results, 1):
        mark = "words" if r.has_words else "     "
        print(f"  {rank:>3}  {r.score:7.4f}  {r.hamming:>4}  {mark}  {display(r.path)}")
    return 0


def _answer_dict(text: str, answer: TextAnswer) -> dict:
    return {
        "text": text, "words": answer.words, "unknown": answer.unknown, "note": answer.note,
        "results": [
            {"path": str(r.path), "path_b64": b64(r.path), "score": round(r.score, 6),
             "hamming": r.hamming, "has_words": r.has_words}
            for r in answer.results
        ],
    }


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args, True) as lib:
        vocab = lib.vocabulary(args.top)
    if args.json:
        print(json.dumps([{"word": w, "photos": n} for w, n in vocab]))
        return 0
    if not vocab:
        print("No photo carries words yet (folder names, file names, keywords are read while indexing).")
    for word, n in vocab:
        print(f"  {n:>6}  {word}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    with _open(args, False) as lib:
        plan = lib.words_finetune_plan()
        if not plan.offered:
            print(f"imagehash-app: {plan.reason}", file=sys.stderr)
            return 1
        adversarial = True if args.adversarial else False if args.no_adversarial else None
        result: WordsFinetuneResult = run_printing_progress(
            lib.finetune_words(epochs=args.epochs, adversarial=adversarial))
        keep = result.better or args.force
        if keep:
            lib.activate_words_model(result.model_id)
        else:
            lib.activate_words_model(result.previous_model)
    if args.json:
        print(json.dumps({**result.__dict__, "kept": keep}, indent=2))
        return 0
    print(format_train(result, keep))
    return 0


def format_train(r: WordsFinetuneResult, kept: bool) -> str:
    prev = (f"; words version {r.previous_model}: {r.previous_metrics['mAP']:.3f}"
            if r.previous_metrics else "")
    lines = [
        f"Held-out word queries ({r.metrics.get('queries', 0)} words, {r.held_out} photos held out): "
        f"mAP {r.metrics['mAP']:.3f}, P@10 {r.metrics['P@10']:.3f} (the mean look of the photos "
        f"carrying the word: {r.baseline_metrics['mAP']:.3f}{prev}).",
        f"Trained on {r.trained_on} photos carrying words in {r.seconds:g} s.",
        (f"Words version {r.model_id} answers text queries now." if kept else
         f"Words version {r.model_id} was not better; the previous one still answers."),
    ]
    return "\n".join(lines)


def cmd_activate(args: argparse.Namespace) -> int:
    model_id = None if args.id.lower() == "none" else int(args.id)
    with _open(args, False) as lib:
        lib.activate_words_model(model_id)
    print("No words version answers text queries now: they show the photos carrying the words."
          if model_id is None else f"Words version {model_id} answers text queries now.")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    with _open(args, True) as lib:
        pairs = lib.suggest_keywords(args.photo)
    if args.json:
        print(json.dumps([{"word": w, "share": round(s, 3)} for w, s in pairs]))
        return 0
    if not pairs:
        print("No suggestion: search by words has not learnt yet, or no neighbour carries words.")
    for word, share in pairs:
        print(f"  {share:5.0%}  {word}")
    return 0
