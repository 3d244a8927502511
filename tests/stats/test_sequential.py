"""Stopping rules that look after every seed, with either confidence sequence: where UntilWidth stops
and what it says; Versus's verdicts over 500 simulated studies (false better/worse ≤ 5 %, a real
difference called), the side it trains next; replay after a restart; the report's text; bad input.

Monte Carlo slack: a rate measured over N studies is allowed 3 standard errors above its nominal α
(sqrt(α(1 − α)/N) = 0.0097 at α = 0.05, N = 500), so a correct method fails ~1 run in 700."""

import numpy as np
import pytest
from scipy import stats

from fastseed import FastseedError
from fastseed.stats.sequential import (UntilWidth, Versus, describe_rule, simulate_until_width,
                                       simulate_versus)

ALPHA, STUDIES = 0.05, 500
SLACK = ALPHA  # "stays under the nominal 5 %", asserted as such: the sequences are conservative (rates of 0-2 % here)
PICARD = (90.02, 0.23)  # Picard 2021, CIFAR-10 short runs: mean ± std of 10^4 seeds' accuracy (percent)


def picard(rng, shape):
    return np.clip(rng.normal(*PICARD, shape), 0, 100)


def t_interval_seeds(half_width, sd=PICARD[1]):
    """Seeds at which a fixed-n 95 % t-interval is ±half_width (one look, normal accuracies)."""
    n = np.arange(2, 10_000)
    return int(n[np.argmax(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / np.sqrt(n) <= half_width)])


def test_normal_until_width_stops_within_three_times_the_fixed_n_t_interval_seeds():
    width = 0.1
    rule = simulate_until_width(picard(np.random.default_rng(21), (STUDIES, 400)), width)
    cs, fixed = rule.cs, t_interval_seeds(width)                  # 23 seeds
    assert rule.stopped.all() and (cs.half_width <= width).all()
    assert fixed < cs.n.mean() < 3 * fixed
    assert ((cs.lower > PICARD[0]) | (cs.upper < PICARD[0])).mean() <= SLACK  # where it stopped, too


def test_bounded_until_width_stops_at_the_width_asked_near_the_information_floor():
    width = 0.2
    rule = simulate_until_width(picard(np.random.default_rng(6), (200, 1600)), width, method="bounded")
    cs = rule.cs
    assert rule.stopped.all() and (cs.half_width <= width).all()
    # no valid CS brings its lower end within d of a mean μ (on [0, 100]) before n ≈ log(1/(2α))·μ/d
    # seeds in the median study (confseq.py, BoundedCS): the rule must not beat that floor, nor lag far
    floor = np.median(cs.n * (cs.mean - cs.lower) / cs.mean) / np.log(1 / (2 * ALPHA))
    assert 1 <= floor <= 2.5


@pytest.mark.parametrize("method, label", [("normal", "t-mixture, assumes normal accuracies"),
                                           ("bounded", "empirical-Bernstein, assumes only accuracies")])
def test_until_width_decision_says_why_it_stopped_and_by_which_method(method, label):
    rule = UntilWidth(0.5, min_seeds=10, method=method)
    rng = np.random.default_rng(7)
    decision, n = None, 0
    while decision is None:
        decision = rule.update(picard(rng, ()))
        n += 1
    assert decision.verdict == "width" and decision.seeds == (n,)
    assert decision.lower <= PICARD[0] <= decision.upper
    assert (decision.upper - decision.lower) / 2 <= 0.5
    assert decision.reason.startswith("the 95 % confidence sequence of the mean is ±0.")
    assert f"after {n:,} seeds (≤ ±0.5 pp): mean " in decision.reason
    assert decision.reason.endswith(f"; method {method} ({label}") or f"; method {method} ({label}" in \
        decision.reason
    assert rule.update(np.nan) is not None and rule.cs.diverged == 1  # stays stopped; the NaN is counted


@pytest.mark.parametrize("method", ["normal", "bounded"])
def test_min_seeds_holds_a_wide_rule_back(method):
    rule = UntilWidth(60.0, min_seeds=25, method=method)  # ±60 points: met after a few seeds
    decisions = [rule.update(90.0 + 0.1 * (k % 3)) for k in range(30)]
    assert decisions.index(next(d for d in decisions if d)) == 24


@pytest.mark.parametrize("method, width", [("normal", 0.025), ("bounded", 0.3)])  # both stop past 500
def test_restart_replaying_the_stored_seeds_reaches_the_same_decision(method, width):
    x = picard(np.random.default_rng(8), 900)
    x[[17, 400]] = np.nan                                # two diverged runs
    whole = UntilWidth(width, method=method)
    first = [whole.update(v) for v in x]
    after = UntilWidth(width, method=method)             # a fresh process replays the store, then goes on
    for v in x[:500]:
        after.update(v)
    rest = [after.update(v) for v in x[500:]]
    assert rest == first[500:] and first[-1] and not first[500]
    assert (float(after.cs.lower), float(after.cs.upper)) == (float(whole.cs.lower), float(whole.cs.upper))


@pytest.mark.parametrize("method, seeds", [("normal", 300), ("bounded", 2000)])
def test_versus_equal_means_rarely_called_better_or_worse_and_within_a_wide_margin(method, seeds):
    rng = np.random.default_rng(11)
    rule = simulate_versus(picard(rng, (STUDIES, seeds)), picard(rng, (STUDIES, seeds)), margin=0.5,
                           method=method)
    verdict = rule.verdict
    assert np.isin(verdict, ["better", "worse"]).mean() <= SLACK
    assert (verdict == "within").mean() >= 0.9


