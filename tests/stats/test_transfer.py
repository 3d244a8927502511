"""Lucky seeds do not transfer: a planted seed lucky on one half of the test set regresses to the
mean on the other; a seed that is really better stays better."""

import numpy as np
import pytest
from scipy import stats

from fastseed.stats.synthetic import balanced_labels, predictions_for
from fastseed.stats.transfer import half_accuracies, selection_curve, split_halves, transfer


def test_halves_are_fixed_disjoint_complete_and_stratified():
    labels = balanced_labels(10_000)
    val, test = split_halves(labels)
    assert len(val) == len(test) == 5000
    assert np.intersect1d(val, test).size == 0 and np.union1d(val, test).size == 10_000
    assert (np.bincount(labels[val]) == 500).all()  # each class halved
    v2, t2 = split_halves(labels.copy())
    assert np.array_equal(val, v2) and np.array_equal(test, t2)  # same split every time
    odd = np.array([0, 0, 0, 1, 1, 2])
    v, t = split_halves(odd)
    assert sorted(np.bincount(odd[v], minlength=3)) == [1, 1, 2] and len(t) == 2


def test_half_accuracies_match_a_loop():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300).astype(np.uint8)
    preds = rng.integers(0, 10, (7, 300)).astype(np.uint8)
    val, test = split_halves(labels)
    a, b = half_accuracies(preds, labels, val, test)
    for i in range(7):
        assert a[i] == pytest.approx(100 * np.mean([preds[i, j] == labels[j] for j in val]))
        assert b[i] == pytest.approx(100 * np.mean([preds[i, j] == labels[j] for j in test]))


def lucky_seed_runs(n=300, lucky=42, seed=1):
    """Every run gets each image right with p = 0.9 — no seed is better — except that seed `lucky`
    gets the val half right with p = 0.95: lucky on val, ordinary on test."""
    rng = np.random.default_rng(seed)
    labels = balanced_labels(10_000)
    val, test = split_halves(labels)
    preds = np.stack([predictions_for(0.9, labels, rng) for _ in range(n)])
    preds[lucky, val] = predictions_for(0.95, labels[val], rng)
    return preds, labels, val, test


def test_planted_lucky_seed_does_not_transfer():
    preds, labels, val, test = lucky_seed_runs()
    va, te = half_accuracies(preds, labels, val, test)
    t = transfer(np.arange(1000, 1300), va, te)
    assert t.best_seed == 1042 and t.best_val == pytest.approx(va[42])
    assert t.val_gain > 4  # ~5 points lucky on val...
    binomial_sd = 100 * np.sqrt(0.9 * 0.1 / len(test))
    assert abs(t.test_gain) < 3 * binomial_sd  # ...and ordinary on test
    assert t.best_test_rank > 3
    others = np.arange(300) != 42
    r = stats.pearsonr(va[others], te[others]).statistic
    assert abs(r) < 3 / np.sqrt(299)  # no seed effect: the halves are uncorrelated
    assert t.r == pytest.approx(np.corrcoef(va, te)[0, 1])
    assert t.slope == pytest.approx(np.polyfit(va, te, 1)[0])
    sel = selection_curve(va, te, [1, 300]).set_index("n")
    assert sel.at[300, "picked_val"] == pytest.approx(va[42])
    assert sel.at[300, "picked_test"] == pytest.approx(te[42])
    assert sel.at[1, "picked_test"] == pytest.approx(te.mean())
    assert sel.at[300, "oracle_test"] == pytest.approx(te.max())


def test_a_really_better_seed_does_transfer():
    rng = np.random.default_rng(2)
    labels = balanced_labels(10_000)
    val, test = split_halves(labels)
    quality = rng.normal(0.9, 0.01, 200)  # a seed effect 2.4 times the binomial noise of a half
    preds = np.stack([predictions_for(q, labels, rng) for q in quality])
    va, te = half_accuracies(preds, labels, val, test)
    t = transfer(np.arange(200), va, te)
    expected_r = 0.01 ** 2 / (0.01 ** 2 + 0.9 * 0.1 / 5000)  # Var(q) / (Var(q) + binomial var)
    assert t.r_low < expected_r < t.r_high
    assert t.test_gain > 0.5 * t.val_gain and t.best_test_rank <= 20


def test_selection_curve_matches_monte_carlo():
    rng = np.random.default_rng(3)
    va, te = rng.normal(size=500), rng.normal(size=500)
    te += 0.5 * va
    draws = []
    for _ in range(5000):
        pick = rng.choice(500, 20, replace=False)
        draws.append(te[pick[np.argmax(va[pick])]])
    got = selection_curve(va, te, [20])["picked_test"].iloc[0]
    assert got == pytest.approx(np.mean(draws), abs=4 * np.std(draws) / np.sqrt(5000))


def test_fisher_interval_of_r_covers_at_the_nominal_rate():
    rng = np.random.default_rng(4)
    cov = [[1, 0.5], [0.5, 1]]
    hits = 0
    for _ in range(400):
        v, t = rng.multivariate_normal([0, 0], cov, 100).T
        res = transfer(np.arange(100), v, t)
        hits += res.r_low <= 0.5 <= res.r_high
    assert 0.91 <= hits / 400 <= 0.985
