"""The calibrated copy score of two photos, from their stored signatures alone.

Why: "is this a copy?" needs a number that means the same in every library, so it depends on
the two photos' signatures and on constants fitted once, offline (`python -m
benchmarks.bench_copies`, docs/results-duplicates.md) — never on the library's learned hasher or
its other photos.

Three signals, each taken at the best of the eight symmetries (rotations, mirrors):
- `dct`: cosine of the two low-frequency DCT blocks (brightness and contrast cancel out);
- `aligned`: the best normalised cross-correlation of one thumbnail with a crop of the other,
  over a small grid of crops up to `MAX_CROP` of each side, either way round: a copy cropped by
  up to ~10% a side lines up, a crop of a third does not, nor does another shot of the scene;
- `chroma`: how far apart the two photos' mean colours are, brightness aside.
A logistic function of them (coefficients `WEIGHTS`, fitted on half of a labelled test set) is
the score in [0, 1]; `DEFAULT_THRESHOLD` was chosen on that half. Pairs whose `dct` signal is
below `DCT_GATE` score 0 without the (costlier) alignment: no copy of the fitting set came near it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imagehash_app.core.duplicates import signature as sig
from imagehash_app.core.duplicates.report import TRANSFORMS

# --- fitted offline by benchmarks/bench_copies.py (docs/results-duplicates.md) --------------------
WEIGHTS: dict[str, float] = {"bias": -6.196, "dct": 0.0, "aligned": 2.216, "chroma": -1.608}
DEFAULT_THRESHOLD = 0.33
DCT_GATE = 0.3  # the lowest copy of the fitting half had 0.362
# Second cheap gate: the whole thumbnails' best correlation (no crop); 99.9% of the test set's
# copies pass it, half of the hardest different photos do not (docs/results-duplicates.md).
WHOLE_GATE = 0.5
# ----------------------------------------------------------------------------------------------
SATURATION = 0.999  # similarities above this count as this (the signatures' own rounding)
FLOOR_MARGIN = 0.15  # a search keeps pairs this far below its threshold, for a slider to reach

OUT = 16  # side of the compared thumbnails
CROP_STEPS = (0.0, 0.05, 0.10)  # per side: the crops tried
MAX_CROP = CROP_STEPS[-1]
PAIR_CHUNK = 256  # pairs aligned at once (bounded scratch: ~50 MB)

# The inverse of each symmetry (rotations by 90 and 270 invert each other).
INVERSE = {t: {"rot90": "rot270", "rot270": "rot90"}.get(t, t) for t in TRANSFORMS}


def _resample_matrix(lo: float, hi: float) -> np.ndarray:
    """(OUT, SIDE) bilinear weights sampling [lo, hi] (fractions of the side) at OUT points."""
    centres = (lo + (np.arange(OUT) + 0.5) / OUT * (hi - lo)) * sig.SIDE - 0.5
    centres = np.clip(centres, 0, sig.SIDE - 1)
    left = np.floor(centres).astype(int)
    frac = centres - left
    m = np.zeros((OUT, sig.SIDE), np.float32)
    m[np.arange(OUT), left] += 1 - frac
    m[np.arange(OUT), np.minimum(left + 1, sig.SIDE - 1)] += frac
    return m


_RANGES = [(lo, 1.0 - hi) for lo in CROP_STEPS for hi in CROP_STEPS]
_R_CROPS = np.stack([_resample_matrix(lo, hi) for lo, hi in _RANGES])  # (9, OUT, SIDE)
_R_ROWS = _R_CROPS.reshape(-1, sig.SIDE)  # (K*OUT, SIDE)
_R_COLS = np.ascontiguousarray(_R_ROWS.T)
_R_FULL = _resample_matrix(0.0, 1.0)


@dataclass(frozen=True)
class PairSignals:
    """The three signals of pairs (arrays of one length) and the best symmetry of each (index
    into TRANSFORMS: how the second photo maps onto the first)."""

    dct: np.ndarray
    aligned: np.ndarray
    chroma: np.ndarray
    transform: np.ndarray


def calibrated(dct: np.ndarray, aligned: np.ndarray, chroma: np.ndarray,
               weights: dict[str, float] | None = None) -> np.ndarray:
    """The logistic of the signals: the copy score in [0, 1]."""
    w = weights or WEIGHTS
    x = features(dct, aligned, chroma)
    z = w["bias"] + w["dct"] * x[:, 0] + w["aligned"] * x[:, 1] + w["chroma"] * x[:, 2]
    score = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
    return np.where(dct < DCT_GATE, 0.0, score)


def features(dct: np.ndarray, aligned: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """(n, 3) what the logistic weighs: the two similarities as -log(1 - s), which keeps
    growing as a pair gets closer to identical (an exact copy scores near 1), and the chroma."""
    def closeness(s: np.ndarray) -> np.ndarray:
        return -np.log1p(-np.clip(np.asarray(s, np.float64), -1.0, SATURATION))
    return np.stack([closeness(dct), closeness(aligned), np.asarray(chroma, np.float64)], axis=1)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows (last axis) to zero mean and unit length: the cross-correlation is then a dot."""
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _crops(thumbs: np.ndarray) -> np.ndarray:
    """(n, K, OUT*OUT) unit rows: every crop of the grid (K of them) of each thumbnail, resampled
    (two matrix products: rows, then columns)."""
    k = len(_RANGES)
    rows = np.matmul(_R_ROWS, thumbs)  # (n, k*OUT, SIDE)
    full = np.matmul(rows, _R_COLS)  # (n, k*OUT, k*OUT): [range_y, y, range_x, x]
    full = full.reshape(len(thumbs), k, OUT, k, OUT).transpose(0, 1, 3, 2, 4)
    return _unit(full.reshape(len(thumbs), k * k, OUT * OUT))


