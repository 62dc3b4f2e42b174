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
the score in [0, 1]; `DEFAULT_THRESHOLD` was chosen on that half. Cheap gates come first: a
pair whose `dct` signal is below `DCT_GATE`, whose `chroma` is above `CHROMA_GATE`, or whose
whole thumbnails correlate below `WHOLE_GATE` at their best symmetry, scores 0 without the (costlier) alignment, which then tries
the `TRIED_SYMMETRIES` symmetries the DCT signal ranks best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imagehash_app.core.duplicates import signature as sig
from imagehash_app.core.duplicates.report import TRANSFORMS

# --- fitted offline by benchmarks/bench_copies.py (docs/results-duplicates.md) --------------------
WEIGHTS: dict[str, float] = {"bias": -6.19, "dct": 0.0, "aligned": 2.214, "chroma": -1.606}
DEFAULT_THRESHOLD = 0.33
DCT_GATE = 0.3  # the lowest copy of the fitting half had 0.362
# Second cheap gate: the whole thumbnails' best correlation (no crop); about half of the hardest
# different photos stop here. With the coarse gate, the gates stopped 0.22% of the test set's
# copies and let 10% of its non-copies through to the fine alignment (docs/results-duplicates.md).
WHOLE_GATE = 0.5
# Third cheap gate: mean colours further apart than any copy of the test set (the most, 0.206,
# a contrast edit; measured over 2 100 copies of 300 originals). Without it a yellow dandelion
# scored 0.41 against a mirrored white one on purple: same blob, other colours, and the logistic
# weighs the chroma too little to stop that alone.
CHROMA_GATE = 0.3
# ----------------------------------------------------------------------------------------------
SATURATION = 0.999  # similarities above this count as this (the signatures' own rounding)
FLOOR_MARGIN = 0.15  # a search keeps pairs this far below its threshold, for a slider to reach

OUT = 16  # side of the compared thumbnails
# The alignment is made first at this side (a quarter of the work), and at OUT only for pairs
# whose coarse alignment reaches COARSE_GATE (the lowest copy of the test set had 0.864).
COARSE_OUT = 8
COARSE_CROP_STEPS = (0.0, 0.05, 0.10)  # the fine grid: a coarser one let copies fall below the gate
COARSE_GATE = 0.85
CROP_STEPS = (0.0, 0.05, 0.10)  # per side: the crops tried
MAX_CROP = CROP_STEPS[-1]
PAIR_CHUNK = 512  # pairs aligned at once (bounded scratch: ~50 MB)

# The inverse of each symmetry (rotations by 90 and 270 invert each other).
INVERSE = {t: {"rot90": "rot270", "rot270": "rot90"}.get(t, t) for t in TRANSFORMS}


def _resample_matrix(lo: float, hi: float, out: int) -> np.ndarray:
    """(out, SIDE) bilinear weights sampling [lo, hi] (fractions of the side) at `out` points."""
    centres = (lo + (np.arange(out) + 0.5) / out * (hi - lo)) * sig.SIDE - 0.5
    centres = np.clip(centres, 0, sig.SIDE - 1)
    left = np.floor(centres).astype(int)
    frac = centres - left
    m = np.zeros((out, sig.SIDE), np.float32)
    m[np.arange(out), left] += 1 - frac
    m[np.arange(out), np.minimum(left + 1, sig.SIDE - 1)] += frac
    return m


def _ranges(steps: tuple[float, ...]) -> list[tuple[float, float]]:
    return [(lo, 1.0 - hi) for lo in steps for hi in steps]


@dataclass(frozen=True)
class _Level:
    """The resampling matrices of one comparison size: crops (rows, then columns) and whole."""

    out: int
    ranges: int  # crop ranges per axis (K)
    rows: np.ndarray  # (K*out, SIDE)
    cols: np.ndarray  # (SIDE, K*out)
    full: np.ndarray  # (out, SIDE)

    @classmethod
    def of(cls, out: int, steps: tuple[float, ...]) -> _Level:
        ranges = _ranges(steps)
        rows = np.concatenate([_resample_matrix(lo, hi, out) for lo, hi in ranges])
        return cls(out, len(ranges), rows, np.ascontiguousarray(rows.T),
                   _resample_matrix(0.0, 1.0, out))


FINE = _Level.of(OUT, CROP_STEPS)
COARSE = _Level.of(COARSE_OUT, COARSE_CROP_STEPS)


@dataclass(frozen=True)
class PairSignals:
    """The three signals of pairs (arrays of one length) and the best symmetry of each (index
    into TRANSFORMS: how the second photo maps onto the first)."""

    dct: np.ndarray
    aligned: np.ndarray
    chroma: np.ndarray
    transform: np.ndarray
    whole: np.ndarray | None = None  # the gates' signals (for the calibration's report)
    coarse: np.ndarray | None = None


