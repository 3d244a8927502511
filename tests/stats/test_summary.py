"""Summaries against numpy by hand; the CI of the mean against scipy and by its coverage of a known mean
(issue 20: ≥ 94 % at 5, 10, 20 and 50 seeds, where the percentile bootstrap covered 85–94 %)."""

import numpy as np
import pytest
from scipy import stats

from fastseed.stats.summary import T_UP_TO, bootstrap, curve_bands, mean_ci, percentile_ci, summarize


def test_summary_matches_numpy_by_hand():
    x = np.random.default_rng(1).normal(90.02, 0.23, 500)
    s = summarize(np.concatenate([x, [np.nan, np.nan]]))  # NaN = diverged, left out
    assert s.n == 500
    assert s.mean == pytest.approx(sum(x) / len(x), abs=1e-12)
    assert s.std == pytest.approx(np.sqrt(((x - x.mean()) ** 2).sum() / 499), rel=1e-12)
    xs = np.sort(x)
    assert (s.min, s.max) == (xs[0], xs[-1])
    assert s.median == pytest.approx((xs[249] + xs[250]) / 2)
    # linear interpolation between order statistics (numpy's default, Hyndman–Fan type 7)
    h = 0.05 * 499
    assert s.q05 == pytest.approx(xs[int(h)] + (h - int(h)) * (xs[int(h) + 1] - xs[int(h)]))
    assert s.ci_low < s.mean < s.ci_high


def test_bootstrap_resamples_with_replacement_like_scipy():
    x = np.random.default_rng(2).exponential(1.0, 200)
    ours = percentile_ci(bootstrap(x, np.mean, 20000, np.random.default_rng(3)))
    ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile",
                          random_state=np.random.default_rng(4)).confidence_interval
    width = ref.high - ref.low
    assert abs(ours[0] - ref.low) < 0.05 * width and abs(ours[1] - ref.high) < 0.05 * width


def test_bootstrap_blocks_do_not_change_the_draws_distribution():
    # many tiny blocks (2 resamples each) give the same distribution as one big block
    from fastseed.stats import summary
    x = np.arange(1000.0)
    big = bootstrap(x, np.mean, 4000, np.random.default_rng(5))
    old, summary.BLOCK = summary.BLOCK, 2000
    try:
        small = bootstrap(x, np.mean, 4000, np.random.default_rng(6))
    finally:
        summary.BLOCK = old
    assert stats.ks_2samp(big, small).pvalue > 0.001
    assert big.std() == pytest.approx(x.std() / np.sqrt(1000), rel=0.05)  # σ/√n


@pytest.mark.slow
@pytest.mark.parametrize("n", [5, 10, 20, 50])
def test_the_ci_of_the_mean_covers_at_least_94_percent_with_few_seeds(n):
    rng, studies = np.random.default_rng(n), 4000
    x = np.round(rng.normal(90.02, 0.23, (studies, n)), 2)      # 10,000 test images: a 0.01 pp grid, ties
    cis = [summarize(row, n_boot=200, rng=rng) for row in x]
    assert {s.ci_method for s in cis} == {"t"}
    covered = np.mean([s.ci_low <= 90.02 <= s.ci_high for s in cis])
    assert covered >= 0.94                                     # binomial sd 0.34 points at 95 %
    boot = np.mean([(lambda lo, hi: lo <= 90.02 <= hi)(*percentile_ci(bootstrap(row, np.mean, 500, rng)))
                    for row in x[:1000]])
    if n <= 20:                                                # what the t-interval replaced
        assert boot < covered - 0.01


def test_the_ci_is_students_t_up_to_fifty_seeds_and_the_bootstrap_above():
    x = np.random.default_rng(12).normal(90, 0.23, T_UP_TO + 1)
    lo, hi, method = mean_ci(x[:T_UP_TO])
    assert method == "t" and (lo, hi) == pytest.approx(stats.t.interval(0.95, T_UP_TO - 1, loc=x[:T_UP_TO].mean(),
                                                                        scale=stats.sem(x[:T_UP_TO])))
    assert mean_ci(x)[2] == "bootstrap" and summarize(x).ci_method == "bootstrap"
    assert mean_ci([90.0, 90.0, 90.0])[:2] == (90.0, 90.0)    # no spread: the mean, and no warning
    assert np.isnan(mean_ci([90.0])[0]) and summarize([90.0]).ci_method == ""


def test_bootstrap_ci_covers_the_true_mean_at_the_nominal_rate():
    rng = np.random.default_rng(7)
    hits, draws = 0, 400
    for _ in range(draws):
        s = summarize(rng.normal(90.0, 0.25, 100), n_boot=1000, rng=rng)
        hits += s.ci_low <= 90.0 <= s.ci_high
    # percentile bootstrap at n = 100: ~94 %; 400 draws give a binomial sd of ~1.2 points
    assert 0.90 <= hits / draws <= 0.98


def test_bootstrap_ci_agrees_with_the_t_interval_for_a_large_normal_sample():
    x = np.random.default_rng(8).normal(90, 0.23, 10_000)
    s = summarize(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert s.ci_low == pytest.approx(lo, abs=0.15 * (hi - lo))
    assert s.ci_high == pytest.approx(hi, abs=0.15 * (hi - lo))


def test_summary_is_deterministic():
    x = np.random.default_rng(9).normal(size=50)
    assert summarize(x) == summarize(x)


def test_one_run_has_no_spread_and_no_runs_nothing():
    one = summarize([91.5])
    assert one.n == 1 and one.mean == one.min == one.max == 91.5
    assert np.isnan(one.std) and np.isnan(one.ci_low) and np.isnan(one.ci_high)
    none = summarize([np.nan])
    assert none.n == 0 and np.isnan(none.mean)


def test_curve_bands_match_nan_aware_numpy():
    rng = np.random.default_rng(10)
    values = rng.normal(80, 2, (50, 6))
    values[3, 4:] = np.nan  # a run that stopped early
    values[:, 5] = np.nan   # an epoch nobody evaluated
    values[1:, 2] = np.nan  # an epoch only one run has
    b = curve_bands(np.arange(6), values)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        np.testing.assert_allclose(b.mean, np.nanmean(values, axis=0))
        np.testing.assert_allclose(b.std[[0, 1, 3, 4]], np.nanstd(values, axis=0, ddof=1)[[0, 1, 3, 4]])
        np.testing.assert_allclose(b.min, np.nanmin(values, axis=0))
        np.testing.assert_allclose(b.max, np.nanmax(values, axis=0))
    assert list(b.n) == [50, 50, 1, 50, 49, 0]
    assert np.isnan(b.std[2]) and np.isnan(b.std[5])  # one value: no std


def test_tied_values_are_resampled_by_their_counts_like_scipy():
    # accuracies on a 0.01 % grid: the mean's bootstrap draws counts per distinct value instead
    x = np.round(np.random.default_rng(7).normal(90, 0.25, 1000), 2)
    assert len(np.unique(x)) * 4 <= len(x)
    ours = bootstrap(x, np.mean, 10000, np.random.default_rng(8))
    ref = stats.bootstrap((x,), np.mean, n_resamples=10000, method="percentile",
                          random_state=np.random.default_rng(9))
    assert ours.mean() == pytest.approx(x.mean(), abs=1e-4)
    assert ours.std() == pytest.approx(ref.standard_error, rel=0.03)
    lo, hi = percentile_ci(ours)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert abs(lo - ref.confidence_interval.low) < 0.05 * width and abs(hi - ref.confidence_interval.high) < 0.05 * width