def _wholes(thumbs: np.ndarray) -> np.ndarray:
    """(n, 8, OUT*OUT) unit rows: each thumbnail resampled whole, under each symmetry."""
    base = np.einsum("yx,nxz,wz->nyw", _R_FULL, thumbs, _R_FULL, optimize=True)
    return _unit(np.stack([sig.transform(t, base).reshape(len(thumbs), -1) for t in TRANSFORMS],
                          axis=1))


def dct_similarities(blocks_a: np.ndarray, blocks_b: np.ndarray) -> np.ndarray:
    """(n, 8): cosine of block a with block b under each symmetry (b mapped onto a)."""
    return np.stack([
        np.einsum("nuv,nuv->n", blocks_a, sig.transform_dct(t, blocks_b)) for t in TRANSFORMS
    ], axis=1)


def chroma_distance(colour_a: np.ndarray, colour_b: np.ndarray) -> np.ndarray:
    """L1 distance of the mean colours' proportions (R, G, B summing to one)."""
    def proportions(c: np.ndarray) -> np.ndarray:
        mean = c[:, :3] + 1.0
        return mean / mean.sum(axis=1, keepdims=True)
    return np.abs(proportions(colour_a) - proportions(colour_b)).sum(axis=1)


def signals(thumbs_a: np.ndarray, thumbs_b: np.ndarray, colour_a: np.ndarray,
            colour_b: np.ndarray, *, align: np.ndarray | None = None) -> PairSignals:
    """The signals of pairs (a[i], b[i]); `align` (bool per pair, default all) says which pairs
    get the alignment (others: `aligned` 0)."""
    n = len(thumbs_a)
    dcts = dct_similarities(sig.dct_blocks(thumbs_a), sig.dct_blocks(thumbs_b))
    aligned = np.zeros(n, np.float32)
    best_t = dcts.argmax(axis=1)
    todo = np.arange(n) if align is None else np.flatnonzero(align)
    inverse_index = np.array([TRANSFORMS.index(INVERSE[t]) for t in TRANSFORMS])
    for start in range(0, len(todo), PAIR_CHUNK):
        idx = todo[start : start + PAIR_CHUNK]
        ta, tb = thumbs_a[idx], thumbs_b[idx]
        # a cropped against b whole (b mapped by t onto a), and b cropped against a whole
        # (a mapped by t's inverse onto b): (m, 256, 8) correlations each way.
        one = np.matmul(_crops(ta), _wholes(tb).transpose(0, 2, 1)).max(axis=1)
        two = np.matmul(_crops(tb), _wholes(ta).transpose(0, 2, 1)).max(axis=1)
        both = np.maximum(one, two[:, inverse_index])  # (m, 8), by how b maps onto a
        aligned[idx] = both.max(axis=1)
        best_t[idx] = both.argmax(axis=1)
    return PairSignals(dcts.max(axis=1), aligned, chroma_distance(colour_a, colour_b), best_t)


def passes_gates(thumbs_a: np.ndarray, thumbs_b: np.ndarray, blocks_a: np.ndarray,
                 blocks_b: np.ndarray) -> np.ndarray:
    """Whether pairs are worth aligning: both cheap signals at their gates (else they score 0)."""
    dct = dct_similarities(blocks_a, blocks_b).max(axis=1)
    whole = np.einsum("np,ntp->nt", _wholes(thumbs_a)[:, 0], _wholes(thumbs_b)).max(axis=1)
    return (dct >= DCT_GATE) & (whole >= WHOLE_GATE)


def score_pairs(blobs_a: Sequence[bytes], blobs_b: Sequence[bytes]) -> tuple[np.ndarray, list[str]]:
    """Copy scores of pairs of stored signatures, and how each b maps onto its a."""
    ta, tb = sig.thumbs(list(blobs_a)), sig.thumbs(list(blobs_b))
    ca, cb = sig.colours(list(blobs_a)), sig.colours(list(blobs_b))
    gated = passes_gates(ta, tb, sig.dct_blocks(ta), sig.dct_blocks(tb))
    s = signals(ta, tb, ca, cb, align=gated)
    scores = np.where(gated, calibrated(s.dct, s.aligned, s.chroma), 0.0)
    return scores, [TRANSFORMS[i] for i in s.transform]


def copy_score(blob_a: bytes, blob_b: bytes) -> tuple[float, str]:
    """The copy score of one pair, and how b maps onto a."""
    scores, transforms = score_pairs([blob_a], [blob_b])
    return float(scores[0]), transforms[0]


def default_floor(threshold: float) -> float:
    return max(0.0, threshold - FLOOR_MARGIN)