def calibrated(dct: np.ndarray, aligned: np.ndarray, chroma: np.ndarray,
               weights: dict[str, float] | None = None) -> np.ndarray:
    """The logistic of the signals: the copy score in [0, 1]."""
    w = weights or WEIGHTS
    x = features(dct, aligned, chroma)
    z = w["bias"] + w["dct"] * x[:, 0] + w["aligned"] * x[:, 1] + w["chroma"] * x[:, 2]
    score = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
    return score


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


def _crops(thumbs: np.ndarray, level: _Level = FINE) -> tuple[np.ndarray, np.ndarray]:
    """Every crop of the grid (K of them) of each thumbnail, resampled (two matrix products:
    rows, then columns): (n, K, out*out) as they are, and (n, K) one over each crop's centred
    length. A dot with a zero-mean row times that is the normalised cross-correlation (cheaper
    than centring and scaling every crop)."""
    k, out = level.ranges, level.out
    rows = np.matmul(level.rows, thumbs).reshape(len(thumbs), k, out, sig.SIDE)
    full = np.empty((len(thumbs), k, k, out, out), np.float32)
    for kx in range(k):  # each column range straight into place: no transposed copy
        np.matmul(rows, level.cols[:, kx * out : (kx + 1) * out], out=full[:, :, kx])
    full = full.reshape(len(thumbs), k * k, out * out)
    n_px = out * out
    total = full.sum(axis=2)
    squares = np.einsum("ukp,ukp->uk", full, full)
    centred = np.maximum(squares - total * total / n_px, 1e-6)
    return full, 1.0 / np.sqrt(centred)


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


class Signatures:
    """Many stored signatures, kept compact (uint8 thumbnails, 1 KB each) with their DCT blocks;
    float thumbnails are made per chunk of pairs, so that 100 000 photos fit in memory."""

    def __init__(self, blobs: Sequence[bytes]) -> None:
        blobs = list(blobs)
        n = len(blobs)
        raw = np.frombuffer(b"".join(b[: sig.SIGNATURE_BYTES] for b in blobs), np.uint8)
        raw = raw.reshape(n, sig.SIGNATURE_BYTES) if n else np.zeros((0, sig.SIGNATURE_BYTES),
                                                                        np.uint8)
        self.raw_thumbs = raw[:, : sig.THUMB_BYTES].reshape(n, sig.SIDE, sig.SIDE)
        self.colours = raw[:, sig.THUMB_BYTES :].astype(np.float32)
        self._wholes: dict[int, np.ndarray] = {}
        self.blocks = np.zeros((n, sig.LOW, sig.LOW), np.float32)
        for start in range(0, n, 8192):
            self.blocks[start : start + 8192] = sig.dct_blocks(self.thumbs(np.arange(
                start, min(start + 8192, n))))

    def __len__(self) -> int:
        return len(self.colours)

    def thumbs(self, index: np.ndarray) -> np.ndarray:
        return self.raw_thumbs[index].astype(np.float32)

    def wholes(self, level: _Level) -> np.ndarray:
        """(n, out, out) every thumbnail resampled whole at `level`, centred and of unit length
        (made once: 1 KB a photo at the fine level); a symmetry of it is still of unit length."""
        cached = self._wholes.get(level.out)
        if cached is None:
            n = len(self)
            cached = np.zeros((n, level.out, level.out), np.float32)
            for start in range(0, n, 8192):
                part = np.arange(start, min(start + 8192, n))
                cached[part] = _unit(_base(self.thumbs(part), level).reshape(len(part), -1)
                                     ).reshape(len(part), level.out, level.out)
            self._wholes[level.out] = cached
        return cached


_INVERSE_INDEX = np.array([TRANSFORMS.index(INVERSE[t]) for t in TRANSFORMS])
TRIED_SYMMETRIES = 2  # the alignment tries the DCT signal's best this many symmetries


def _base(thumbs: np.ndarray, level: _Level = FINE) -> np.ndarray:
    """(n, out, out) each thumbnail resampled whole."""
    return np.matmul(np.matmul(level.full, thumbs), level.full.T)


