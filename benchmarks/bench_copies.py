"""The copy score's test set, its calibration and its precision/recall (issue 15).

    nice -n 5 python -m benchmarks.bench_copies [--originals 600] [--json benchmarks/results/copies.json]

Builds labelled pairs from real photos of the shared data (../shared/data):
- copies: flowers5 photos, each edited as people's copies are — JPEG re-encodes at quality 30-95,
  resized down to 25%, cropped by up to 10% a side, brightness and contrast changed, rotated by
  90/180/270, mirrored, saved as PNG or WebP, and some of these combined;
- different shots: every pair of the 4 views of one object in ukbench56 (the stand-in for burst
  shots of one scene), plus each flowers5 photo with its most similar other photo of its class;
- near-misses: crops keeping 50-68% of each side (more than 30% cut away).
Every photo goes through the indexer's own signature code (decoded as the indexer decodes it).
Half of the originals (and of the ukbench objects) fit the logistic calibration and choose the
default threshold (the best F1); the other half reports precision and recall, per kind of edit.
Prints a table; `--json` writes the figures, coefficients included.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from benchmarks import data as bench_data
from imagehash_app.core.duplicates import score as score_mod
from imagehash_app.core.duplicates import signature as sig

FEATURES = ("dct", "aligned", "chroma")
INDEX_MIN_SIDE = 224  # the backbone's decode size: the indexer decodes JPEGs no smaller


def _encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _crop(img: Image.Image, fractions: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    left, top, right, bottom = fractions
    return img.crop((round(left * w), round(top * h), round(w - right * w), round(h - bottom * h)))


def edits(rng: random.Random) -> dict[str, callable]:
    """Named copy edits: each takes an RGB image and returns encoded bytes."""
    def jpeg(q):
        return lambda im: _encode(im, "JPEG", quality=q)

    def side(limit):
        return tuple(rng.uniform(0.0, limit) for _ in range(4))

    return {
        "jpeg q30": jpeg(30), "jpeg q50": jpeg(50), "jpeg q75": jpeg(75), "jpeg q95": jpeg(95),
        "resize 50%": lambda im: _encode(im.resize((im.width // 2, im.height // 2)), quality=90),
        "resize 25%": lambda im: _encode(im.resize((max(8, im.width // 4), max(8, im.height // 4))),
                                         quality=90),
        "crop <=5%": lambda im: _encode(_crop(im, side(0.05)), quality=90),
        "crop <=10%": lambda im: _encode(_crop(im, side(0.10)), quality=90),
        "brightness": lambda im: _encode(ImageEnhance.Brightness(im).enhance(
            rng.choice((0.7, 0.8, 1.2, 1.3))), quality=90),
        "contrast": lambda im: _encode(ImageEnhance.Contrast(im).enhance(
            rng.choice((0.7, 0.8, 1.2, 1.3))), quality=90),
        "rot90": lambda im: _encode(im.transpose(Image.Transpose.ROTATE_90), quality=90),
        "rot180": lambda im: _encode(im.transpose(Image.Transpose.ROTATE_180), quality=90),
        "rot270": lambda im: _encode(im.transpose(Image.Transpose.ROTATE_270), quality=90),
        "mirror": lambda im: _encode(ImageOps.mirror(im), quality=90),
        "png": lambda im: _encode(im, "PNG"),
        "webp": lambda im: _encode(im, "WEBP", quality=80),
        "rot90+jpeg q50+resize": lambda im: _encode(
            im.transpose(Image.Transpose.ROTATE_90).resize((im.height // 2, im.width // 2)),
            quality=50),
        "mirror+crop+bright": lambda im: _encode(ImageEnhance.Brightness(
            _crop(ImageOps.mirror(im), side(0.08))).enhance(1.2), quality=75),
    }


def near_miss(img: Image.Image, rng: random.Random) -> bytes:
    """A crop that keeps 50-68% of each side: more than 30% cut away, not a copy."""
    keep_w, keep_h = rng.uniform(0.5, 0.68), rng.uniform(0.5, 0.68)
    left, top = rng.uniform(0, 1 - keep_w), rng.uniform(0, 1 - keep_h)
    return _encode(_crop(img, (left, top, 1 - keep_w - left, 1 - keep_h - top)), quality=90)


def signature_of_bytes(raw: bytes) -> bytes:
    """The signature the indexer would store for a file with these bytes."""
    img = Image.open(io.BytesIO(raw))
    if img.format == "JPEG":
        img.draft("RGB", (INDEX_MIN_SIDE, INDEX_MIN_SIDE))
    img = ImageOps.exif_transpose(img.convert("RGB"))
    return sig.thumbnail_of(img)


def build_pairs(data: Path, work: Path, originals: int, seed: int) -> list[dict]:
    """Labelled pairs: {"a", "b" (signature bytes), "label" (1 copy), "kind", "half"}."""
    rng = random.Random(seed)
    flowers = sorted(bench_data.photos("flowers5", data, work).rglob("*.jpg"))
    chosen = rng.sample(flowers, min(originals, len(flowers)))
    named = edits(rng)
    pairs: list[dict] = []
    by_class: dict[str, list[tuple[Path, bytes]]] = {}
    for i, path in enumerate(chosen):
        half = i % 2
        raw = path.read_bytes()
        original = signature_of_bytes(raw)
        by_class.setdefault(path.parent.name, []).append((path, original))
        img = Image.open(io.BytesIO(raw)).convert("RGB")
        for kind in rng.sample(sorted(named), 6):
            pairs.append({"a": original, "b": signature_of_bytes(named[kind](img)),
                          "label": 1, "kind": kind, "half": half})
        pairs.append({"a": original, "b": signature_of_bytes(near_miss(img, rng)),
                      "label": 0, "kind": "near-miss crop >30%", "half": half})
    # Each flower with the most similar other flower of its class (by the DCT signal).
    for members in by_class.values():
        blobs = [b for _, b in members]
        blocks = sig.dct_blocks(sig.thumbs(blobs))
        for i in range(len(members)):
            sims = score_mod.dct_similarities(
                np.repeat(blocks[i : i + 1], len(blocks), 0), blocks).max(axis=1)
            sims[i] = -1
            j = int(sims.argmax())
            pairs.append({"a": blobs[i], "b": blobs[j], "label": 0,
                          "kind": "other photo, same class (closest)", "half": i % 2})
    uk = sorted(bench_data.photos("ukbench56", data, work).rglob("*.jpg"))
    uk_sigs = [signature_of_bytes(p.read_bytes()) for p in uk]
    for g in range(len(uk) // 4):
        for i in range(4):
            for j in range(i + 1, 4):
                pairs.append({"a": uk_sigs[4 * g + i], "b": uk_sigs[4 * g + j], "label": 0,
                              "kind": "different shot (ukbench)", "half": g % 2})
    return pairs


def pair_signals(pairs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) signals of every pair, aligned whatever the gates say, and whether each passed."""
    n = len(pairs)
    sigs = score_mod.Signatures([p["a"] for p in pairs] + [p["b"] for p in pairs])
    s, _ = score_mod.pair_signals(sigs, np.arange(n), np.arange(n, 2 * n), gates=False)
    _, passed = score_mod.pair_signals(sigs, np.arange(n), np.arange(n, 2 * n))
    return np.stack([s.dct, s.aligned, s.chroma, s.whole, s.coarse], axis=1), passed


