"""Stopping rules that look after every seed: the confidence sequence against an independent computation
of its supermartingale; time-uniform coverage over 500 simulated studies from distributions with known
means (and a repeated t-interval failing the same check); the decisions of UntilWidth and Versus; replay
after a restart; bad input.

Monte Carlo slack: a rate measured over N studies is allowed 3 standard errors above its nominal α
(sqrt(α(1 − α)/N) = 0.0097 at α = 0.05, N = 500), so a correct method fails ~1 run in 700."""

import numpy as np
import pytest
from scipy import optimize, stats

from fastseed import FastseedError
from fastseed.stats.sequential import (CAP, PRIOR_SPREAD, ConfidenceSequence, UntilWidth, Versus,
                                       describe_rule, simulate_until_width, simulate_versus)

ALPHA, STUDIES = 0.05, 500
SLACK = ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / STUDIES)
PICARD = (90.02, 0.23)  # Picard 2021, CIFAR-10 short runs: mean ± std of 10^4 seeds' accuracy (percent)


def psi(lam):
    return -np.log1p(-lam) - lam


def reference_terms(x, lo, hi):
    """The lower bound's bets from their definitions, recomputed from scratch for every seed (no running
    sums): per seed i, the scale s_i, clipped value y_i, ξ_i and bet λ_i from the seeds before i.
    x: (..., seeds), studies along the leading axes."""
    x = np.asarray(x, float)
    span, level = hi - lo, np.log(2 / ALPHA)
    s, y, xi, lam = np.ones(x.shape), np.zeros(x.shape), np.zeros(x.shape), np.zeros(x.shape)
    for i in range(1, x.shape[-1]):       # seed 0 is not bet on: it only places the centre
        past = x[..., :i]
        centre = past.mean(axis=-1)
        var = ((PRIOR_SPREAD * span) ** 2
               + sum((past[..., j] - past[..., :j + 1].mean(axis=-1)) ** 2 for j in range(i))) / (i + 1)
        s[..., i] = np.maximum(centre - lo, 1e-3 * span)
        y[..., i] = np.minimum(x[..., i], centre + s[..., i])
        xi[..., i] = (y[..., i] - centre) / s[..., i]
        lam[..., i] = np.minimum(CAP, np.sqrt(2 * level / (var / s[..., i] ** 2 * (i + 1) * np.log(i + 2))))
    return s, y, xi, lam


def reference_lower(x, lo, hi):
    """Running max of the roots of log M_t(m) = log(2/α), M_t(m) = Π exp(λ(y − m)/s − ψ(λ)ξ²) — found by
    root finding on the product, not by the module's closed form."""
    s, y, xi, lam = reference_terms(x, lo, hi)
    out, best = [], lo
    for t in range(1, len(x) + 1):
        def log_capital(m, t=t):
            return np.sum(lam[:t] * (y[:t] - m) / s[:t] - psi(lam[:t]) * xi[:t] ** 2) - np.log(2 / ALPHA)
        if lam[:t].any():
            best = max(best, optimize.brentq(log_capital, lo - 1e6, hi + 1e6, xtol=1e-12))
        out.append(best)
    return np.array(out)


def picard(rng, shape):
    return np.clip(rng.normal(*PICARD, shape), 0, 100)


def ever_misses(lower, upper, mean):
    """Per study: did the interval exclude the true mean after any seed? (lower, upper: studies × seeds)"""
    return ((lower > mean) | (upper < mean)).any(axis=1)


def run_cs(x, bounds=(0.0, 100.0)):
    """Feed studies × seeds values into one vectorised ConfidenceSequence; its bounds after every seed."""
    cs = ConfidenceSequence(bounds, ALPHA, shape=x.shape[0])
    lower, upper = np.empty(x.shape), np.empty(x.shape)
    for t in range(x.shape[1]):
        cs.add(x[:, t])
        lower[:, t], upper[:, t] = cs.lower, cs.upper
    return lower, upper


def test_fan_inequality_holds_where_the_proof_uses_it():
    # Fan, Grama & Liu 2015, Lemma 4.1: exp(λξ − ψ(λ)ξ²) ≤ 1 + λξ for ξ ≥ −1, 0 ≤ λ < 1
    xi, lam = np.meshgrid(np.linspace(-1, 1, 401), np.linspace(0, CAP, 91))
    assert (np.exp(lam * xi - psi(lam) * xi ** 2) <= 1 + lam * xi + 1e-12).all()