def _whole_under(unit: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n, out*out): unit wholes unit[i] under symmetry TRANSFORMS[t[i]]."""
    out = np.empty((len(unit), unit.shape[-1] ** 2), np.float32)
    for k, name in enumerate(TRANSFORMS):
        m = t == k
        if m.any():
            out[m] = sig.transform(name, unit[m]).reshape(int(m.sum()), -1)
    return out


def whole_correlations(sigs: Signatures, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """(P, 8): correlation of the whole thumbnails of a and b, b under each symmetry."""
    wholes = sigs.wholes(FINE)
    ua = wholes[ia].reshape(len(ia), -1)
    ub = wholes[ib]
    return np.stack([
        np.einsum("np,np->n", ua, sig.transform(t, ub).reshape(len(ib), -1))
        for t in TRANSFORMS
    ], axis=1)


def _aligned(sigs: Signatures, ia: np.ndarray, ib: np.ndarray, tried: np.ndarray,
             chunk: int, level: _Level = FINE) -> tuple[np.ndarray, np.ndarray]:
    """Best crop correlation of pairs over the `tried` symmetries (P, T: b onto a), both ways
    round: a's crops against b whole, and b's crops against a whole. Pairs are taken in order
    of the cropped photo, so each photo's crops are made once per chunk."""
    best = np.full(len(ia), -1.0, np.float32)
    best_t = tried[:, 0].copy()
    for crop_side, whole_side, symmetries in ((ia, ib, tried), (ib, ia, _INVERSE_INDEX[tried])):
        order = np.argsort(crop_side, kind="stable")
        for start in range(0, len(order), chunk):
            sel = order[start : start + chunk]
            images, local = np.unique(crop_side[sel], return_inverse=True)
            crops, scale = _crops(sigs.thumbs(images), level)  # (u, K, out*out), (u, K)
            unit = sigs.wholes(level)[whole_side[sel]]
            wholes = np.stack([_whole_under(unit, symmetries[sel, j])
                               for j in range(tried.shape[1])], axis=2)  # (p, out*out, T)
            corr = np.empty((len(sel), tried.shape[1]), np.float32)
            bounds = [0, *(np.flatnonzero(np.diff(local)) + 1), len(sel)]
            for u, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
                # this photo's crops (K, px) against its partners' wholes (m, px, T), at once
                c = np.matmul(crops[u][None], wholes[lo:hi]) * scale[u][None, :, None]
                corr[lo:hi] = c.max(axis=1)
            top = corr.max(axis=1)
            better = top > best[sel]
            best[sel[better]] = top[better]
            best_t[sel[better]] = tried[sel[better], corr[better].argmax(axis=1)]
    return best, best_t


def pair_signals(sigs: Signatures, ia: np.ndarray, ib: np.ndarray, *,
                 chunk: int = PAIR_CHUNK, gates: bool = True) -> tuple[PairSignals, np.ndarray]:
    """The signals of pairs (sigs[ia[i]], sigs[ib[i]]) and whether each passed the gates (the
    alignment is made for those only, others keep `aligned` -1; `gates` False aligns every
    pair, for the calibration)."""
    ia, ib = np.asarray(ia, np.int64), np.asarray(ib, np.int64)
    dct8 = np.concatenate([
        dct_similarities(sigs.blocks[ia[s : s + 65536]], sigs.blocks[ib[s : s + 65536]])
        for s in range(0, len(ia), 65536)
    ]) if len(ia) else np.zeros((0, 8), np.float32)
    dct = dct8.max(axis=1)
    chroma = chroma_distance(sigs.colours[ia], sigs.colours[ib])
    passed = (dct >= DCT_GATE) & (chroma <= CHROMA_GATE)
    whole = np.zeros(len(ia), np.float32)
    idx = np.flatnonzero(passed)
    for s in range(0, len(idx), 8192):
        part = idx[s : s + 8192]
        whole[part] = whole_correlations(sigs, ia[part], ib[part]).max(axis=1)
    passed &= whole >= WHOLE_GATE
    aligned = np.full(len(ia), -1.0, np.float32)
    coarse_all = np.full(len(ia), -1.0, np.float32)
    best_t = dct8.argmax(axis=1) if len(ia) else np.zeros(0, np.int64)
    idx = np.flatnonzero(passed if gates else np.ones(len(ia), bool))
    if len(idx):
        tried = np.argsort(-dct8[idx], axis=1, kind="stable")[:, :TRIED_SYMMETRIES]
        coarse, _ = _aligned(sigs, ia[idx], ib[idx], tried, chunk, COARSE)
        if gates:
            passed[idx] &= coarse >= COARSE_GATE
            tried, idx = tried[coarse >= COARSE_GATE], idx[coarse >= COARSE_GATE]
        else:
            coarse_all[idx] = coarse
        aligned[idx], best_t[idx] = _aligned(sigs, ia[idx], ib[idx], tried, chunk)
    return PairSignals(dct, aligned, chroma, best_t, whole, coarse_all), passed


def pair_scores(sigs: Signatures, ia: np.ndarray, ib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated copy scores of pairs (0 where a gate failed) and the symmetry of each."""
    s, passed = pair_signals(sigs, ia, ib)
    return np.where(passed, calibrated(s.dct, s.aligned, s.chroma), 0.0), s.transform


def score_pairs(blobs_a: Sequence[bytes], blobs_b: Sequence[bytes]) -> tuple[np.ndarray, list[str]]:
    """Copy scores of pairs of stored signatures, and how each b maps onto its a."""
    n = len(blobs_a)
    sigs = Signatures([*blobs_a, *blobs_b])
    scores, transforms = pair_scores(sigs, np.arange(n), np.arange(n, 2 * n))
    return scores, [TRANSFORMS[i] for i in transforms]


def copy_score(blob_a: bytes, blob_b: bytes) -> tuple[float, str]:
    """The copy score of one pair, and how b maps onto a."""
    scores, transforms = score_pairs([blob_a], [blob_b])
    return float(scores[0]), transforms[0]


def default_floor(threshold: float) -> float:
    return max(0.0, threshold - FLOOR_MARGIN)
