"""Calibration per seed, from stored logits: expected calibration error and reliability curves.

A run's confidence on an image is its largest softmax probability and its prediction the argmax.
Confidences fall into 15 equal-width bins B_m = ((m − 1)/15, m/15] (Guo et al. 2017, "On Calibration
of Modern Neural Networks", ICML, §2 and Eq. 3, after Naeini et al. 2015, AAAI), and

    ECE = Σ_m |B_m| / n · |acc(B_m) − conf(B_m)|,

acc the fraction right and conf the mean confidence in the bin. Each run gives one ECE and one
reliability curve (acc and conf per bin); across seeds they are a distribution like the accuracy's.
Logits are read a run at a time and reduced to 3 × 15 numbers, so any number of seeds streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 15


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float32 (float16 logits would overflow exp), shifted by the row max."""
    z = np.asarray(logits, dtype=np.float32)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Reliability:
    """One run's binned confidences: `count`, `accuracy` and mean `confidence` per bin (NaN where
    the bin is empty), and its ECE; fractions, not percent."""
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float


def reliability(logits, labels, bins: int = BINS) -> Reliability:
    """Binned confidence against accuracy of one run's (images × classes) logits."""
    p = softmax(logits)
    labels = np.asarray(labels)
    confidence = p.max(axis=1).astype(np.float64)
    right = p.argmax(axis=1) == labels
    # bin m holds ((m − 1)/M, m/M]: ceil(conf · M) − 1, a confidence of exactly 0 (impossible) in bin 0
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=right, minlength=bins) / count
        conf = np.bincount(which, weights=confidence, minlength=bins) / count
    gap = np.where(count > 0, np.abs(acc - conf), 0.0)
    return Reliability(count=count, accuracy=acc, confidence=conf,
                       ece=float((count * gap).sum() / len(labels)))


@dataclass(frozen=True)
class Calibration:
    """Reliability of many runs: per run (rows) and bin (columns)."""
    rows: np.ndarray          # (R,) run indices (into the Runs) the rows belong to
    ece: np.ndarray           # (R,)
    count: np.ndarray         # (R, bins)
    accuracy: np.ndarray      # (R, bins), NaN where a run has no image in the bin
    confidence: np.ndarray    # (R, bins)


def calibrate(logits_stream, labels, bins: int = BINS) -> Calibration:
    """Reliability of each (run index, logits) of a stream, one run in memory at a time."""
    rows, items = [], []
    for i, logits in logits_stream:
        rows.append(i)
        items.append(reliability(logits, labels, bins))
    stack = lambda name: np.array([getattr(r, name) for r in items], dtype=float).reshape(len(items), bins)
    return Calibration(rows=np.array(rows, dtype=np.int64), ece=np.array([r.ece for r in items]),
                       count=stack("count"), accuracy=stack("accuracy"), confidence=stack("confidence"))
