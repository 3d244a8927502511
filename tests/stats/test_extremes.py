"""Black swans: a planted outlier is found; the chance that the most extreme of N seeds is that extreme
(issue 20: below 0.05 in 5 % of studies of normal seeds, at 10^4 seeds as at 10) against Monte Carlo;
expected best/worst of n against brute force, Monte Carlo and known order-statistic values; Dodge et
al.'s estimator against draws with replacement, and its bias where the truth is known."""

import itertools

import numpy as np
import pytest
from scipy import integrate, stats

from fastseed.stats.extremes import (best_of_n, decades, dodge_expected_best, dodge_weights,
                                     estimator_bias, expected_best, expected_worst, extremes, max_weights,
                                     n_grid, normal_expected_max, tail_of_n)


def test_planted_outlier_is_the_black_swan():
    rng = np.random.default_rng(0)
    acc = rng.normal(90.0, 0.2, 2000)
    acc[1234] = 87.0                                    # a black swan, 15 sd below
    acc[77] = np.nan                                    # diverged: never ranked
    seeds = np.arange(5000, 7000)
    t = extremes(seeds, acc, k=3)
    worst = t[t.side == "worst"].iloc[0]
    assert worst.seed == 6234 and worst.acc == 87.0
    finite = acc[np.isfinite(acc)]
    assert worst.z == pytest.approx((87.0 - finite.mean()) / finite.std(ddof=1))
    assert worst.normal_tail == pytest.approx(stats.norm.cdf(worst.z))
    assert worst.tail_of_n < 1e-20 < t[t.side == "best"].iloc[0].tail_of_n  # the swan is one, the best is not
    best = t[t.side == "best"]
    np.testing.assert_array_equal(best.acc, np.sort(finite)[::-1][:3])
    assert 5077 not in set(t.seed)


def studentized(x):
    """(z of the best, z of the worst) of each row, in the rows' own mean and sample std."""
    mean, std = x.mean(axis=1), x.std(axis=1, ddof=1)
    return (x.max(axis=1) - mean) / std, (x.min(axis=1) - mean) / std


@pytest.mark.slow
def test_the_best_of_ten_thousand_normal_seeds_is_called_rare_in_five_percent_of_studies():
    rng = np.random.default_rng(11)
    best, worst = np.concatenate([studentized(np.round(rng.normal(90.02, 0.23, (100, 10_000)), 2))
                                  for _ in range(10)], axis=1)   # 1,000 studies, on a 0.01 pp grid (ties)
    assert 0.02 <= (tail_of_n(best, 10_000) < 0.05).mean() <= 0.08
    assert 0.02 <= (tail_of_n(worst, 10_000) < 0.05).mean() <= 0.08
    # the plain one-seed tail of the same z: always "rare" (the median 7e-5)
    assert np.median(stats.norm.sf(best)) < 2e-4 and 0.3 < np.median(tail_of_n(best, 10_000)) < 0.7


@pytest.mark.parametrize("n", [5, 10, 19, 50])
def test_the_most_extreme_of_a_few_seeds_is_called_rare_in_five_percent_of_studies(n):
    best, worst = studentized(np.random.default_rng(n).normal(0, 1, (20_000, n)))
    for z in (best, worst):  # binomial sd of the rate: 0.0015
        assert abs((tail_of_n(z, n) < 0.05).mean() - 0.05) < 0.006
        assert abs((tail_of_n(z, n) < 0.01).mean() - 0.01) < 0.003


def test_tail_of_n_against_monte_carlo_and_its_limits():
    x = np.random.default_rng(12).normal(0, 1, (200_000, 8))
    best = studentized(x)[0]
    for z, rel in ((2.0, 0.05), (2.2, 0.05), (2.3, 0.1)):  # P(the best of 8 is ≥ z sd out): Monte Carlo
        assert tail_of_n(z, 8) == pytest.approx((best >= z).mean(), rel=rel)  # (Šidák: exact in the tail)
    assert tail_of_n(7 / np.sqrt(8), 8) == 0               # the largest z 8 seeds allow: (n − 1)/√n
    assert tail_of_n(0.0, 8) == pytest.approx(1 - 0.5 ** 8) and np.isnan(tail_of_n(1.0, 2))  # a coin a seed
    assert tail_of_n(3.0, 1000, rank=2) < tail_of_n(3.0, 1000, rank=1)


