"""Comparing recipes: is A better than B, by how much, and how many seeds would show it.

Every test is two-sided at α = 0.05. Welch's t-test does not assume equal variances (two recipes
rarely have them); Mann–Whitney U does not assume normality (a black swan is one run, not a shift).
The seeds needed per arm are those at which Welch's test reaches 80 % power against the observed
difference and standard deviations, from the noncentral t distribution (not the normal shortcut,
which undercounts at the small n where seed studies usually live).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from fastseed.stats.summary import BOOT, bootstrap, percentile_ci

ALPHA, POWER = 0.05, 0.80


def prob_superiority(a, b) -> float:
    """P(a random run of A beats a random run of B), ties counting one half: U_A / (n_A · n_B)."""
    a, b = np.asarray(a, float), np.sort(np.asarray(b, float))
    below = np.searchsorted(b, a, side="left")
    ties = np.searchsorted(b, a, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(a) * len(b)))


def welch_power(n: int, diff: float, sd_a: float, sd_b: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided Welch test with n runs per arm, at a true difference `diff`."""
    var = sd_a ** 2 + sd_b ** 2
    df = (n - 1) * var ** 2 / (sd_a ** 4 + sd_b ** 4)
    ncp = abs(diff) / np.sqrt(var / n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def seeds_for_power(diff: float, sd_a: float, sd_b: float, power: float = POWER,
                    alpha: float = ALPHA) -> float:
    """Smallest n per arm with Welch power ≥ `power` (inf when there is no difference to detect)."""
    if not (np.isfinite(diff) and np.isfinite(sd_a) and np.isfinite(sd_b)) or diff == 0:
        return np.inf
    if sd_a == 0 and sd_b == 0:
        return 2.0
    lo, hi = 2, 4
    while welch_power(hi, diff, sd_a, sd_b, alpha) < power:  # power grows with n: bracket, bisect
        lo, hi = hi, hi * 2
        if hi > 10 ** 12:
            return np.inf
    if welch_power(lo, diff, sd_a, sd_b, alpha) >= power:
        return float(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if welch_power(mid, diff, sd_a, sd_b, alpha) < power else (lo, mid)
    return float(hi)


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float           # mean_a − mean_b
    ci_low: float         # bootstrap 95 % CI of diff (each arm resampled on its own)
    ci_high: float
    welch_t: float
    welch_p: float
    mwu_u: float          # U statistic of A
    mwu_p: float
    p_a_beats_b: float
    seeds_per_arm: float  # for 80 % power at the observed difference (inf: no difference)


def compare(a, b, label_a: str = "A", label_b: str = "B", n_boot: int = BOOT, rng=None) -> Comparison:
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    rng = np.random.default_rng(0) if rng is None else rng
    nan = np.nan
    diff = a.mean() - b.mean() if len(a) and len(b) else nan
    if len(a) > 1 and len(b) > 1:
        ci = percentile_ci(bootstrap(a, np.mean, n_boot, rng) - bootstrap(b, np.mean, n_boot, rng))
        with np.errstate(invalid="ignore", divide="ignore"):  # two constant arms: t undefined
            welch = stats.ttest_ind(a, b, equal_var=False)
        mwu = stats.mannwhitneyu(a, b, alternative="two-sided")
        needed = seeds_for_power(diff, a.std(ddof=1), b.std(ddof=1))
        t, p, u, up = welch.statistic, welch.pvalue, mwu.statistic, mwu.pvalue
    else:  # one run in an arm: no spread, no test
        ci, t, p, u, up, needed = (nan, nan), nan, nan, nan, nan, nan
    return Comparison(a=label_a, b=label_b, n_a=len(a), n_b=len(b),
                      mean_a=a.mean() if len(a) else nan, mean_b=b.mean() if len(b) else nan,
                      diff=diff, ci_low=ci[0], ci_high=ci[1], welch_t=float(t), welch_p=float(p),
                      mwu_u=float(u), mwu_p=float(up),
                      p_a_beats_b=prob_superiority(a, b) if len(a) and len(b) else nan,
                      seeds_per_arm=needed)
