"""Synthetic stores with known distributions: the report's tests, its benchmark, and a demo without
a GPU or a scan.

Run s has a true accuracy p_s; each test image is right with probability p_s, independently, and a
wrong prediction is a uniformly random other class. So the stored test_acc is p_s plus the test set's
binomial noise, the predictions agree with it exactly, and two halves of the test set are independent
given p_s: their correlation across seeds is Var(p) / (Var(p) + binomial variance of a half).
With `difficulty` > 0 images differ too, as real ones do: image i is right with probability
σ(logit p_s + d_i), d_i ~ N(0, difficulty²) drawn once per store, so some images are right under
almost every seed and some are coin flips. `write_logits` adds logits whose argmax is the prediction.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from pathlib import Path

import numpy as np

from fastseed.store.record import encode_logits
from fastseed.store import Store
from fastseed.store.record import ROW_COLUMNS, Record

N_CLASSES = 10


def protocol_identity(name: str) -> tuple[str, str]:
    """(protocol_json, protocol_hash) of a synthetic protocol called `name`."""
    text = json.dumps({"name": name, "synthetic": True}, sort_keys=True)
    return text, hashlib.sha256(text.encode()).hexdigest()


def balanced_labels(n_images: int = 10_000, seed: int = 0) -> np.ndarray:
    """A test set's labels: the classes in equal numbers, shuffled (as CIFAR-10's test set)."""
    return np.random.default_rng(seed).permutation(np.arange(n_images) % N_CLASSES).astype(np.uint8)


def predictions_for(p: float, labels: np.ndarray, rng, difficulty: np.ndarray | None = None) -> np.ndarray:
    """Each image right with probability p (σ(logit p + difficulty_i) with per-image offsets), else a
    random other class."""
    if difficulty is not None:
        p = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + difficulty)))
    right = rng.random(len(labels), dtype=np.float32) < p
    other = (labels + rng.integers(1, N_CLASSES, len(labels))) % N_CLASSES
    return np.where(right, labels, other).astype(np.uint8)


def make_record(seed: int, predictions: np.ndarray, labels: np.ndarray, *, protocol: str = "synthetic",
                epochs: int = 22, diverged: bool = False, fixed=(), rng=None) -> Record:
    """A record whose test accuracy is that of `predictions`, with plausible curves that end there."""
    rng = np.random.default_rng(seed) if rng is None else rng
    _, protocol_hash = protocol_identity(protocol)
    acc = float((predictions == labels).mean())
    e = np.arange(epochs)
    rise = (1 - e / max(epochs - 1, 1)) ** 2  # 1 at epoch 0, 0 at the last: curves converge to acc
    eval_acc = np.clip(acc - 0.6 * acc * rise + rng.normal(0, 0.002, epochs) * (rise > 0), 0, 1)
    eval_loss = 0.3 + 1.8 * rise + rng.normal(0, 0.01, epochs)
    train_loss = 0.25 + 2.0 * rise ** 1.5 + rng.normal(0, 0.02, epochs)
    train_acc = np.clip(acc + 0.05 - 0.7 * rise + rng.normal(0, 0.003, epochs), 0, 1)
    stop = epochs
    if diverged:  # blew up halfway: curves stop, the loss is NaN, predictions are the 255 filler
        stop, acc = epochs // 2, math.nan
        train_loss[stop - 1] = math.nan
        predictions = np.full_like(predictions, 255)
    eval_curve = [[int(i), float(eval_acc[i]), float(eval_loss[i])] for i in range(stop - diverged)]
    if eval_curve and not diverged:
        eval_curve[-1][1] = acc
    return Record(
        protocol=protocol, protocol_hash=protocol_hash, seed=int(seed),
        status="diverged" if diverged else "ok", test_acc=acc,
        test_loss=math.nan if diverged else float(eval_loss[-1]), headline_epoch=epochs - 1,
        eval_curve=eval_curve,
        train_curve=[[int(i), float(train_loss[i]), float(train_acc[i])] for i in range(stop)],
        predictions=predictions.tobytes(), wall_time_s=float(rng.uniform(25, 35)),
        pack={"strategy": "sequential", "size": 1, "slot": 0, "seeds": [int(seed)]},
        provenance={"fastseed": "synthetic", "device": "none", "fixed": sorted(fixed), "fix_seed": 0})


def write_store(path, records, labels: np.ndarray, protocol: str = "synthetic",
                protocol_json: str | None = None) -> Path:
    """A store holding `records` (any iterable: 10^5 of them need not be in memory at once), written
    in one transaction (one fsync, not one per record). `protocol_json` replaces the synthetic one
    (e.g. a real preset's, for what the report reads from it)."""
    text, protocol_hash = protocol_identity(protocol)
    protocol_json = text if protocol_json is None else protocol_json
    path = Path(path)
    with Store(path, protocol, protocol_hash, protocol_json) as store:
        store.set_test_labels(labels)
    sql = (f"INSERT INTO records ({', '.join(ROW_COLUMNS)}) "
           f"VALUES ({', '.join(':' + c for c in ROW_COLUMNS)})")
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(sql, (r.to_row() for r in records))
    finally:
        conn.close()
    return path


def synthetic_store(path, n_seeds: int, *, mean: float = 0.90, std: float = 0.0023,
                    n_images: int = 10_000, epochs: int = 22, diverged: int = 0, fixed=(),
                    protocol: str = "synthetic", seed: int = 0, difficulty: float = 0.0,
                    protocol_json: str | None = None) -> Path:
    """A store of `n_seeds` runs (seeds 0 … n−1) with true accuracies drawn from N(mean, std²); the
    last `diverged` seeds diverged."""
    rng = np.random.default_rng(seed)
    labels = balanced_labels(n_images, seed)
    true_acc = np.clip(rng.normal(mean, std, n_seeds), 0, 1)
    offsets = np.random.default_rng([seed, 1]).normal(0, difficulty, n_images) if difficulty else None
    records = (make_record(s, predictions_for(true_acc[s], labels, rng, offsets), labels, protocol=protocol,
                           epochs=epochs, diverged=s >= n_seeds - diverged, fixed=fixed, rng=rng)
               for s in range(n_seeds))
    return write_store(path, records, labels, protocol, protocol_json)


def logits_for(predictions: np.ndarray, rng, scale: float = 2.0) -> np.ndarray:
    """(images × classes) float16 logits whose argmax is `predictions`: noise, with the predicted
    class lifted above the rest by a random margin (confidences from near 1/10 to near 1)."""
    logits = rng.normal(0, 1, (len(predictions), N_CLASSES)).astype(np.float32)
    rows = np.arange(len(predictions))
    logits[rows, predictions] = logits.max(axis=1) + rng.exponential(scale, len(predictions)) + 0.01
    return logits.astype(np.float16)


def write_logits(path, logits: dict) -> None:
    """Store `logits` (seed → (images × classes) array) in the records of `path` as the store keeps
    them (encode_logits). Adds the column to a schema-1 store, made before it existed."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            if "logits" not in {row[1] for row in conn.execute("PRAGMA table_info(records)")}:
                conn.execute("ALTER TABLE records ADD COLUMN logits BLOB")
            conn.executemany("UPDATE records SET logits = ? WHERE seed = ?",
                             [(encode_logits(a), int(s)) for s, a in logits.items()])
    finally:
        conn.close()