def test_max_weights_are_a_distribution_over_ranks():
    w = max_weights(1000, [1, 2, 10, 999, 1000])
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-9)
    np.testing.assert_allclose(w[0], 1 / 1000)                    # one seed: any rank
    assert w[-1, -1] == pytest.approx(1) and w[-1, :-1].max() < 1e-12  # all seeds: the max


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8])
def test_expected_best_and_worst_match_all_subsets(n):
    x = np.random.default_rng(n).normal(size=8)
    subsets = list(itertools.combinations(x, n))
    assert expected_best(x, [n])[0] == pytest.approx(np.mean([max(s) for s in subsets]), abs=1e-12)
    assert expected_worst(x, [n])[0] == pytest.approx(np.mean([min(s) for s in subsets]), abs=1e-12)


def test_expected_best_matches_monte_carlo_subsets_of_many_runs():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 1.0, 3000)  # skewed: the normal theory would be wrong here, the runs are not
    for n in (10, 300):
        draws = np.array([x[rng.choice(len(x), n, replace=False)].max() for _ in range(4000)])
        assert expected_best(x, [n])[0] == pytest.approx(draws.mean(), abs=4 * draws.std() / np.sqrt(4000))


def test_normal_expected_max_matches_known_values_and_quadrature():
    # E[max of 2] = 1/sqrt(pi), of 3 = 3/(2 sqrt(pi)); tabulated: 5, 10, 100 → 1.16296, 1.53875, 2.50759
    got = normal_expected_max([1, 2, 3, 5, 10, 100])
    exact = [0, 1 / np.sqrt(np.pi), 1.5 / np.sqrt(np.pi), 1.16296, 1.53875, 2.50759]
    np.testing.assert_allclose(got, exact, atol=2e-5)
    n = 10_000
    ref = integrate.quad(lambda t: t * n * stats.norm.pdf(t) * stats.norm.cdf(t) ** (n - 1), 0, 10,
                         points=[3.5, 4])[0] + integrate.quad(
        lambda t: t * n * stats.norm.pdf(t) * stats.norm.cdf(t) ** (n - 1), -10, 0)[0]
    assert normal_expected_max([n])[0] == pytest.approx(ref, rel=1e-6)


def test_best_of_n_on_a_normal_sample_follows_normal_theory():
    x = np.random.default_rng(2).normal(90.0, 0.23, 10_000)
    t = best_of_n(x, [1, 10, 100, 1000]).set_index("n")
    assert t.at[1, "gain"] == pytest.approx(0, abs=1e-9) and t.at[1, "spread"] == pytest.approx(0, abs=1e-9)
    # the runs and the theory agree to a few hundredths of a point while n << N
    np.testing.assert_allclose(t["best"], t["normal_best"], atol=0.03)
    np.testing.assert_allclose(t["spread"], t["normal_spread"], atol=0.06)
    assert t.at[100, "normal_gain"] == pytest.approx(0.23 * 2.50759, rel=0.03)
    assert (np.diff(t["best"]) > 0).all() and (np.diff(t["worst"]) < 0).all()


def test_n_grid_and_decades_span_one_to_N():
    g = n_grid(10_000)
    assert g[0] == 1 and g[-1] == 10_000 and (np.diff(g) > 0).all() and len(g) <= 200
    assert decades(10_000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000]
    assert decades(3) == [1, 2, 3] and decades(1) == [1]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_dodge_estimate_is_the_best_of_n_drawn_with_replacement(n):
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0])  # a tie: the empirical CDF jumps by 2/5 at 2
    draws = list(itertools.product(x, repeat=n))  # every ordered draw with replacement, equally likely
    assert dodge_expected_best(x, [n])[0] == pytest.approx(np.mean([max(d) for d in draws]), abs=1e-12)
    np.testing.assert_allclose(dodge_weights(5, [n]).sum(), 1)


def test_dodge_is_biased_low_and_the_subset_estimator_is_not():
    # Tang et al. 2020: on samples whose true E[max of n] is known (standard normals), the
    # with-replacement estimate falls short by more and more as n nears the number of runs
    b = estimator_bias(20, [1, 5, 10, 20], replications=3000, rng=np.random.default_rng(3)).set_index("n")
    np.testing.assert_allclose(b["true"], normal_expected_max([1, 5, 10, 20]))
    assert (b["unbiased_bias"].abs() < 4 * b["unbiased_se"]).all()
    assert (b.loc[[5, 10, 20], "dodge_bias"] < -6 * b.loc[[5, 10, 20], "dodge_se"]).all()
    assert b.at[20, "dodge_bias"] < b.at[10, "dodge_bias"] < b.at[5, "dodge_bias"] < 0
    x = np.random.default_rng(4).normal(size=30)
    assert dodge_expected_best(x, [30])[0] < x.max() == pytest.approx(expected_best(x, [30])[0])
    t = best_of_n(x, [1, 30]).set_index("n")
    assert t.at[1, "dodge_best"] == pytest.approx(x.mean()) and t.at[30, "dodge_best"] < t.at[30, "best"]