@pytest.mark.parametrize("bounds, draw", [
    ((0.0, 100.0), lambda rng: picard(rng, 60)),
    ((0.0, 100.0), lambda rng: np.where(rng.random(60) < 0.1, 10.0, rng.normal(90, 1, 60))),
    ((0.0, 1.0), lambda rng: rng.beta(2, 5, 60)),
])
def test_bounds_are_where_the_supermartingale_crosses_the_level(bounds, draw):
    x = draw(np.random.default_rng(3))
    lo, hi = bounds
    cs = ConfidenceSequence(bounds, ALPHA)
    got_lower, got_upper = [], []
    for v in x:
        cs.add(v)
        got_lower.append(float(cs.lower))
        got_upper.append(float(cs.upper))
    np.testing.assert_allclose(got_lower, reference_lower(x, lo, hi), atol=1e-9)
    np.testing.assert_allclose(got_upper, -reference_lower(-x, -hi, -lo), atol=1e-9)  # the upper: on −X


def test_supermartingale_at_the_true_mean_has_expectation_at_most_one():
    # the proof's claim, by Monte Carlo, on a black-swan distribution (clipping and scales at work):
    # 2 % of runs collapse to 10 %, the rest sit at 90 ± 0.5
    rng, n, t = np.random.default_rng(4), 20_000, 25
    x = np.where(rng.random((n, t)) < 0.02, 10.0, rng.normal(90, 0.5, (n, t)))
    mean = 0.02 * 10 + 0.98 * 90
    for sign, lo in ((1, 0.0), (-1, -100.0)):       # the lower bound's process, then the upper's on −X
        s, y, xi, lam = reference_terms(sign * x, lo, lo + 100)
        m = np.exp(np.sum(lam * (y - sign * mean) / s - psi(lam) * xi ** 2, axis=1))
        assert m.mean() <= 1 + 3 * m.std() / np.sqrt(n)
        assert (m >= 2 / ALPHA).mean() <= ALPHA / 2  # Ville at one time, for what it is worth


DISTRIBUTIONS = {  # name: (bounds, true mean, draw(rng, shape))
    "picard normal": ((0.0, 100.0), PICARD[0], picard),
    "skewed beta": ((0.0, 100.0), 100 * 2 / 7, lambda rng, shape: 100 * rng.beta(2, 5, shape)),
    "black swan two-point": ((0.0, 100.0), 0.98 * 90 + 0.02 * 10,
                             lambda rng, shape: np.where(rng.random(shape) < 0.02, 10.0, 90.0)),
    "fractions, two-point": ((0.0, 1.0), 0.7, lambda rng, shape: (rng.random(shape) < 0.7).astype(float)),
}


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_interval_ever_excludes_the_true_mean_in_at_most_five_percent_of_studies(name):
    bounds, mean, draw = DISTRIBUTIONS[name]
    x = draw(np.random.default_rng(5), (STUDIES, 1500))
    lower, upper = run_cs(x, bounds)
    assert ever_misses(lower, upper, mean).mean() <= SLACK
    assert np.median(upper[:, -1] - lower[:, -1]) < 0.5 * (bounds[1] - bounds[0])  # and it does narrow


def test_repeated_t_interval_fails_the_same_check():
    x = picard(np.random.default_rng(5), (STUDIES, 1500))
    n = np.arange(1, x.shape[1] + 1)
    mean = np.cumsum(x, axis=1) / n
    var = (np.cumsum(x ** 2, axis=1) - n * mean ** 2) / np.maximum(n - 1, 1)
    half = stats.t.ppf(1 - ALPHA / 2, np.maximum(n - 1, 1)) * np.sqrt(np.maximum(var, 0) / n)
    lower, upper = (mean - half)[:, 1:], (mean + half)[:, 1:]   # from 2 seeds on
    assert ever_misses(lower, upper, PICARD[0]).mean() > 3 * SLACK


def test_until_width_stops_at_the_width_asked_near_the_information_floor():
    width = 0.2
    rule = simulate_until_width(picard(np.random.default_rng(6), (200, 1600)), width)
    cs = rule.cs
    assert rule.stopped.all() and (cs.half_width <= width).all()
    # no valid CS brings its lower end within d of a mean μ (on [0, 100]) before n ≈ log(1/(2α))·μ/d
    # seeds in the median study (module docstring): the rule must not beat that floor, nor lag far behind
    floor = np.median(cs.n * (cs.mean - cs.lower) / cs.mean) / np.log(1 / (2 * ALPHA))
    assert 1 <= floor <= 2.5


