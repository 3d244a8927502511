"""How much of the seed-to-seed spread is only the finite test set (Jordan 2024).

K. Jordan, "On the Variance of Neural Network Training with respect to Test Sets and Distributions",
ICLR 2024 (arXiv 2304.01910). A run's test-set accuracy is the mean of n per-image Bernoulli events
c_i; over training randomness image i is right with probability p_i. Then

    Var(acc_S) = (1/n²) Σ_i p_i(1 − p_i) + (1/n²) Σ_{i≠j} Cov(c_i, c_j).

The first term is what the test set alone causes: if errors were independent (his Definition 1,
Eq. 1) it would be the whole variance (§3.2: "(1/n²) Σ ε_i(1 − ε_i)"). The accuracy on the
distribution the test set was drawn from varies only through the covariances, and since the n images
are iid draws, the mean off-diagonal covariance is an unbiased estimate of that distribution-wise
variance. Rescaling the excess gives his Theorem 2, Eq. 3:

    σ̂²_D = n/(n − 1) · ( Var(acc_S) − (1/n²) Σ_i Var(c_i) ).

With N runs instead of the paper's 60,000, both variances are replaced by their unbiased sample
versions: s² of the run accuracies (ddof = 1) and v̂_i = N/(N − 1) · q̂_i(1 − q̂_i), q̂_i the
fraction of runs right on image i; so σ̂²_D stays unbiased, and equals the mean off-diagonal entry of
the images' sample covariance matrix (what the tests check). It can come out below zero.

σ̂_D is the spread between seeds on an unlimited test set from the same distribution. A fresh test set of
the same n images adds its own noise back: its expected variance across seeds, E[(1/n²) Σ p_i(1 − p_i)] +
(n − 1)/n · σ²_D, is estimated by noise + (n − 1)/n · σ̂²_D, which is the observed variance itself.

The 95 % interval is a percentile bootstrap over runs, given this test set (it does not cover which
test set was drawn). Runs are resampled as up to 200 blocks of consecutive runs (blocks of iid runs
are iid): every resample is then a handful of block sums and one quadratic form in the blocks' Gram
matrix, so 2,000 resamples of 10^5 seeds cost milliseconds instead of 2,000 passes over 10^9
predictions. With at most 200 runs each block is one run: the ordinary bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastseed.stats.examples import ExampleCounts
from fastseed.stats.summary import BOOT, bootstrap, percentile_ci

PP2 = 1e4  # fractions² → percentage points²


@dataclass(frozen=True)
class TestSetNoise:
    """Variances of test accuracy across seeds, in pp²."""
    runs: int
    images: int
    observed: float       # sample variance of the runs' accuracy
    noise: float          # what test-set sampling alone gives (independent errors)
    distribution: float   # Jordan's unbiased estimate of the variance on the test distribution
    low: float            # bootstrap 95 % CI of `distribution`
    high: float

    @property
    def noise_share(self) -> float:
        """Share of the observed variance that the test set explains (may exceed 1 by chance)."""
        return self.noise / self.observed if self.observed > 0 else np.nan

    @property
    def observed_std(self) -> float:
        return float(np.sqrt(self.observed))

    @property
    def distribution_std(self) -> float:
        """The seed-to-seed spread on an unlimited test set (the distribution): sqrt of the estimate, 0
        where it is below zero."""
        return float(np.sqrt(max(self.distribution, 0.0))) if np.isfinite(self.distribution) else np.nan

    @property
    def std_low(self) -> float:
        return float(np.sqrt(max(self.low, 0.0))) if np.isfinite(self.low) else np.nan

    @property
    def std_high(self) -> float:
        return float(np.sqrt(max(self.high, 0.0))) if np.isfinite(self.high) else np.nan


def _variances(runs, acc_sum, acc_sq, right_total, right_sq, n: int):
    """(observed, noise, distribution) variances (fractions²) from sums over runs: Σ acc, Σ acc²,
    Σ_i k_i and Σ_i k_i², k_i the runs right on image i. Vectorized over resamples."""
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = (acc_sq - acc_sum ** 2 / runs) / (runs - 1)
        # Σ_i q_i(1 − q_i) with q_i = k_i / N, made unbiased for Σ_i p_i(1 − p_i) by N / (N − 1)
        noise = (right_total / runs - right_sq / runs ** 2) * runs / (runs - 1) / n ** 2
        distribution = n / (n - 1) * (observed - noise)
    return observed, noise, distribution


def split_variance(counts: ExampleCounts, n_boot: int = BOOT, rng=None) -> TestSetNoise:
    """Observed, test-set and distribution-wise variance of accuracy over the counted runs."""
    n, N = len(counts.labels), counts.runs
    bounds = np.concatenate([[0], np.cumsum(counts.block_runs)])
    acc = counts.run_right / n
    acc_sum, acc_sq = np.add.reduceat(acc, bounds[:-1]), np.add.reduceat(acc ** 2, bounds[:-1])
    k = counts.block_right.astype(np.float64)        # (B, n), exact in float64
    gram = k @ k.T                                     # Σ_i k_bi k_ci: Σ_i k_i² = wᵀ G w
    total = k.sum(axis=1)
    sizes = counts.block_runs.astype(np.float64)

    def statistic(w):  # w: (resamples, B) how often each block is drawn
        return _variances(w @ sizes, w @ acc_sum, w @ acc_sq, w @ total, ((w @ gram) * w).sum(axis=1), n)[2]

    observed, noise, distribution = (float(v) * PP2 for v in _variances(
        float(N), acc_sum.sum(), acc_sq.sum(), total.sum(), gram.sum(), n))
    low = high = np.nan
    B = len(sizes)
    if n_boot > 0 and N > 2 and n > 1 and B > 1:
        def resampled(idx, axis=1):  # bootstrap() hands over resampled block numbers, as floats
            idx = idx.astype(np.int64) + B * np.arange(len(idx))[:, None]
            return statistic(np.bincount(idx.ravel(), minlength=idx.size).reshape(-1, B).astype(float))
        low, high = (v * PP2 for v in percentile_ci(bootstrap(np.arange(B, dtype=float), resampled,
                                                               n_boot, rng)))
    return TestSetNoise(runs=N, images=n, observed=observed, noise=noise, distribution=distribution,
                        low=low, high=high)
