"""Collapsed runs: the outlier tests against published critical values and their exact level, the false
flags a whole scan of normal runs makes, planted collapses found where they are (the first seed, two
among the first ten, ties, identical accuracies) by the sequential and the batch classification alike;
the collapse rate's confidence sequence against a numerical integration of its mixture and by its
coverage at every n; the mean's confidence sequence for normal runs with collapses by its coverage.

Monte Carlo slack as in test_confseq.py: rates are asserted under their nominal level itself, or within
3 standard errors of it where the test says so."""

import numpy as np
import pytest
from scipy import integrate, stats

from fastseed.stats.collapses import (FALSE_FLAGS, FIRST, MixtureCS, _far_below, _grubbs_critical,
                                      find_collapses, mixture_bounds, rate_interval)

ALPHA = 0.05
PICARD = (90.02, 0.23)


def sequential_flags(x, bounds=(0.0, 100.0)):
    """Which values MixtureCS took as collapses, fed one at a time (one study): its count after each."""
    cs, before, flags = MixtureCS(bounds), 0, np.zeros(len(x), dtype=bool)
    for i, v in enumerate(x):
        cs.add(v)
        if int(cs.count) > before:  # the first FIRST are screened together, when the tenth arrives
            flags[i] = True
            before = int(cs.count)
    return flags, int(cs.count)


@pytest.mark.parametrize("n, level, table", [(3, 0.05, 1.153), (10, 0.05, 2.176), (10, 0.025, 2.290),
                                             (10, 0.01, 2.410), (20, 0.05, 2.557), (20, 0.01, 2.884)])
def test_grubbs_critical_values_are_grubbs_1969_table_1(n, level, table):
    assert _grubbs_critical(n, level) == pytest.approx(table, abs=1.5e-3)


