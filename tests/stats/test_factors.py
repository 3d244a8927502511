"""Initialization vs data order: the experiments are recognised from provenance or labels, and the
variance shares of an additive model with known components are recovered."""

import warnings

import numpy as np
import pytest

from fastseed.stats.factors import find_experiments, role_of, variance_shares


def test_role_from_fixed_streams_then_from_labels():
    assert role_of(frozenset({"order"})) == "init"            # exp2: order fixed, init varies
    assert role_of(frozenset({"init"})) == "order"            # exp3: init fixed, order varies
    assert role_of(frozenset({"init", "augment"})) == "order"
    assert role_of(frozenset({"init", "order"})) is None      # neither varies
    assert role_of(frozenset()) == "both"
    assert role_of(frozenset({"augment"})) == "both"
    assert role_of(frozenset({"order"}), "exp3") == "init"    # the provenance wins over a label
    assert role_of(frozenset(), "exp2") == "init"             # records that do not say: the label
    assert role_of(None, "Experiment 3") == "order" and role_of(None, "exp-1") == "both"
    assert role_of(None, "baseline") is None


def test_experiments_found_only_when_each_appears_once():
    fixed = {"a": frozenset(), "b": frozenset({"order"}), "c": frozenset({"init"})}
    assert find_experiments(fixed) == {"both": "a", "init": "b", "order": "c"}
    assert find_experiments({"exp1": None, "exp2": None, "exp3": None}) == {
        "both": "exp1", "init": "exp2", "order": "exp3"}
    assert find_experiments({"x": frozenset(), "y": frozenset()}) is None
    assert find_experiments({**fixed, "d": frozenset()}) is None  # two exp1


def additive_runs(rng, n, sd_init, sd_order, vary_init, vary_order):
    """acc = 90 + init effect + order effect: each effect drawn per run when varied, else held."""
    init = rng.normal(0, sd_init, n) if vary_init else np.full(n, 0.13)
    order = rng.normal(0, sd_order, n) if vary_order else np.full(n, -0.07)
    return 90 + init + order


def test_variance_shares_match_numpy_and_recover_an_additive_model():
    rng = np.random.default_rng(0)
    sd_init, sd_order = 0.2, 0.1  # shares 0.8 and 0.2 of the total 0.05
    e1 = additive_runs(rng, 1000, sd_init, sd_order, True, True)
    e2 = additive_runs(rng, 1000, sd_init, sd_order, True, False)
    e3 = additive_runs(rng, 1000, sd_init, sd_order, False, True)
    t = variance_shares(e1, e2, e3).set_index("experiment")
    assert t.at["exp1", "variance"] == pytest.approx(np.var(e1, ddof=1))
    assert t.at["exp2", "share"] == pytest.approx(np.var(e2, ddof=1) / np.var(e1, ddof=1))
    assert t.at["rest", "share"] == pytest.approx(1 - t.at["exp2", "share"] - t.at["exp3", "share"])
    assert t.at["exp2", "share_low"] < 0.8 < t.at["exp2", "share_high"]
    assert t.at["exp3", "share_low"] < 0.2 < t.at["exp3", "share_high"]
    assert t.at["exp1", "variance_low"] < 0.05 < t.at["exp1", "variance_high"]


def test_share_interval_covers_the_true_share_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(100):
        e1 = additive_runs(rng, 200, 0.2, 0.2, True, True)
        e2 = additive_runs(rng, 200, 0.2, 0.2, True, False)
        e3 = additive_runs(rng, 200, 0.2, 0.2, False, True)
        t = variance_shares(e1, e2, e3, n_boot=500, rng=rng).set_index("experiment")
        hits += t.at["exp2", "share_low"] <= 0.5 <= t.at["exp2", "share_high"]
    assert 0.86 <= hits / 100 <= 1.0


def test_too_few_runs_are_refused():
    with pytest.raises(ValueError):
        variance_shares([90.0, 90.1], [90.0], [90.0, 90.2])


def test_an_exp1_without_spread_is_refused_in_words_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^exp1 has no spread \(its 3 runs have the same accuracy\)"):
            variance_shares([90.1, 90.1, 90.1], [90.1, 90.2, 90.2], [89.9, 90.0, 90.0])
        d = variance_shares([90.0, 90.1, 90.2], [90.1, 90.1, 90.1], [89.9, 90.0, 90.0]).set_index("experiment")
    assert d.at["exp2", "share"] == pytest.approx(0, abs=1e-12) and d.at["rest", "share"] == pytest.approx(1 - d.at["exp3", "share"])


def test_chaotic_factors_give_shares_above_one_in_sum_and_a_negative_rest():
    # each factor alone randomizes the run fully: all three experiments have the same variance
    rng = np.random.default_rng(2)
    e1, e2, e3 = (rng.normal(90, 0.23, 1000) for _ in range(3))
    t = variance_shares(e1, e2, e3).set_index("experiment")
    assert t.at["exp2", "share_low"] < 1 < t.at["exp2", "share_high"]
    assert t.at["rest", "share_high"] < 0 and t.at["rest", "share"] == pytest.approx(-1, abs=0.2)


def test_resamples_without_spread_give_no_interval_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a resample of three runs is often one run thrice: variance 0
        d = variance_shares([90.0, 90.0, 90.5], [90.1, 90.2, 90.2], [89.9, 90.0, 90.0]).set_index("experiment")
    assert d.at["exp2", "share"] == pytest.approx(np.var([90.1, 90.2, 90.2], ddof=1) / np.var([90, 90, 90.5], ddof=1))
    assert np.isnan(d.at["exp2", "share_low"]) and np.isnan(d.at["rest", "share_high"])