def test_normal_versus_equal_means_different_spreads_rarely_called_better_or_worse():
    # no equal-variance assumption: A spreads twice as wide as B, same mean; margin 0: never "within"
    rng = np.random.default_rng(22)
    xa, xb = rng.normal(PICARD[0], 2 * PICARD[1], (STUDIES, 400)), picard(rng, (STUDIES, 400))
    verdict = simulate_versus(xa, xb, margin=0.0).verdict
    assert np.isin(verdict, ["better", "worse", "within"]).mean() <= SLACK


def test_bounded_versus_equal_means_of_different_shapes_rarely_called_better_or_worse():
    # A: normal; B: a black-swan two-point with the same mean. Seeds unpaired, margin 0: never "within"
    rng, mean = np.random.default_rng(12), 0.98 * 90 + 0.02 * 10
    xa = rng.normal(mean, 0.23, (STUDIES, 800))
    xb = np.where(rng.random((STUDIES, 800)) < 0.02, 10.0, 90.0)
    verdict = simulate_versus(xa, xb, margin=0.0, method="bounded").verdict
    assert np.isin(verdict, ["better", "worse", "within"]).mean() <= SLACK


@pytest.mark.parametrize("method, seeds", [("normal", 300), ("bounded", 2500)])
def test_versus_real_difference_is_called_better(method, seeds):
    rng = np.random.default_rng(13)
    xa = np.clip(rng.normal(PICARD[0] + 0.3, PICARD[1], (STUDIES, seeds)), 0, 100)
    rule = simulate_versus(xa, picard(rng, (STUDIES, seeds)), margin=0.1, method=method)
    assert (rule.verdict == "worse").mean() <= SLACK
    assert (rule.verdict == "better").mean() >= 0.9


@pytest.mark.parametrize("method", ["normal", "bounded"])
def test_simulated_versus_plays_each_study_as_a_scan_would(method):
    rng = np.random.default_rng(15)
    xa = np.where(rng.random((3, 400)) < 0.05, np.nan, rng.normal(91.0, 0.3, (3, 400)))
    xb = np.where(rng.random((3, 300)) < 0.05, np.nan, picard(rng, (3, 300)))
    many = simulate_versus(xa, xb, margin=0.2, method=method)
    for k in range(3):
        one, next_a, next_b = Versus(0.2, method=method), iter(xa[k]), iter(xb[k])
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


@pytest.mark.parametrize("method", ["normal", "bounded"])
def test_versus_trains_the_wider_side_and_reads_a_finished_store(method):
    rng = np.random.default_rng(14)
    rule = Versus(0.2, labels=("fast94", "airbench94"), method=method)
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
    assert f"after {n_a:,} + 3,000 seeds; method {method} (" in decision.reason
    even = Versus(0.2, method=method)
    assert even.needs() == "A"
    even.add("A", 90.0)
    assert even.needs() == "B"                           # equal widths: the side with fewer seeds


def test_describe_rule_states_the_rule_the_method_its_assumption_and_citation():
    text = describe_rule(UntilWidth(0.05, min_seeds=20))
    assert "at most ±0.05 pp" in text and "at least 20 seeds" in text and "after every seed" in text
    assert 'method "normal"' in text and "Lai 1976" in text and "Wang & Ramdas 2023" in text
    assert "exact if seed accuracies are independent draws from one normal distribution" in text
    assert "collapse" in text
    text = describe_rule(UntilWidth(0.05, method="bounded"))
    assert 'method "bounded"' in text and "Waudby-Smith & Ramdas" in text and "Theorem 2" in text
    assert "no normality" in text
    text = describe_rule(Versus(0.1, alpha=0.1, labels=("lr=0.3", "picard-short")))
    assert "90 % confidence sequence of mean(lr=0.3) − mean(picard-short)" in text
    assert "inside ±0.1 pp" in text and "95 % (a union bound, seeds not paired)" in text
    assert 'method "normal"' in text


@pytest.mark.parametrize("make", [
    lambda: UntilWidth(0.0), lambda: UntilWidth(np.nan), lambda: UntilWidth(0.1, alpha=1.0),
    lambda: UntilWidth(0.1, min_seeds=1), lambda: UntilWidth(0.1, min_seeds=2.5),
    lambda: UntilWidth("wide"), lambda: UntilWidth(0.1, bounds=(100, 0)),
    lambda: UntilWidth(0.1, bounds="0-100"), lambda: Versus(-0.1), lambda: Versus(0.1, alpha=0),
    lambda: UntilWidth(0.1, method="t-test"), lambda: Versus(0.1, method=None),
])
def test_bad_settings_are_one_clear_error(make):
    with pytest.raises(FastseedError):
        make()


def test_unknown_method_names_the_known_ones():
    with pytest.raises(FastseedError, match=r"method must be one of 'normal', 'bounded', got 't-test'"):
        UntilWidth(0.1, method="t-test")


@pytest.mark.parametrize("method", ["normal", "bounded"])
def test_accuracy_outside_the_bounds_is_one_clear_error(method):
    rule = UntilWidth(0.1, bounds=(0.0, 1.0), method=method)
    rule.update(0.9)
    with pytest.raises(FastseedError, match=r"accuracy 90 is outside the bounds \[0, 1\].*percent and fract"):
        rule.update(90.0)
    with pytest.raises(FastseedError, match="outside"):
        rule.update(np.inf)