def fit_logistic(x: np.ndarray, y: np.ndarray, names: tuple[str, ...] = FEATURES,
                 l2: float = 1e-3, steps: int = 200) -> dict:
    """Newton's method on the (lightly L2-regularised) logistic loss; balanced classes."""
    xb = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    w = np.zeros(xb.shape[1])
    weight = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (weight * (p - y)) / len(y) + l2 * w
        hess = (xb * (weight * p * (1 - p))[:, None]).T @ xb / len(y) + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"bias": float(w[0]), **{f: float(v) for f, v in zip(names, w[1:], strict=True)}}


def precision_recall(scores: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float]:
    predicted = scores >= threshold
    tp = int((predicted & (y == 1)).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int((y == 1).sum()), 1)
    return precision, recall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench_data.add_arguments(parser)
    parser.add_argument("--originals", type=int, default=600)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pairs = build_pairs(args.data, args.work, args.originals, args.seed)
    built = time.perf_counter() - started
    x, passed = pair_signals(pairs)
    y = np.array([p["label"] for p in pairs])
    half = np.array([p["half"] for p in pairs])
    kinds = np.array([p["kind"] for p in pairs])
    fit, test = half == 0, half == 1
    # The DCT signal gates and picks the symmetry; the logistic weighs the other two (with it
    # too, its weight came out negative: it says the same as the alignment, less well).
    fitted = fit_logistic(score_mod.features(x[fit, 0], x[fit, 1], x[fit, 2])[:, 1:], y[fit],
                          names=FEATURES[1:])
    weights = {"bias": fitted["bias"], "dct": 0.0, **{f: fitted[f] for f in FEATURES[1:]}}
    gate_ok = x[fit & (y == 1), 0].min()
    for name, column in (("whole", 3), ("coarse", 4)):
        values = x[y == 1, column]
        print(f"{name} signal of copies: min {values.min():.3f}, 0.1% {np.percentile(values, 0.1):.3f}, "
              f"1% {np.percentile(values, 1):.3f}; negatives >= 0.5/0.8: "
              f"{(x[y == 0, column] >= 0.5).mean():.3f}/{(x[y == 0, column] >= 0.8).mean():.3f}")
    gate_loss = 1 - passed[y == 1].mean()
    scores = np.where(passed, score_mod.calibrated(x[:, 0], x[:, 1], x[:, 2], weights), 0.0)
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    f1 = []
    for t in grid:
        p, r = precision_recall(scores[fit], y[fit], t)
        f1.append(2 * p * r / max(p + r, 1e-9))
    threshold = float(grid[int(np.argmax(f1))])
    p_fit, r_fit = precision_recall(scores[fit], y[fit], threshold)
    p_test, r_test = precision_recall(scores[test], y[test], threshold)
    shipped = np.where(passed, score_mod.calibrated(x[:, 0], x[:, 1], x[:, 2]), 0.0)
    p_ship, r_ship = precision_recall(shipped[test], y[test], score_mod.DEFAULT_THRESHOLD)
    per_kind = {}
    for kind in sorted(set(kinds)):
        m = test & (kinds == kind)
        if not m.any():  # a small run leaves some edits out of the held-out half
            continue
        hit = scores[m] >= threshold
        per_kind[kind] = {"label": int(y[m][0]), "pairs": int(m.sum()),
                          "called_copy": round(float(hit.mean()), 4),
                          "median_score": round(float(np.median(scores[m])), 4)}
    print(f"{len(pairs)} pairs ({int(y.sum())} copies) built in {built:.0f} s; "
          f"lowest dct signal of a fitting copy {gate_ok:.3f} (gate {score_mod.DCT_GATE}); "
          f"copies stopped by the gates: {gate_loss:.4f}; negatives passing them: "
          f"{passed[y == 0].mean():.3f}")
    print("fitted weights:", {k: round(v, 3) for k, v in weights.items()})
    print(f"threshold {threshold:.2f} (best F1 on the fitting half)")
    print(f"{'half':<10} {'precision':>9} {'recall':>7}")
    print(f"{'fitting':<10} {p_fit:>9.3f} {r_fit:>7.3f}")
    print(f"{'held-out':<10} {p_test:>9.3f} {r_test:>7.3f}")
    print(f"shipped constants on the held-out half: precision {p_ship:.3f} recall {r_ship:.3f}")
    print(f"\n{'held-out pairs by kind':<38} {'copy?':>5} {'pairs':>5} {'called copy':>11} "
          f"{'median':>7}")
    for kind, row in per_kind.items():
        print(f"{kind:<38} {'yes' if row['label'] else 'no':>5} {row['pairs']:>5} "
              f"{row['called_copy']:>11.3f} {row['median_score']:>7.3f}")
    result = {
        "pairs": len(pairs), "copies": int(y.sum()), "originals": args.originals,
        "seed": args.seed, "weights": weights, "threshold": threshold,
        "fitting": {"precision": p_fit, "recall": r_fit},
        "held_out": {"precision": p_test, "recall": r_test},
        "shipped_held_out": {"precision": p_ship, "recall": r_ship,
                             "threshold": score_mod.DEFAULT_THRESHOLD},
        "lowest_copy_dct_fitting": float(gate_ok), "per_kind_held_out": per_kind,
        "copies_stopped_by_gates": float(gate_loss),
        "negatives_passing_gates": float(passed[y == 0].mean()),
        "machine": platform.platform(), "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
