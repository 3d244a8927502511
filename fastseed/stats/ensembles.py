"""Seed ensembles: majority votes of k runs' stored predictions against single runs.

Records keep the predicted class of every test image, not logits, so the vote is hard (majority);
a soft vote (mean of probabilities) needs stored logits and is reported as not available until the
store has them. A tie is won by the class of the earliest member that voted for one of the tied
classes; members are drawn in random order, so this is a random tie-break that is reproducible.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

KS = (1, 2, 3, 5, 10)
N_ENSEMBLES = 200      # random ensembles per k: the spread of their accuracy is what the table shows
ENSEMBLE_SEED = 1
BLOCK = 1 << 22        # (ensembles × images × classes) vote counts held at once


def majority_vote(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """(ensembles, k, images) predicted classes → (ensembles, images) winning class.

    Member j's vote weighs 2^k + 2^(k−1−j): the 2^k parts count votes, and since the 2^(k−1−j) parts
    of a class sum to less than 2^k they only order classes with equal counts, by their earliest
    voter. One weighted bincount then scores every (ensemble, image, class) at once."""
    E, k, M = votes.shape
    if k > 40:
        raise ValueError(f"majority_vote: k = {k} > 40 overflows the exact float64 scores")
    flat = (np.arange(E * M).reshape(E, 1, M) * n_classes + votes).ravel()
    weight = np.broadcast_to((2.0 ** k + 2.0 ** np.arange(k - 1, -1, -1))[None, :, None], votes.shape)
    score = np.bincount(flat, weights=weight.ravel(), minlength=E * M * n_classes)
    return np.argmax(score.reshape(E, M, n_classes), axis=2).astype(np.uint8)


def ensemble_members(N: int, k: int, n_ensembles: int, rng) -> np.ndarray:
    """(ensembles, k) run indices: every k-subset when there are at most `n_ensembles` of them
    (in random member order), else `n_ensembles` random k-subsets (distinct runs within each)."""
    if math.comb(N, k) <= n_ensembles:
        members = np.array(list(combinations(range(N), k)), dtype=np.int64).reshape(-1, k)
    else:  # the k smallest of N uniform keys: a uniform k-subset, in O(N) per ensemble
        members = np.argpartition(rng.random((n_ensembles, N)), k - 1, axis=1)[:, :k]
    return rng.permuted(members, axis=1)


def ensemble_accuracies(predictions, labels, members: np.ndarray) -> np.ndarray:
    """Accuracy (percent) of the majority vote of each row of `members`."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    n_classes = int(max(predictions.max(initial=0), labels.max(initial=0))) + 1
    E, k = members.shape
    if k == 1:  # a single run's vote is its prediction: no counting needed
        return 100 * (predictions[members[:, 0]] == labels[None, :]).mean(axis=1)
    per_block = max(1, BLOCK // (predictions.shape[1] * n_classes))
    out = np.empty(E)
    for start in range(0, E, per_block):
        block = members[start: start + per_block]
        votes = majority_vote(predictions[block], n_classes)
        out[start: start + len(block)] = 100 * (votes == labels[None, :]).mean(axis=1)
    return out


def seed_ensembles(predictions, labels, ks=KS, n_ensembles: int = N_ENSEMBLES, rng=None):
    """Per k (≤ runs): a table row (mean, std, min, max accuracy of the ensembles, gain over the mean
    single run) and the accuracies themselves (k = 1 holds every single run)."""
    rng = np.random.default_rng(ENSEMBLE_SEED) if rng is None else rng
    N = len(predictions)
    rows, accuracies = [], {}
    for k in (k for k in ks if k <= N):
        members = (np.arange(N)[:, None] if k == 1 else ensemble_members(N, k, n_ensembles, rng))
        acc = ensemble_accuracies(predictions, labels, members)
        accuracies[k] = acc
        rows.append({"k": k, "ensembles": len(acc), "mean": acc.mean(),
                     "std": acc.std(ddof=1) if len(acc) > 1 else np.nan,
                     "min": acc.min(), "max": acc.max()})
    table = pd.DataFrame(rows, columns=["k", "ensembles", "mean", "std", "min", "max"])
    if len(table):
        table["gain"] = table["mean"] - table["mean"].iloc[0]
    return table, accuracies
