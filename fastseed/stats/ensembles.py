"""Seed ensembles: votes of k runs against single runs.

Hard vote: the majority of k runs' stored predictions. A tie is won by the class of the earliest member
that voted for one of the tied classes; members are drawn in random order, so this is a random
tie-break that is reproducible (with k = 2 every disagreement is a tie: a 2-seed vote is one seed).
Soft vote (when the store kept logits): the class of highest mean softmax probability over the k
members, computed on fewer ensembles (each needs k runs' logits read from disk), beside the hard vote
of the very same ensembles so the two are compared pair by pair.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

from fastseed.stats.calibration import softmax

KS = (1, 2, 3, 5, 10)
N_ENSEMBLES = 200      # random ensembles per k: the spread of their accuracy is what the table shows
SOFT_ENSEMBLES = 50    # per k for the soft vote: 50 · (1 + 2 + 3 + 5 + 10) runs' logits read at most
ENSEMBLE_SEED = 1
BLOCK = 1 << 22        # (ensembles × images × classes) vote counts held at once
SOFT_BLOCK = 1 << 24   # (ensembles × images × classes) float32 probability sums held at once


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
    # the winner is one of the votes, so the votes' dtype holds it (uint16 for 1,000 classes)
    return np.argmax(score.reshape(E, M, n_classes), axis=2).astype(votes.dtype, copy=False)


def ensemble_members(N: int, k: int, n_ensembles: int, rng) -> np.ndarray:
    """(ensembles, k) run indices: every k-subset when there are at most `n_ensembles` of them
    (in random member order), else `n_ensembles` random k-subsets (distinct runs within each)."""
    if math.comb(N, k) <= n_ensembles:
        members = np.array(list(combinations(range(N), k)), dtype=np.int64).reshape(-1, k)
    elif N > 8 * k * k:  # k draws rarely collide: draw with replacement, redraw rows that did
        members = rng.integers(0, N, (n_ensembles, k))
        while (twice := (np.diff(np.sort(members, axis=1), axis=1) == 0).any(axis=1)).any():
            members[twice] = rng.integers(0, N, (int(twice.sum()), k))
    else:  # the k smallest of N uniform keys: a uniform k-subset, in O(N) per ensemble
        members = np.argpartition(rng.random((n_ensembles, N)), k - 1, axis=1)[:, :k]
    return rng.permuted(members, axis=1)


def ensemble_accuracies(predictions, labels, members: np.ndarray) -> np.ndarray:
    """Accuracy (percent) of the majority vote of each row of `members` (rows of `predictions`)."""
    labels = np.asarray(labels)
    E, k = members.shape
    n_classes = int(labels.max(initial=0)) + 1
    per_block = max(1, BLOCK // (len(labels) * (n_classes if k > 1 else 1)))
    out = np.empty(E)
    for start in range(0, E, per_block):
        votes = predictions[members[start: start + per_block]]
        # a single run's vote is its prediction: no counting needed
        won = votes[:, 0] if k == 1 else majority_vote(votes, max(n_classes, int(votes.max(initial=0)) + 1))
        out[start: start + len(won)] = 100 * np.count_nonzero(won == labels[None, :], axis=1) / len(labels)
    return out


def seed_ensembles(predictions, labels, ks=KS, n_ensembles: int = N_ENSEMBLES, rng=None, rows=None,
                   single=None):
    """Per k (≤ runs): a table row (mean, std, min, max accuracy of the ensembles, gain over the mean
    single run) and the accuracies themselves (k = 1 holds every single run). `rows`: the runs to
    draw from (rows of `predictions`; all when None); `single`: their accuracies (%), when known,
    spare a pass over them for k = 1."""
    rng = np.random.default_rng(ENSEMBLE_SEED) if rng is None else rng
    pool = np.arange(len(predictions)) if rows is None else np.asarray(rows, dtype=np.int64)
    N = len(pool)
    table, accuracies = [], {}
    for k in (k for k in ks if k <= N):
        if k == 1 and single is not None:
            acc = np.asarray(single, dtype=float)
        else:
            members = pool[np.arange(N)[:, None] if k == 1 else ensemble_members(N, k, n_ensembles, rng)]
            acc = ensemble_accuracies(predictions, labels, members)
        accuracies[k] = acc
        table.append({"k": k, "ensembles": len(acc), "mean": acc.mean(),
                     "std": acc.std(ddof=1) if len(acc) > 1 else np.nan,
                     "min": acc.min(), "max": acc.max()})
    table = pd.DataFrame(table, columns=["k", "ensembles", "mean", "std", "min", "max"])
    if len(table):
        table["gain"] = table["mean"] - table["mean"].iloc[0]
    return table, accuracies


def soft_vote_accuracies(logits, labels, members: np.ndarray) -> np.ndarray:
    """Accuracy (percent) of the soft vote of each row of `members`; NaN for an ensemble with a
    member whose logits are missing (or of another shape than the first run's). `logits(rows)`
    yields (row, (images × classes) logits) for those of the rows that kept logits; each run is read
    once per block of ensembles."""
    labels = np.asarray(labels)
    E, k = members.shape
    out = np.full(E, np.nan)
    shape = None  # (images, classes) of the first logits read
    per_block = max(1, SOFT_BLOCK // (len(labels) * (int(labels.max(initial=0)) + 1)))
    for start in range(0, E, per_block):
        block = members[start: start + per_block]
        where = {}  # run → the ensembles of the block it belongs to
        for e, row in enumerate(block):
            for r in row:
                where.setdefault(int(r), []).append(e)
        sums, seen = None, np.zeros(len(block), dtype=np.int64)
        for r, run_logits in logits(np.array(sorted(where))):
            shape = run_logits.shape if shape is None else shape
            if run_logits.shape != shape or shape[0] != len(labels) or shape[1] <= labels.max():
                continue  # another test set, or fewer classes (a top-k): not a vote over all classes
            sums = np.zeros((len(block), *shape), dtype=np.float32) if sums is None else sums
            probs = softmax(run_logits)
            for e in where[int(r)]:
                sums[e] += probs
                seen[e] += 1
        if sums is not None:
            right = sums.argmax(axis=2) == labels[None, :]
            out[start: start + len(block)] = np.where(seen == k, 100 * right.mean(axis=1), np.nan)
    return out


def soft_ensembles(logits, predictions, labels, rows, ks=KS, n_ensembles: int = SOFT_ENSEMBLES,
                   rng=None) -> pd.DataFrame:
    """Per k: soft vote against hard vote on the same random ensembles of `rows` (mean accuracy in
    percent over the ensembles whose members all kept logits, and the mean paired difference)."""
    rng = np.random.default_rng(ENSEMBLE_SEED) if rng is None else rng
    pool = np.asarray(rows, dtype=np.int64)
    out = []
    for k in (k for k in ks if k <= len(pool)):
        members = pool[ensemble_members(len(pool), k, n_ensembles, rng)]
        soft = soft_vote_accuracies(logits, labels, members)
        hard = ensemble_accuracies(predictions, labels, members)
        have = np.isfinite(soft)
        if not have.any():
            continue
        out.append({"k": k, "ensembles": int(have.sum()), "hard": hard[have].mean(),
                    "soft": soft[have].mean(), "soft_minus_hard": (soft - hard)[have].mean(),
                    "soft_std": soft[have].std(ddof=1) if have.sum() > 1 else np.nan})
    return pd.DataFrame(out, columns=["k", "ensembles", "hard", "soft", "soft_minus_hard", "soft_std"])