def test_until_width_decision_says_why_it_stopped():
    rule = UntilWidth(0.5, min_seeds=10)
    rng = np.random.default_rng(7)
    decision, n = None, 0
    while decision is None:
        decision = rule.update(picard(rng, ()))
        n += 1
    assert decision.verdict == "width" and decision.seeds == (n,)
    assert decision.lower <= PICARD[0] <= decision.upper
    assert (decision.upper - decision.lower) / 2 <= 0.5
    assert decision.reason.startswith("the 95 % confidence sequence of the mean is ±0.")
    assert f"after {n:,} seeds (≤ ±0.5 pp)" in decision.reason
    assert rule.update(np.nan) is not None and rule.cs.diverged == 1  # stays stopped; the NaN is counted


def test_min_seeds_holds_a_wide_rule_back():
    rule = UntilWidth(60.0, min_seeds=25)  # ±60 points: met by the first bet seeds
    decisions = [rule.update(90.0 + 0.1 * (k % 3)) for k in range(30)]
    assert decisions.index(next(d for d in decisions if d)) == 24


def test_restart_replaying_the_stored_seeds_reaches_the_same_decision():
    x = picard(np.random.default_rng(8), 900)
    x[[17, 400]] = np.nan                                # two diverged runs
    whole = UntilWidth(0.3)
    first = [whole.update(v) for v in x]
    before = UntilWidth(0.3)
    for v in x[:500]:
        before.update(v)
    after = UntilWidth(0.3)                              # a fresh process replays the store, then goes on
    for v in x[:500]:
        after.update(v)
    rest = [after.update(v) for v in x[500:]]
    assert rest == first[500:]
    assert (float(after.cs.lower), float(after.cs.upper)) == (float(whole.cs.lower), float(whole.cs.upper))


def test_many_studies_at_once_equal_one_study_at_a_time():
    rng = np.random.default_rng(9)
    x = np.where(rng.random((4, 300)) < 0.05, np.nan, picard(rng, (4, 300)))
    where = rng.random((4, 300)) < 0.7                  # studies take their seeds at different times
    many = ConfidenceSequence(shape=4)
    for t in range(300):
        many.add(x[:, t], where=where[:, t])
    for k in range(4):
        one = ConfidenceSequence()
        for v in x[k][where[k]]:
            one.add(v)
        assert (one.n, one.diverged) == (many.n[k], many.diverged[k])
        assert (float(one.lower), float(one.upper)) == (many.lower[k], many.upper[k])


def test_diverged_runs_are_counted_and_left_out():
    x = picard(np.random.default_rng(10), 200)
    with_nan, without = ConfidenceSequence(), ConfidenceSequence()
    for k, v in enumerate(x):
        if k % 50 == 7:
            with_nan.add(np.nan)
        with_nan.add(v)
        without.add(v)
    assert (with_nan.n, with_nan.diverged) == (200, 4)
    assert float(with_nan.lower) == float(without.lower) and float(with_nan.mean) == float(without.mean)


def test_versus_equal_means_rarely_called_better_or_worse_and_within_a_wide_margin():
    rng = np.random.default_rng(11)
    rule = simulate_versus(picard(rng, (STUDIES, 2000)), picard(rng, (STUDIES, 2000)), margin=0.5)
    verdict = rule.verdict
    assert np.isin(verdict, ["better", "worse"]).mean() <= SLACK
    assert (verdict == "within").mean() >= 0.9


def test_versus_equal_means_of_different_shapes_rarely_called_better_or_worse():
    # A: normal; B: a black-swan two-point with the same mean. Seeds unpaired, margin 0: never "within"
    rng, mean = np.random.default_rng(12), 0.98 * 90 + 0.02 * 10
    xa = rng.normal(mean, 0.23, (STUDIES, 800))
    xb = np.where(rng.random((STUDIES, 800)) < 0.02, 10.0, 90.0)
    verdict = simulate_versus(xa, xb, margin=0.0).verdict
    assert np.isin(verdict, ["better", "worse", "within"]).mean() <= SLACK


