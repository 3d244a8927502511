"""The records of one store as arrays: what every statistic and figure of a report reads.

Accuracies are converted to percent here, once (the store keeps fractions), so every table and figure
downstream speaks the paper's unit. Curves become (runs × epochs) matrices with NaN where a run has no
value (a diverged run stops early), so bands are plain nan-aware reductions over axis 0.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastseed import FastseedError
from fastseed.store import Store


@dataclass
class Runs:
    """One store, one label: per-seed arrays in seed order."""
    label: str
    path: Path
    protocol: str
    protocol_hash: str
    seeds: np.ndarray             # int64 (N,)
    ok: np.ndarray                # bool (N,): status == "ok"
    acc: np.ndarray               # float (N,) headline test accuracy in percent, NaN if diverged
    loss: np.ndarray              # float (N,) headline test loss
    headline_epoch: np.ndarray    # int (N,), 0-based
    eval_epochs: np.ndarray       # (E,) every epoch any run evaluated
    eval_acc: np.ndarray          # (N, E) percent
    eval_loss: np.ndarray         # (N, E)
    train_epochs: np.ndarray      # (T,)
    train_loss: np.ndarray        # (N, T)
    train_acc: np.ndarray         # (N, T) percent
    predictions: np.ndarray | None  # uint8/uint16 (N, M) predicted class per test image, None if ragged
    labels: np.ndarray | None     # uint8/uint16 (M,) true test labels, None when the store has none
    fixed: frozenset | None       # seed streams held fixed in every run; None if the runs disagree
    wall_time_s: np.ndarray
    unit: str = "epoch"           # what curves are indexed by: "epoch" (0-based, CIFAR) or "step" (ImageNet)

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def n_ok(self) -> int:
        return int(self.ok.sum())

    @property
    def ok_acc(self) -> np.ndarray:
        """Accuracy of the runs that finished: the sample every accuracy statistic is computed on."""
        return self.acc[self.ok]

    @property
    def scorable(self) -> bool:
        """Predictions can be scored against the truth (needed by transfer and ensembles)."""
        return (self.predictions is not None and self.labels is not None
                and self.predictions.shape[1] == len(self.labels))


def _curve_matrix(curves: list[list]) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, runs × epochs × columns) from per-run [[epoch, a, b], ...] lists, NaN where missing."""
    if len({len(c) for c in curves}) == 1 and curves[0]:  # the usual case: one schedule for all
        values = np.array(curves, dtype=float)  # None (a NaN stored as JSON null) becomes NaN
        if (values[:, :, 0] == values[:1, :, 0]).all():
            return values[0, :, 0].astype(np.int64), values[:, :, 1:]
    epochs = np.array(sorted({int(row[0]) for curve in curves for row in curve}), dtype=np.int64)
    where = {e: j for j, e in enumerate(epochs)}
    out = np.full((len(curves), len(epochs), 2), np.nan)
    for i, curve in enumerate(curves):
        for row in curve:
            out[i, where[int(row[0])]] = [np.nan if v is None else v for v in row[1:3]]
    return epochs, out


def _fixed_streams(records) -> frozenset | None:
    sets = {frozenset(r.provenance.get("fixed") or ()) for r in records}
    return sets.pop() if len(sets) == 1 else None


def _curve_unit(protocol_json: str) -> str:
    """ImageNet fine-tunes index their curves by global step; everything else by epoch."""
    try:
        return "step" if json.loads(protocol_json).get("dataset") == "imagenet" else "epoch"
    except (ValueError, AttributeError):  # not a JSON object: a store written by hand or another tool
        return "epoch"


def load_runs(store: Store, label: str) -> Runs:
    """All records of `store` as a Runs; refuses a store without records."""
    records = store.records()
    if not records:
        raise FastseedError(f"{store.path} holds no records (protocol {store.protocol}); "
                            f"run a scan into it first")
    ok = np.array([r.status == "ok" and np.isfinite(r.test_acc) for r in records])
    eval_epochs, evals = _curve_matrix([r.eval_curve for r in records])      # [acc, loss]
    train_epochs, trains = _curve_matrix([r.train_curve for r in records])   # [loss, acc]
    sizes = {len(r.predictions) for r in records}
    predictions = None
    if len(sizes) == 1 and sizes != {0}:  # one length for all: stack without a per-row copy
        predictions = np.frombuffer(b"".join(r.predictions for r in records),
                                    dtype=store.label_dtype).reshape(len(records), -1)
    return Runs(
        label=label, path=Path(store.path), protocol=store.protocol, protocol_hash=store.protocol_hash,
        seeds=np.array([r.seed for r in records], dtype=np.int64), ok=ok,
        acc=np.where(ok, 100 * np.array([r.test_acc for r in records], dtype=float), np.nan),
        loss=np.array([r.test_loss for r in records], dtype=float),
        headline_epoch=np.array([r.headline_epoch for r in records], dtype=np.int64),
        eval_epochs=eval_epochs, eval_acc=100 * evals[:, :, 0], eval_loss=evals[:, :, 1],
        train_epochs=train_epochs, train_loss=trains[:, :, 0], train_acc=100 * trains[:, :, 1],
        predictions=predictions, labels=store.test_labels, fixed=_fixed_streams(records),
        wall_time_s=np.array([r.wall_time_s for r in records], dtype=float),
        unit=_curve_unit(store.protocol_json))
