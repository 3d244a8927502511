"""Jordan 2024's split of the seed-to-seed variance, on correctness matrices simulated from known
per-image probabilities and a known distribution-wise variance."""

import numpy as np
import pytest
from scipy import integrate, special, stats

from fastseed.stats.examples import count_examples
from fastseed.stats.summary import percentile_ci
from fastseed.stats.testset import split_variance

A, B = 6.0, 1.0        # per-image probability of a right answer, p ~ Beta(A, B): mean 0.857
N_CLASSES = 10


def simulate(rng, n_runs: int, n_images: int, skill: float) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels): a fresh test set (p_i ~ Beta) and runs with a skill offset z ~ N(0,
    skill²) on the logit scale; run r gets image i right with probability σ(logit p_i + z_r),
    independently given z_r. Wrong answers are a random other class."""
    p = rng.beta(A, B, n_images)
    z = rng.normal(0, skill, n_runs)
    right = rng.random((n_runs, n_images)) < special.expit(special.logit(p)[None, :] + z[:, None])
    labels = rng.integers(0, N_CLASSES, n_images).astype(np.uint8)
    wrong = (labels[None, :] + rng.integers(1, N_CLASSES, (n_runs, n_images))) % N_CLASSES
    return np.where(right, labels[None, :], wrong).astype(np.uint8), labels


def distribution_accuracy(z: float) -> float:
    """Accuracy of a run of skill z on the whole distribution: E_p[σ(logit p + z)], p ~ Beta."""
    f = lambda p: special.expit(special.logit(p) + z) * stats.beta.pdf(p, A, B)
    return integrate.quad(f, 0, 1, limit=200)[0]


def true_distribution_variance(skill: float) -> float:
    """Var_z of the distribution-wise accuracy (pp²), by Gauss–Hermite quadrature over z."""
    if skill == 0:
        return 0.0
    x, w = np.polynomial.hermite_e.hermegauss(40)
    acc = np.array([distribution_accuracy(skill * xi) for xi in x])
    w = w / w.sum()
    return 1e4 * float(w @ acc ** 2 - (w @ acc) ** 2)


def test_estimate_is_the_mean_off_diagonal_covariance():
    """Eq. 3 with unbiased sample variances equals the mean covariance of two distinct images'
    correctness across runs (np.cov), and its parts are the sample variance of accuracy and the
    trace of that covariance matrix."""
    rng = np.random.default_rng(0)
    preds, labels = simulate(rng, 40, 300, skill=0.5)
    t = split_variance(count_examples(preds, labels), n_boot=0)
    right = (preds == labels).astype(float)
    cov = np.cov(right, rowvar=False)
    n = len(labels)
    assert t.observed == pytest.approx(1e4 * np.var(right.mean(axis=1), ddof=1), rel=1e-9)
    assert t.noise == pytest.approx(1e4 * np.trace(cov) / n ** 2, rel=1e-9)
    assert t.distribution == pytest.approx(1e4 * (cov.sum() - np.trace(cov)) / (n * (n - 1)), rel=1e-9)
    assert (t.runs, t.images) == (40, 300) and np.isnan(t.low)


@pytest.mark.parametrize("skill", [0.0, 0.25])
def test_estimate_is_unbiased_for_the_distribution_variance(skill):
    """Averaged over fresh test sets and fresh runs, the estimate hits the true distribution-wise
    variance, while the observed variance overshoots it by the test-set noise."""
    truth = true_distribution_variance(skill)
    rng = np.random.default_rng(1)
    reps = [split_variance(count_examples(*simulate(rng, 40, 500, skill)), n_boot=0) for _ in range(200)]
    est = np.array([t.distribution for t in reps])
    se = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(est.mean() - truth) < 4 * se
    observed = np.array([t.observed for t in reps])
    noise = np.array([t.noise for t in reps])
    # the test set's share: E[p(1 − p)] / n for p ~ Beta, plus a little from the skill's spread
    binomial = 1e4 * (stats.beta.mean(A, B) - stats.beta.moment(2, A, B)) / 500
    if skill == 0:
        assert noise.mean() == pytest.approx(binomial, rel=0.02)
        assert observed.mean() == pytest.approx(binomial, rel=0.05)
    else:
        assert truth > 0.5 * binomial                     # a case where the seeds really differ
        assert observed.mean() > truth + 0.8 * binomial   # the naive variance overestimates it


def test_bootstrap_with_one_run_per_block_resamples_runs():
    """With at most 200 runs each block is one run: the interval equals a plain bootstrap that
    recomputes the estimate from resampled rows of the correctness matrix."""
    rng = np.random.default_rng(2)
    preds, labels = simulate(rng, 30, 200, skill=0.4)
    t = split_variance(count_examples(preds, labels), n_boot=300, rng=np.random.default_rng(5))
    right = (preds == labels).astype(float)
    idx = np.random.default_rng(5).integers(0, 30, size=(300, 30))  # bootstrap()'s draws, one block

    def estimate(m):
        cov = np.cov(m, rowvar=False)
        return 1e4 * (cov.sum() - np.trace(cov)) / (200 * 199)
    low, high = percentile_ci([estimate(right[i]) for i in idx])
    assert (t.low, t.high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert t.low < t.distribution < t.high


def test_blocks_of_runs_give_the_interval_of_single_runs():
    """Beyond 200 runs, resampling 200 blocks of runs gives an interval as wide as resampling runs."""
    rng = np.random.default_rng(3)
    preds, labels = simulate(rng, 1000, 300, skill=0.3)
    counts = count_examples(preds, labels)
    assert len(counts.block_runs) == 200 and counts.block_runs.sum() == 1000
    blocks = split_variance(counts, n_boot=1000, rng=np.random.default_rng(6))
    runs = split_variance(count_examples(preds, labels, blocks=1000), n_boot=1000,
                          rng=np.random.default_rng(6))
    assert blocks.distribution == pytest.approx(runs.distribution, rel=1e-9)
    assert blocks.high - blocks.low == pytest.approx(runs.high - runs.low, rel=0.15)
    assert blocks.low < blocks.distribution < blocks.high


def test_too_few_runs_give_no_interval():
    rng = np.random.default_rng(4)
    preds, labels = simulate(rng, 2, 100, skill=0.0)
    t = split_variance(count_examples(preds, labels))
    assert np.isfinite(t.distribution) and np.isnan(t.low) and np.isnan(t.high)
    assert t.noise_share == pytest.approx(t.noise / t.observed)
