"""Which test images depend on the seed: per image, the fraction of seeds that classify it right.

One pass over the (runs × images) predictions, a block of runs at a time, counts everything the
per-example questions need: images right per run (and per run within given groups of images: the
halves of stats.transfer), runs right per image (kept per block of runs, for the bootstrap of
stats.testset), and per image how often each wrong class is predicted. Nothing of
size runs × images is ever made beyond one chunk of comparisons: 10^5 seeds × 10^4 images stay the
uint8 matrix they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CHUNK = 1 << 23        # predictions compared at once (8 MiB of bools)
BLOCKS = 200           # blocks of runs kept apart for the bootstrap (each run its own when fewer)
SEED_DEPENDENT = 32    # images shown in the grid
# fraction of seeds right → what the image is; the edges are shown in the report's table
KINDS = (("always wrong", 0.0, 0.0), ("mostly wrong", 0.0, 0.25), ("coin flip", 0.25, 0.75),
         ("mostly right", 0.75, 1.0), ("always right", 1.0, 1.0))


@dataclass(frozen=True)
class ExampleCounts:
    """Counts over the finished runs (rows in the order given) and the test images."""
    labels: np.ndarray         # (M,) true class
    run_right: np.ndarray      # (N,) int64: images each run classifies right
    group_right: np.ndarray    # (N, G) int64: ... among the images of each group
    block_runs: np.ndarray     # (B,) int64: runs in each block (consecutive runs)
    block_right: np.ndarray    # (B, M) int32: per block, runs that classify image i right
    wrong_class: np.ndarray    # (M,) int64: the most common wrong prediction (lowest class on ties), -1 if none
    wrong_runs: np.ndarray     # (M,) int64: runs that predict it

    @property
    def runs(self) -> int:
        return len(self.run_right)

    @property
    def right(self) -> np.ndarray:
        """(M,) runs that classify image i right."""
        return self.block_right.sum(axis=0, dtype=np.int64)

    @property
    def fraction_right(self) -> np.ndarray:
        return self.right / self.runs


def block_bounds(n_runs: int, blocks: int = BLOCKS) -> np.ndarray:
    """(B + 1,) row offsets of `min(n_runs, blocks)` consecutive blocks of near-equal size."""
    b = max(1, min(n_runs, blocks))
    return (np.arange(b + 1) * n_runs) // b


def count_examples(predictions, labels, rows=None, blocks: int = BLOCKS, groups=()) -> ExampleCounts:
    """Counts over `rows` of the (runs × images) `predictions` (all rows when None); `groups`:
    arrays of image indices to count each run's right answers in as well."""
    labels = np.asarray(labels)
    rows = np.arange(len(predictions)) if rows is None else np.asarray(rows, dtype=np.int64)
    M = len(labels)
    n_classes = int(labels.max(initial=0)) + 1
    bounds = block_bounds(len(rows), blocks)
    run_right = np.zeros(len(rows), dtype=np.int64)
    group_right = np.zeros((len(rows), len(groups)), dtype=np.int64)
    masks = []
    for group in groups:
        masks.append(np.zeros(M, dtype=bool))
        masks[-1][group] = True
    block_right = np.zeros((len(bounds) - 1, M), dtype=np.int32)
    wrong = np.zeros(M * n_classes, dtype=np.int64)  # (image, class) counts, flat
    per_chunk = max(1, CHUNK // max(M, 1))
    for start in range(0, len(rows), per_chunk):
        stop = min(start + per_chunk, len(rows))
        chunk = predictions[rows[start:stop]]
        miss = chunk != labels[None, :]
        bytes_ = miss.view(np.uint8)  # sums of bytes: twice as fast as count_nonzero along a row
        run_right[start:stop] = M - bytes_.sum(axis=1, dtype=np.int32)
        for g, mask in enumerate(masks):  # a mask and a sum: 6x faster than gathering columns
            group_right[start:stop, g] = mask.sum() - (bytes_ & mask).sum(axis=1, dtype=np.int32)
        for b in range(np.searchsorted(bounds, start, "right") - 1, len(bounds) - 1):  # blocks in the chunk
            lo, hi = max(bounds[b], start) - start, min(bounds[b + 1], stop) - start
            if lo >= hi:
                break
            block_right[b] += hi - lo - bytes_[lo:hi].sum(axis=0, dtype=np.int32)
        where = np.flatnonzero(miss)  # ~10 % of the entries: only they can vote for a wrong class
        image, predicted = where % M, chunk.ravel()[where].astype(np.int64)
        if len(predicted) and predicted.max() >= n_classes:  # a class the labels never use
            wider = int(predicted.max()) + 1
            wrong = np.pad(wrong.reshape(M, n_classes), ((0, 0), (0, wider - n_classes))).ravel()
            n_classes = wider
        wrong += np.bincount(image * n_classes + predicted, minlength=M * n_classes)
    wrong = wrong.reshape(M, n_classes)
    wrong_runs = wrong.max(axis=1) if n_classes else np.zeros(M, np.int64)
    wrong_class = np.where(wrong_runs > 0, wrong.argmax(axis=1), -1)
    return ExampleCounts(labels=labels, run_right=run_right, group_right=group_right,
                         block_runs=np.diff(bounds).astype(np.int64),
                         block_right=block_right, wrong_class=wrong_class, wrong_runs=wrong_runs)


def image_table(counts: ExampleCounts) -> pd.DataFrame:
    """One row per test image: index, label, fraction of seeds right, most common wrong class (-1
    when no seed is wrong) and the fraction of seeds that predict it."""
    return pd.DataFrame({"image": np.arange(len(counts.labels)), "label": counts.labels.astype(np.int64),
                         "fraction_right": counts.fraction_right,
                         "most_common_wrong": counts.wrong_class,
                         "fraction_wrong_as": counts.wrong_runs / counts.runs})


def kinds(fraction) -> pd.DataFrame:
    """How many images are always right, mostly right, coin flips, mostly wrong, always wrong."""
    f = np.asarray(fraction, dtype=float)
    rows = []
    for name, lo, hi in KINDS:
        if lo == hi:
            inside, span = f == lo, f"{100 * lo:.0f} %"
        else:  # half-open intervals, closed where they meet "coin flip"
            inside = (f > lo) & (f < hi) if name != "coin flip" else (f >= lo) & (f <= hi)
            span = f"{100 * lo:.0f}–{100 * hi:.0f} %"
        rows.append({"kind": name, "seeds_right": span, "images": int(inside.sum()),
                     "share": float(inside.mean()) if len(f) else np.nan})
    return pd.DataFrame(rows)


def most_seed_dependent(fraction, k: int = SEED_DEPENDENT) -> np.ndarray:
    """Indices of the k images whose fraction of seeds right is nearest one half (ties: lower index):
    those the seed decides most, p(1 − p) largest."""
    f = np.asarray(fraction, dtype=float)
    return np.lexsort((np.arange(len(f)), np.abs(f - 0.5)))[:k]
