"""Distribution summaries: Picard's Table 1 columns (n, mean ± std, min, max), quantiles, and a CI of the
mean, plus per-epoch bands of the curves (his Figure 1).

The CI of the mean is Student's t-interval up to T_UP_TO runs and the percentile bootstrap above. The
percentile interval is mean ± about z·σ̂/√n with σ̂ the plug-in (ddof = 0) spread, narrower than the
t-interval by z/t(n − 1) and sqrt((n − 1)/n) (B. Efron & R. Tibshirani, An Introduction to the Bootstrap,
1993, §13.3 and §14.1: first-order accurate only); for normal accuracies it covers 85 / 91 / 93 / 94 % at
n = 5 / 10 / 20 / 50, the t-interval 95 % at every n (exact: W. S. Gosset, "The probable error of a mean",
Biometrika 6:1–25, 1908). Above 50 runs the two agree to within a few hundredths of a width, and the
bootstrap follows a skewed histogram (Picard's left tail) where the t-interval would not.

The bootstrap is drawn in blocks of resamples so 10^4 seeds × 2,000 resamples never holds more than a
few million indices at once, and from a fixed seed so a report is the same every time it is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOT = 2000        # resamples: Monte Carlo error of each CI endpoint ~1.5 % of the CI's width
T_UP_TO = 50       # runs: the CI of the mean is Student's t up to this many, the percentile bootstrap above
BOOT_SEED = 0      # a report is deterministic: same store, same numbers
BLOCK = 1 << 22    # indices drawn per block (32 MiB of int64)


def bootstrap(x, statistic=np.mean, n_boot: int = BOOT, rng=None) -> np.ndarray:
    """`n_boot` values of `statistic` over resamples of `x` with replacement.

    `statistic(samples, axis=1)` must reduce each row of a (resamples × len(x)) matrix."""
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(BOOT_SEED) if rng is None else rng
    if len(x) == 0:
        return np.full(n_boot, np.nan)
    out = np.empty(n_boot)
    if statistic is np.mean:
        values, counts = np.unique(x, return_counts=True)
        if 50 * len(values) <= len(x):  # many ties (accuracies on a 1/10^4 grid): draw how often each
            # value is drawn, Multinomial(n, counts / n), the same law as n draws with replacement, in
            # distinct values × resamples instead of n × resamples (10^5 seeds: ~40x less work); with
            # fewer ties the multinomial draws cost more than the indices they replace
            per_block = max(1, BLOCK // len(values))
            for start in range(0, n_boot, per_block):
                stop = min(n_boot, start + per_block)
                out[start:stop] = rng.multinomial(len(x), counts / len(x), size=stop - start) @ values / len(x)
            return out
    per_block = max(1, BLOCK // len(x))
    for start in range(0, n_boot, per_block):
        stop = min(n_boot, start + per_block)
        out[start:stop] = statistic(x[rng.integers(0, len(x), size=(stop - start, len(x)))], axis=1)
    return out


def percentile_ci(values, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap values (Efron's percentile method)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0 or not np.isfinite(values).all():
        return np.nan, np.nan
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Summary:
    """One row of the summary table; every accuracy in the unit it was given (percent in reports)."""
    n: int
    mean: float
    std: float          # sample standard deviation (ddof=1), NaN for fewer than two runs
    min: float
    max: float
    median: float
    q05: float
    q95: float
    ci_low: float       # 95 % CI of the mean, by `ci_method`
    ci_high: float
    ci_method: str = "" # "t" (up to T_UP_TO runs) or "bootstrap" (percentile)


def t_interval(x, level: float = 0.95) -> tuple[float, float]:
    """Student's t-interval of the mean of `x` (at least two values; no spread: the mean itself)."""
    x = np.asarray(x, dtype=float)
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def mean_ci(x, n_boot: int = BOOT, rng=None, level: float = 0.95) -> tuple[float, float, str]:
    """(low, high, method) of the CI of the mean of `x`: "t" up to T_UP_TO values, "bootstrap" above."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return np.nan, np.nan, ""
    if len(x) <= T_UP_TO:
        return (*t_interval(x, level), "t")
    return (*percentile_ci(bootstrap(x, np.mean, n_boot, rng), level), "bootstrap")


def summarize(x, n_boot: int = BOOT, rng=None) -> Summary:
    """Summary of the finite values of `x` (diverged runs, NaN, are the caller's to count)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Summary(0, *[np.nan] * 9)
    q05, median, q95 = np.quantile(x, [0.05, 0.5, 0.95])
    low, high, method = mean_ci(x, n_boot, rng)
    return Summary(n=len(x), mean=float(x.mean()), std=float(x.std(ddof=1)) if len(x) > 1 else np.nan,
                   min=float(x.min()), max=float(x.max()), median=float(median), q05=float(q05),
                   q95=float(q95), ci_low=low, ci_high=high, ci_method=method)


@dataclass(frozen=True)
class Bands:
    """Per-epoch mean, ±1 std and min–max over runs (Picard's Figure 1)."""
    epochs: np.ndarray
    n: np.ndarray       # runs with a value at each epoch
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray


def curve_bands(epochs, values) -> Bands:
    """Bands of a (runs × epochs) matrix; NaN entries (no value) are left out, epoch by epoch."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    safe = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = safe.sum(axis=0) / n
        var = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0) / (n - 1)
    lo = np.where(finite, values, np.inf).min(axis=0, initial=np.inf)
    hi = np.where(finite, values, -np.inf).max(axis=0, initial=-np.inf)
    empty = n == 0
    return Bands(epochs=np.asarray(epochs), n=n, mean=np.where(empty, np.nan, mean),
                 std=np.where(n > 1, np.sqrt(np.maximum(var, 0)), np.nan),
                 min=np.where(empty, np.nan, lo), max=np.where(empty, np.nan, hi))