def test_versus_real_difference_is_called_better():
    rng = np.random.default_rng(13)
    xa = np.clip(rng.normal(PICARD[0] + 0.3, PICARD[1], (STUDIES, 2500)), 0, 100)
    rule = simulate_versus(xa, picard(rng, (STUDIES, 2500)), margin=0.1)
    assert (rule.verdict == "worse").mean() <= SLACK
    assert (rule.verdict == "better").mean() >= 0.9


def test_simulated_versus_plays_each_study_as_a_scan_would():
    rng = np.random.default_rng(15)
    xa = np.where(rng.random((3, 400)) < 0.05, np.nan, rng.normal(91.0, 0.3, (3, 400)))
    xb = np.where(rng.random((3, 300)) < 0.05, np.nan, picard(rng, (3, 300)))
    many = simulate_versus(xa, xb, margin=0.2)
    for k in range(3):
        one, next_a, next_b = Versus(0.2), iter(xa[k]), iter(xb[k])
        decision = None
        while decision is None:
            side = one.needs()
            value = next(next_a if side == "A" else next_b, None)
            if value is None:                            # that side is used up: train the other
                side = "B" if side == "A" else "A"
                value = next(next_a if side == "A" else next_b, None)
            if value is None:
                break
            decision = one.update(side, value)
        assert one.verdict == many.verdict[k]
        assert (one.a.n, one.a.diverged, one.b.n, one.b.diverged) == \
            (many.a.n[k], many.a.diverged[k], many.b.n[k], many.b.diverged[k])


def test_versus_trains_the_wider_side_and_reads_a_finished_store():
    rng = np.random.default_rng(14)
    rule = Versus(0.2, labels=("fast94", "airbench94"))
    for v in picard(rng, 3000):                          # B: another store, already complete
        rule.add("B", v)
    assert rule.needs() == "A"
    decision, n_a = None, 0
    while decision is None:
        assert rule.needs() == "A"                       # B is far narrower: A trains alone
        decision = rule.update("A", np.clip(rng.normal(PICARD[0] + 1.0, PICARD[1]), 0, 100))
        n_a += 1
    assert decision.verdict == "better" and decision.seeds == (n_a, 3000)
    assert decision.lower > 0 and decision.estimate == pytest.approx(1.0, abs=0.1)
    assert decision.reason.startswith("fast94 is better than airbench94: the whole interval is above 0;")
    assert f"after {n_a:,} + 3,000 seeds" in decision.reason
    even = Versus(0.2)
    assert [even.needs() for _ in range(1)] == ["A"]
    even.add("A", 90.0)
    assert even.needs() == "B"                           # equal widths: the side with fewer seeds


def test_describe_rule_states_the_rule_and_the_method():
    text = describe_rule(UntilWidth(0.05, min_seeds=20))
    assert "at most ±0.05 pp" in text and "at least 20 seeds" in text and "after every seed" in text
    assert "Waudby-Smith & Ramdas" in text and "Theorem 2" in text and "no normality" in text
    text = describe_rule(Versus(0.1, alpha=0.1, labels=("lr=0.3", "picard-short")))
    assert "90 % confidence sequence of mean(lr=0.3) − mean(picard-short)" in text
    assert "inside ±0.1 pp" in text and "95 % (a union bound, seeds not paired)" in text


@pytest.mark.parametrize("make", [
    lambda: UntilWidth(0.0), lambda: UntilWidth(np.nan), lambda: UntilWidth(0.1, alpha=1.0),
    lambda: UntilWidth(0.1, min_seeds=1), lambda: UntilWidth(0.1, min_seeds=2.5),
    lambda: UntilWidth("wide"), lambda: UntilWidth(0.1, bounds=(100, 0)),
    lambda: UntilWidth(0.1, bounds="0-100"), lambda: Versus(-0.1), lambda: Versus(0.1, alpha=0),
])
def test_bad_settings_are_one_clear_error(make):
    with pytest.raises(FastseedError):
        make()


def test_accuracy_outside_the_bounds_is_one_clear_error():
    rule = UntilWidth(0.1, bounds=(0.0, 1.0))
    rule.update(0.9)
    with pytest.raises(FastseedError, match=r"accuracy 90 is outside the bounds \[0, 1\].*percent and fract"):
        rule.update(90.0)
    with pytest.raises(FastseedError, match="outside"):
        rule.update(np.inf)
