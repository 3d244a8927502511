"""Majority votes against a plain Counter and against the binomial probability of independent votes;
soft votes against hand-made logits."""

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from fastseed.stats import ensembles
from fastseed.stats.ensembles import (ensemble_accuracies, ensemble_members, majority_vote, seed_ensembles,
                                     soft_ensembles, soft_vote_accuracies)
from fastseed.stats.synthetic import balanced_labels, predictions_for


def reference_vote(votes) -> int:
    """The most common class; among tied classes, the one the earliest member voted for."""
    counts = Counter(votes)
    top = max(counts.values())
    return next(v for v in votes if counts[v] == top)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 10])
def test_majority_vote_matches_counter(k):
    rng = np.random.default_rng(k)
    votes = rng.integers(0, 4, (6, k, 300)).astype(np.uint8)  # 4 classes: many ties
    got = majority_vote(votes, 10)
    for e in range(6):
        for i in range(300):
            assert got[e, i] == reference_vote(votes[e, :, i].tolist())


def test_ensemble_accuracy_in_blocks_equals_one_block(monkeypatch):
    rng = np.random.default_rng(0)
    labels = balanced_labels(500)
    preds = np.stack([predictions_for(0.6, labels, rng) for _ in range(12)])
    members = ensemble_members(12, 5, 30, rng)
    whole = ensemble_accuracies(preds, labels, members)
    monkeypatch.setattr(ensembles, "BLOCK", 1)  # one ensemble per block
    assert np.array_equal(whole, ensemble_accuracies(preds, labels, members))
    by_hand = [100 * np.mean([reference_vote(preds[m, i].tolist()) == labels[i] for i in range(500)])
               for m in members[:3]]
    np.testing.assert_allclose(whole[:3], by_hand)


def test_members_are_distinct_runs_and_every_subset_when_few():
    rng = np.random.default_rng(1)
    m = ensemble_members(1000, 10, 200, rng)
    assert m.shape == (200, 10) and all(len(set(row)) == 10 for row in m) and m.max() < 1000
    few = ensemble_members(5, 3, 200, rng)
    assert sorted(tuple(sorted(r)) for r in few) == sorted(itertools.combinations(range(5), 3))


def test_independent_votes_follow_the_binomial_formula():
    # each run right with p, a wrong vote uniform over the 9 other classes, votes independent:
    # P(3-vote right) = p^3 + 3p^2(1-p) + 3p(1-p)^2 · P(the two wrong votes differ) · P(right is first)
    p = 0.7
    rng = np.random.default_rng(2)
    labels = balanced_labels(10_000)
    preds = np.stack([predictions_for(p, labels, rng) for _ in range(40)])
    table, accs = seed_ensembles(preds, labels, ks=(1, 3, 5), n_ensembles=100, rng=rng)
    t = table.set_index("k")
    k3 = p ** 3 + 3 * p ** 2 * (1 - p) + 3 * p * (1 - p) ** 2 * (8 / 9) * (1 / 3)
    assert t.at[3, "mean"] == pytest.approx(100 * k3, abs=0.25)
    # k = 5, lower bound: at least 3 of 5 right always wins
    at_least_3 = sum(math.comb(5, j) * p ** j * (1 - p) ** (5 - j) for j in (3, 4, 5))
    assert t.at[5, "mean"] > 100 * at_least_3
    assert t.at[1, "ensembles"] == 40 and len(accs[1]) == 40
    np.testing.assert_allclose(accs[1], 100 * (preds == labels).mean(axis=1))
    assert t.at[5, "gain"] == pytest.approx(t.at[5, "mean"] - t.at[1, "mean"])


def test_identical_runs_gain_nothing():
    labels = balanced_labels(1000)
    preds = np.tile(predictions_for(0.8, labels, np.random.default_rng(3)), (12, 1))
    table, _ = seed_ensembles(preds, labels, n_ensembles=20)
    assert np.allclose(table["gain"], 0) and list(table["k"]) == [1, 2, 3, 5, 10]


def test_a_thousand_classes_vote_without_wrapping():
    # uint8 would wrap class 300 to 44: three identical perfect runs must score 100 %, not 33 %
    labels = (np.arange(3000) % 1000).astype(np.uint16)
    preds = np.tile(labels, (3, 1))
    votes = majority_vote(preds[None], 1000)
    assert votes.dtype == np.uint16 and np.array_equal(votes[0], labels)
    table, _ = seed_ensembles(preds, labels, ks=(1, 2, 3))
    np.testing.assert_allclose(table["mean"], 100)