def test_the_prediction_interval_test_flags_a_normal_run_at_its_level():
    # exact: (x̄ − x)/(s·sqrt(1 + 1/n)) ~ t(n − 1) for a new normal run x and n before it
    rng, n, level = np.random.default_rng(0), 9, 0.01
    past, new = rng.normal(3.0, 2.0, (400_000, n)), rng.normal(3.0, 2.0, 400_000)
    q = ((past - past.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    rate = _far_below(new, n, past.mean(axis=1), q, level, 1e-12).mean()
    assert abs(rate - level) < 3 * np.sqrt(level * (1 - level) / len(new))


def test_a_study_of_normal_runs_rarely_flags_one_quick():
    cs = MixtureCS(shape=300)
    rng = np.random.default_rng(1)
    for _ in range(300):
        cs.add(np.clip(rng.normal(*PICARD, 300), 0, 100))
    assert (cs.count > 0).mean() <= 0.01  # FALSE_FLAGS is 1e-4: none expected in 300 studies


@pytest.mark.slow
@pytest.mark.parametrize("skew, most", [(0, FALSE_FLAGS), (-2, 0.005)])
def test_a_scan_of_normal_runs_rarely_flags_a_collapse(skew, most):
    """Normal runs: at most FALSE_FLAGS of the studies (the union bound), with 3 standard errors of Monte
    Carlo slack. Picard's histogram is mildly left-skewed (skew-normal, skewness −0.45): its tail runs
    exceed the normal's fences a little more often, measured at 0.3 % of studies over 1,000 seeds."""
    studies, seeds = 2000, 1000
    rng = np.random.default_rng(2)
    d = stats.skewnorm(skew)
    cs = MixtureCS(shape=studies)
    for _ in range(seeds):
        cs.add(PICARD[0] + (d.rvs(studies, random_state=rng) - d.mean()) / d.std() * PICARD[1])
    assert (cs.count > 0).mean() <= most + 3 * np.sqrt(most / studies)


def planted(rng, n=400, at=(), value=10.0, grid=False):
    x = rng.normal(*PICARD, n)
    x = np.round(x, 2) if grid else x                    # accuracies on 10,000 test images: 0.01 pp steps
    x[list(at)] = value
    return x


@pytest.mark.parametrize("case, at", [("the first seed", [0]), ("two of the first ten", [2, 7]),
                                      ("four of the first ten", [0, 1, 5, 9]), ("later ones", [10, 57, 399]),
                                      ("none", [])])
def test_planted_collapses_are_found_where_they_are(case, at):
    x = planted(np.random.default_rng(3), at=at, grid=True)
    x[[30, 31]] = [np.nan, PICARD[0] + 5]               # a diverged run, a run far above: neither is a collapse
    truth = np.zeros(len(x), dtype=bool)
    truth[at] = True
    flags, count = sequential_flags(x)
    assert count == len(at)
    assert (find_collapses(x) == truth).all()
    late = truth.copy()
    late[:FIRST] = False                                # the sequence sees the first ten at the tenth
    assert (flags[FIRST:] == late[FIRST:]).all()


def test_a_partial_collapse_far_below_is_one_and_the_bulk_tail_is_not():
    rng = np.random.default_rng(4)
    x = planted(rng, at=[100])
    x[200] = PICARD[0] - 30 * PICARD[1]                 # a partial collapse: 83 %, 30 sd below
    x[300] = PICARD[0] - 3.5 * PICARD[1]                # the tail of a normal: 1 in 4,300
    assert list(np.flatnonzero(find_collapses(x))) == [100, 200]


def test_identical_accuracies_flag_nothing_and_a_drop_below_them_is_a_collapse():
    x = np.full(50, 90.0)
    assert not find_collapses(x).any() and sequential_flags(x)[1] == 0
    x[40] = 89.0                                        # 1 pp below 39 identical runs: not one of them
    assert list(np.flatnonzero(find_collapses(x))) == [40]


def test_batch_and_sequential_classification_agree_on_many_studies():
    rng, studies, seeds = np.random.default_rng(5), 200, 300
    x = np.where(rng.random((studies, seeds)) < 0.03, rng.uniform(5, 30, (studies, seeds)),
                 rng.normal(*PICARD, (studies, seeds)))
    cs, counts = MixtureCS(shape=studies), np.zeros((studies, seeds), dtype=np.int64)
    for t in range(seeds):
        cs.add(x[:, t])
        counts[:, t] = cs.count
    batch = np.cumsum([find_collapses(row) for row in x], axis=1)
    assert (counts[:, FIRST - 1:] == batch[:, FIRST - 1:]).all() and batch[:, -1].sum() > 100


def mixture_martingale(p, k, n):
    """M_n(p) by numerical integration of its definition: the likelihood ratio of the indicators under q to
    that under p, averaged over q ~ Beta(½, ½)."""
    log_at_p = k * np.log(p) + (n - k) * np.log1p(-p)
    f = lambda q: stats.beta.pdf(q, 0.5, 0.5) * np.exp(k * np.log(q) + (n - k) * np.log1p(-q) - log_at_p)
    peak = k / n
    points = [peak] if 0 < peak < 1 else None
    return integrate.quad(f, 0, 1, points=points, limit=400, epsabs=0, epsrel=1e-10)[0]


@pytest.mark.parametrize("k, n", [(0, 45), (1, 45), (5, 250), (44, 45), (45, 45), (30, 3000)])
def test_rate_interval_ends_are_where_the_mixture_martingale_crosses_one_over_alpha(k, n):
    lower, upper = (float(v) for v in rate_interval(k, n, ALPHA))
    for end, is_bound in ((lower, k > 0), (upper, k < n)):
        if is_bound:
            assert mixture_martingale(end, k, n) == pytest.approx(1 / ALPHA, rel=1e-6)
        else:
            assert end == (0.0 if end == lower else 1.0)
    assert lower <= k / n <= upper


def test_rate_interval_covers_the_true_rate_at_every_n():
    rng, studies, steps = np.random.default_rng(6), 2000, 2000
    for p in (0.005, 0.05):
        k = np.cumsum(rng.random((studies, steps)) < p, axis=1)
        miss = np.zeros(studies, dtype=bool)
        for n in range(1, steps + 1, 7):                # a look every 7 runs: 286 looks a study
            lower, upper = rate_interval(k[:, n - 1], n, ALPHA)
            miss |= (lower > p) | (upper < p)
        assert miss.mean() <= ALPHA


def test_mixture_bounds_are_the_extremes_of_the_mean_over_the_box():
    rng = np.random.default_rng(7)
    for _ in range(50):
        h, c = np.sort(rng.uniform(50, 100, 2)), np.sort(rng.uniform(0, 60, 2))
        p = np.sort(rng.uniform(0, 0.3, 2))
        grid = [(1 - pp) * hh + pp * cc for hh in np.linspace(*h, 21) for pp in np.linspace(*p, 21)
                for cc in np.linspace(*c, 21)]
        lower, upper = mixture_bounds(h, p, c)
        assert lower == pytest.approx(min(grid)) and upper == pytest.approx(max(grid))


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.0, 0.005, 0.02, 0.1])
def test_mixture_cs_covers_the_mean_of_normal_runs_with_collapses(rate):
    rng, studies, seeds = np.random.default_rng(8), 1000, 500
    x = np.where(rng.random((studies, seeds)) < rate, rng.uniform(5, 15, (studies, seeds)),
                 rng.normal(90.0, 0.25, (studies, seeds)))
    mean = (1 - rate) * 90.0 + rate * 10.0
    cs, miss = MixtureCS(shape=studies), np.zeros(studies, dtype=bool)
    for t in range(seeds):
        cs.add(x[:, t])
        miss |= (cs.lower > mean) | (cs.upper < mean)
    assert miss.mean() <= ALPHA
    assert np.median(cs.upper - cs.lower) < 10            # and it narrows
