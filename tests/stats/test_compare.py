"""Comparing recipes against scipy and brute force; the bootstrap CI and the power calculation by
simulation (coverage and rejection rates over repeated draws)."""

import numpy as np
import pytest
from scipy import stats

from fastseed.stats.compare import compare, prob_superiority, seeds_for_power, welch_power


def test_probability_of_superiority_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 20, 60).astype(float), rng.integers(3, 25, 45).astype(float)
    brute = np.mean([(x > y) + 0.5 * (x == y) for x in a for y in b])
    assert prob_superiority(a, b) == pytest.approx(brute)
    assert prob_superiority(a, b) + prob_superiority(b, a) == pytest.approx(1)


def test_compare_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(90.2, 0.2, 80), rng.normal(90.0, 0.3, 120)
    c = compare(np.append(a, np.nan), b, "A", "B")  # a diverged run is left out
    assert (c.n_a, c.n_b) == (80, 120)
    assert c.diff == pytest.approx(a.mean() - b.mean())
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert (c.welch_t, c.welch_p) == pytest.approx((welch.statistic, welch.pvalue))
    mwu = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert (c.mwu_u, c.mwu_p) == pytest.approx((mwu.statistic, mwu.pvalue))
    assert c.p_a_beats_b == pytest.approx(mwu.statistic / (80 * 120))
    lo, hi = c.ci_low, c.ci_high
    se = np.sqrt(a.var(ddof=1) / 80 + b.var(ddof=1) / 120)
    assert lo < c.diff < hi and (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.12)


def test_difference_ci_covers_the_true_difference_at_the_nominal_rate():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(300):
        c = compare(rng.normal(90.1, 0.2, 60), rng.normal(90.0, 0.3, 60), n_boot=1000, rng=rng)
        hits += c.ci_low <= 0.1 <= c.ci_high
    assert 0.89 <= hits / 300 <= 0.985


def test_seeds_for_power_reach_80_percent_in_simulation():
    diff, sd_a, sd_b = 0.1, 0.2, 0.3
    n = int(seeds_for_power(diff, sd_a, sd_b))
    z = stats.norm.ppf
    normal_n = (z(0.975) + z(0.8)) ** 2 * (sd_a ** 2 + sd_b ** 2) / diff ** 2
    assert normal_n <= n <= normal_n + 3  # the t distribution asks a little more than the normal
    assert welch_power(n, diff, sd_a, sd_b) >= 0.8 > welch_power(n - 1, diff, sd_a, sd_b)
    rng = np.random.default_rng(3)
    a = rng.normal(diff, sd_a, (4000, n))
    b = rng.normal(0.0, sd_b, (4000, n))
    rejected = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.025)


def test_power_edge_cases():
    assert seeds_for_power(0.0, 0.2, 0.2) == np.inf
    assert seeds_for_power(1.0, 0.0, 0.0) == 2
    assert seeds_for_power(5.0, 0.1, 0.1) == 2  # huge effect: the minimum
    assert seeds_for_power(1e-9, 1.0, 1.0) == np.inf  # beyond 10^12 seeds


def test_one_run_per_arm_gives_a_difference_but_no_test():
    c = compare([90.0], [89.0, 89.5])
    assert c.diff == pytest.approx(0.75) and np.isnan(c.welch_p) and np.isnan(c.ci_low)
    assert c.p_a_beats_b == 1.0