def one_hot_logits(predictions, n_classes: int = 10, scale: float = 1.0) -> np.ndarray:
    return scale * np.eye(n_classes, dtype=np.float32)[predictions]


def test_soft_vote_follows_the_confident_member():
    # image 0: members A and B say 1 weakly, C says 2 strongly → hard vote 1, soft vote 2
    labels = np.array([2, 0], dtype=np.uint8)
    logits = {0: np.array([[0, 1, 0.9], [5, 0, 0]]), 1: np.array([[0, 1, 0.9], [5, 0, 0]]),
              2: np.array([[0, 0, 9.0], [0, 5, 0]])}
    preds = np.array([l.argmax(axis=1) for l in logits.values()], dtype=np.uint8)
    fetch = lambda rows: ((int(r), logits[int(r)]) for r in rows)
    members = np.array([[0, 1, 2]])
    assert ensemble_accuracies(preds, labels, members)[0] == 50     # image 0 wrong, image 1 right
    assert soft_vote_accuracies(fetch, labels, members)[0] == 100


def test_soft_vote_of_one_hot_logits_counts_votes(monkeypatch):
    # equal-confidence members: the soft vote is the most voted class, ties to the lowest class
    rng = np.random.default_rng(4)
    labels = balanced_labels(400)
    preds = np.stack([predictions_for(0.6, labels, rng) for _ in range(15)])
    fetch = lambda rows: ((int(r), one_hot_logits(preds[r], scale=20.0)) for r in rows)
    members = ensemble_members(15, 5, 12, rng)
    monkeypatch.setattr(ensembles, "SOFT_BLOCK", 400 * 10 * 3)  # three ensembles a block
    soft = soft_vote_accuracies(fetch, labels, members)
    for e, m in enumerate(members):
        won = []
        for i in range(400):
            counts = Counter(preds[m, i].tolist())
            top = max(counts.values())
            won.append(min(c for c, v in counts.items() if v == top))
        assert soft[e] == pytest.approx(100 * np.mean(np.array(won) == labels))
    single = soft_vote_accuracies(fetch, labels, np.arange(15)[:, None])
    np.testing.assert_allclose(single, 100 * (preds == labels).mean(axis=1))


def test_soft_ensembles_leave_out_runs_without_logits():
    rng = np.random.default_rng(5)
    labels = balanced_labels(200)
    preds = np.stack([predictions_for(0.7, labels, rng) for _ in range(8)])
    kept = {0, 1, 2, 3}  # runs 4-7 kept no logits
    fetch = lambda rows: ((int(r), one_hot_logits(preds[r])) for r in rows if int(r) in kept)
    t = soft_ensembles(fetch, preds, labels, np.arange(8), ks=(1, 2, 3), n_ensembles=20, rng=rng).set_index("k")
    assert 0 < t.at[3, "ensembles"] < 20 and t.at[1, "ensembles"] <= 4
    np.testing.assert_allclose(t.at[1, "soft_minus_hard"], 0, atol=1e-12)  # one run: argmax = prediction
    none = soft_ensembles(lambda rows: iter(()), preds, labels, np.arange(8), ks=(1, 2), rng=rng)
    assert len(none) == 0


def test_known_single_accuracies_spare_a_pass():
    rng = np.random.default_rng(6)
    labels = balanced_labels(300)
    preds = np.stack([predictions_for(0.7, labels, rng) for _ in range(9)])
    rows = np.array([0, 2, 3, 5, 8])
    counted, _ = seed_ensembles(preds, labels, rng=np.random.default_rng(1), rows=rows)
    known, _ = seed_ensembles(preds, labels, rng=np.random.default_rng(1), rows=rows,
                              single=100 * (preds[rows] == labels).mean(axis=1))
    pd.testing.assert_frame_equal(counted, known)


def test_logits_of_fewer_classes_than_the_labels_are_no_soft_vote():
    labels = np.array([7, 3], dtype=np.uint8)
    top5 = {0: np.zeros((2, 5)), 1: np.zeros((2, 5))}  # e.g. a top-5 kept instead of all classes
    fetch = lambda rows: ((int(r), top5[int(r)]) for r in rows)
    assert np.isnan(soft_vote_accuracies(fetch, labels, np.array([[0, 1]]))).all()
