"""Lucky seeds do not transfer: pick a seed on one half of the test set, score it on the other.

The test set is split once into two fixed halves, *val* and *test*, stratified by class (each class
halved), from a fixed seed, so every report and every store uses the same split. Each run's stored
predictions give its accuracy on each half. If seed-to-seed differences were a property of the seed,
the halves would agree (correlation near 1); if they are mostly which images a run happens to get
right, the best seed on *val* regresses to the mean on *test*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from fastseed.stats.examples import count_examples
from fastseed.stats.extremes import max_weights

SPLIT_SEED = 2109_08203  # Picard's arXiv number: any fixed value would do, this one is memorable


def split_halves(labels, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(val, test) sorted image indices: each class shuffled with a fixed generator and halved (an
    odd class gives its extra image to val)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        half = (len(idx) + 1) // 2
        val.append(idx[:half])
        test.append(idx[half:])
    return np.sort(np.concatenate(val)), np.sort(np.concatenate(test))


def half_accuracies(predictions, labels, val, test, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-run accuracy (percent) on each half, from (runs × images) predicted classes (`rows` of
    them, all when None), counted in the per-image pass of stats.examples."""
    right = count_examples(predictions, labels, rows, groups=(val, test)).group_right
    return 100 * right[:, 0] / len(val), 100 * right[:, 1] / len(test)


@dataclass(frozen=True)
class Transfer:
    n: int
    r: float                # Pearson correlation of val and test accuracy across seeds
    r_low: float            # its 95 % CI (Fisher z)
    r_high: float
    r_p: float              # two-sided p-value of r = 0
    rho: float              # Spearman rank correlation
    slope: float            # least-squares slope of test on val: the share of a val gain that carries over
    best_seed: int          # the best seed on val
    best_val: float
    best_test: float        # ... and what it scores on test
    best_test_rank: int     # its rank on test (1 = best), among n
    mean_val: float
    mean_test: float

    @property
    def val_gain(self) -> float:
        return self.best_val - self.mean_val

    @property
    def test_gain(self) -> float:
        return self.best_test - self.mean_test


def transfer(seeds, val_acc, test_acc) -> Transfer:
    """How well a seed's accuracy on val predicts it on test (needs at least three runs)."""
    seeds, val_acc, test_acc = np.asarray(seeds), np.asarray(val_acc, float), np.asarray(test_acc, float)
    n = len(seeds)
    if np.ptp(val_acc) == 0 or np.ptp(test_acc) == 0:  # a constant half: no correlation defined
        r = r_p = rho = slope = np.nan
    else:
        r, r_p = stats.pearsonr(val_acc, test_acc)
        rho = stats.spearmanr(val_acc, test_acc).statistic
        slope = stats.linregress(val_acc, test_acc).slope
    if n > 3 and np.isfinite(r):
        half = 1.959964 / np.sqrt(n - 3)
        r_low, r_high = np.tanh(np.arctanh(np.clip(r, -0.999999, 0.999999)) + [-half, half])
    else:
        r_low = r_high = np.nan
    best = int(np.argmax(val_acc))
    rank = 1 + int((test_acc > test_acc[best]).sum())
    return Transfer(n=n, r=float(r), r_low=float(r_low), r_high=float(r_high), r_p=float(r_p),
                    rho=float(rho), slope=float(slope), best_seed=int(seeds[best]),
                    best_val=float(val_acc[best]), best_test=float(test_acc[best]), best_test_rank=rank,
                    mean_val=float(val_acc.mean()), mean_test=float(test_acc.mean()))


def selection_curve(val_acc, test_acc, ns) -> pd.DataFrame:
    """Picking the best of n seeds on val, expected over all n-subsets of the runs (exact, see
    extremes.py): its val accuracy, its test accuracy, and the best test accuracy of the n (an
    oracle that could look at test)."""
    val_acc, test_acc = np.asarray(val_acc, float), np.asarray(test_acc, float)
    w = max_weights(len(val_acc), ns)
    by_val = np.argsort(val_acc, kind="stable")
    return pd.DataFrame({"n": np.asarray(ns), "picked_val": w @ val_acc[by_val],
                         "picked_test": w @ test_acc[by_val], "oracle_test": w @ np.sort(test_acc)})
