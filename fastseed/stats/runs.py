"""The records of one store as arrays: what every statistic and figure of a report reads.

Accuracies are converted to percent here, once (the store keeps fractions), so every table and figure
downstream speaks the paper's unit; a training function's records (`--train`) hold their own metric, as
it returned it (`Runs.metric`: name, unit, direction, bounds), and their extra metrics (`Runs.extra`). Curves become (runs × epochs) matrices with NaN where a run has no
value (a diverged run stops early), so bands are plain nan-aware reductions over axis 0.

The rows are streamed (`Store.iter_columns`), not built into Records: 10^5 seeds are 1 GB of uint8
predictions, which go straight into one preallocated matrix, and the logits (200 KB a seed) stay on
disk until a statistic asks for some runs' (`Runs.logits`). A row that cannot be decoded is skipped
and listed in `Runs.skipped_rows`, so one bad row never costs the report.
"""

from __future__ import annotations

import json
import math
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from fastseed import FastseedError
from fastseed.store import Store
from fastseed.store.record import ACCURACY, Metric, decode_logits

COLUMNS = ("seed", "status", "test_acc", "test_loss", "headline_epoch", "wall_time_s", "eval_curve",
           "train_curve", "provenance", "metrics", "predictions")


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
    loss_name: str = "loss"       # what the training loss is, e.g. "CE + 2·LSCE(ε = 0.2)"
    dataset: str = ""             # "cifar10", "imagenet", or "" when the protocol does not say
    skipped_rows: list = field(default_factory=list)  # [(seed or None, reason)]: rows left out
    # run indices → (index, (images × classes) logits) for those of them that kept logits, in index
    # order; None when nothing can hold logits. Never all at once: 10^5 runs' logits are 20 GB.
    logits: Callable[[np.ndarray], Iterator[tuple[int, np.ndarray]]] | None = None
    metric: Metric = ACCURACY     # what `acc` (the headline) is; `acc`, `eval_acc`, `train_acc` are in its unit
    extra: dict = field(default_factory=dict)  # name → (N,) a training function's extra metrics, NaN if absent
    # what `predictions` hold per test example: "predictions" (classes, scored against `labels`) or
    # "correct" (1 right, 0 wrong; `labels` are then all 1: the votes of ensembles mean nothing)
    examples: str = "predictions"
    metrics_mixed: bool = False   # the records name more than one metric (the first one's is used)

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
    def ok_rows(self) -> np.ndarray:
        """Row indices of the finished runs: statistics take rows of `predictions` by index, in
        chunks, rather than a copy of the finished runs' rows (1 GB at 10^5 seeds)."""
        return np.flatnonzero(self.ok)

    @property
    def scorable(self) -> bool:
        """Predictions can be scored against the truth (needed by transfer and ensembles)."""
        return (self.predictions is not None and self.labels is not None
                and self.predictions.shape[1] == len(self.labels))


def _curve_matrix(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, runs × epochs × 2) from (runs × rows × 3) [epoch, a, b] pieces (a batch of runs
    with one schedule, or a single run), NaN where a run has no value."""
    if not pieces:
        return np.zeros(0, np.int64), np.zeros((0, 0, 2))
    first = pieces[0]
    if all(p.shape[1] == first.shape[1] for p in pieces) and first.shape[1]:  # the usual case
        values = np.concatenate(pieces)
        if (values[:, :, 0] == first[:1, :, 0]).all():
            return first[0, :, 0].astype(np.int64), values[:, :, 1:]
    epochs = np.unique(np.concatenate([p[:, :, 0].ravel() for p in pieces]).astype(np.int64))
    out = np.full((sum(len(p) for p in pieces), len(epochs), 2), np.nan)
    row = 0
    for p in pieces:  # each run's rows go to their epochs' columns
        where = np.searchsorted(epochs, p[:, :, 0].astype(np.int64))
        out[np.arange(row, row + len(p))[:, None], where] = p[:, :, 1:3]
        row += len(p)
    return epochs, out


def _curves(texts) -> np.ndarray:
    """Stored curves, [[epoch, a, b], ...] each (JSON null = NaN), of runs with one schedule as a
    (runs × rows × 3) float array: one parse for a whole batch. Curves of one schedule are read as
    a plain list of numbers once their brackets add up (json.loads takes 8 s for 10^5 seeds' curves,
    this a third of it); anything else goes through json.loads, which refuses what is malformed."""
    joined = ",".join(texts)
    rows = texts[0].count("[") - 1 if texts else 0
    if joined.count("[") == joined.count("]") == len(texts) * (rows + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (and stops) where a number does not parse
            try:
                values = np.fromstring(joined.replace("[", " ").replace("]", " ").replace("null", "nan"),
                                       sep=",")
            except (ValueError, DeprecationWarning):
                values = None
        if values is not None and values.size == len(texts) * rows * 3:
            return _checked(values.reshape(len(texts), rows, 3))
    c = np.array(json.loads("[" + joined + "]"), dtype=float)
    if c.ndim == 2 and c.shape[1] == 0:  # empty curves
        c = c.reshape(len(c), 0, 3)
    if c.ndim != 3 or c.shape[2] != 3:
        raise ValueError("a curve is not a list of [epoch, a, b] rows")
    return _checked(c)


def _checked(c: np.ndarray) -> np.ndarray:
    if not np.isfinite(c[:, :, 0]).all():
        raise ValueError("a curve row has no epoch")
    return c


def _fixed(provenance_text) -> frozenset:
    provenance = json.loads(provenance_text)
    if not isinstance(provenance, dict):
        raise ValueError("provenance is not a JSON object")
    return frozenset(provenance.get("fixed") or ())


def _protocol(protocol_json: str) -> dict:
    try:
        spec = json.loads(protocol_json)
    except ValueError:  # not JSON: a store written by hand or another tool
        return {}
    return spec if isinstance(spec, dict) else {}


def _curve_unit(spec: dict) -> str:
    """ImageNet fine-tunes index their curves by global step; everything else by epoch."""
    return "step" if spec.get("dataset") == "imagenet" else "epoch"


def _weight(w: float) -> str:
    return "" if w == 1 else f"{w:g}·"


def loss_name(spec: dict) -> str:
    """What the training curve's loss is, from the protocol's knobs: "CE + 2·LSCE(ε = 0.2)" for
    Picard's recipe, "CE" for the ResNet-18 study, each phase's for an ImageNet fine-tune."""
    if "phases" in spec:
        parts = [f"{p.get('name', 'phase')}: " + loss_name({"lsce_weight": p.get("lsce_weight", 0),
                                                             "lsce_eps": p.get("lsce_eps", 0)})
                 for p in spec["phases"] if isinstance(p, dict)]
        return "; ".join(parts) or "loss"
    ce, lsce, eps = spec.get("ce_weight", 1.0), spec.get("lsce_weight", 0.0), spec.get("lsce_eps", 0.0)
    terms = ([f"{_weight(ce)}CE"] if ce else []) + ([f"{_weight(lsce)}LSCE(ε = {eps:g})"] if lsce else [])
    reduction = ", summed over the batch" if spec.get("loss_reduction") == "sum" else ""
    return (" + ".join(terms) or "loss") + reduction


class _Matrix:
    """Rows of equal length appended into one preallocated (capacity × width) array, grown by half
    when a writer adds records while the store is read; None once a row of another length comes."""

    def __init__(self, capacity: int, dtype):
        self.capacity, self.dtype, self.data, self.n = max(capacity, 1), np.dtype(dtype), None, 0
        self.ragged = False

    def add_all(self, blobs: list) -> None:
        """Rows of one length as one copy; anything else row by row."""
        if self.data is not None and self.n + len(blobs) <= len(self.data) and all(
                isinstance(b, bytes) and len(b) == self.data.shape[1] * self.dtype.itemsize for b in blobs):
            self.data[self.n: self.n + len(blobs)] = np.frombuffer(b"".join(blobs), self.dtype).reshape(
                len(blobs), -1)
            self.n += len(blobs)
            return
        for blob in blobs:
            self.add(blob)

    def add(self, blob: bytes) -> None:
        row = np.frombuffer(blob, dtype=self.dtype)
        if self.data is None and not self.ragged:
            self.data = np.empty((self.capacity, len(row)), dtype=self.dtype)
        if self.ragged or len(row) != self.data.shape[1] or len(row) == 0:
            self.ragged, self.data = True, None
            return
        if self.n == len(self.data):
            grown = np.empty((len(self.data) + len(self.data) // 2 + 1, self.data.shape[1]), self.dtype)
            grown[: self.n] = self.data
            self.data = grown
        self.data[self.n] = row
        self.n += 1

    def result(self) -> np.ndarray | None:
        return None if self.data is None else self.data[: self.n]


def _scalars(row, itemsize: int) -> tuple:
    """(seed, ok, acc, loss, headline epoch, wall time) of a row, or TypeError/ValueError."""
    seed, status, acc, loss, epoch, wall, *_, predictions = row
    if not isinstance(seed, int) or not isinstance(status, str) or not isinstance(epoch, int):
        raise TypeError("seed, status or headline_epoch has the wrong type")
    if not isinstance(predictions, bytes) or len(predictions) % itemsize:
        raise TypeError("predictions are not whole labels")
    acc = math.nan if acc is None else float(acc)
    loss = math.nan if loss is None else float(loss)
    return seed, status == "ok" and math.isfinite(acc), acc, loss, epoch, float(wall)


def _metrics(text) -> dict | None:
    """A record's metrics column (a training function's metric, extras, …), None for a built-in recipe's."""
    if text is None:
        return None
    metrics = json.loads(text)
    if not isinstance(metrics, dict):
        raise ValueError("metrics is not a JSON object")
    return metrics


def _decode(rows, itemsize: int) -> tuple:
    """(scalars per row, eval curves, train curves, fixed streams per row, metrics per row) of some rows,
    or ValueError/TypeError naming what is wrong with one of them."""
    return ([_scalars(r, itemsize) for r in rows], _curves([r[6] for r in rows]),
            _curves([r[7] for r in rows]), [_fixed(r[8]) for r in rows], [_metrics(r[9]) for r in rows])


def load_runs(store: Store, label: str) -> Runs:
    """All records of `store` as a Runs; refuses a store without records."""
    dtype = np.dtype(store.label_dtype)
    matrix = _Matrix(len(store), dtype)
    scalars, evals, trains, fixed, metrics, skipped = [], [], [], [], [], []
    for batch in store.iter_columns(COLUMNS):
        try:  # the whole batch at once; a run that ends early, or a bad row, sends it row by row
            decoded = [(batch, _decode(batch, dtype.itemsize))]
        except (ValueError, TypeError):
            decoded = []
            for row in batch:
                try:
                    decoded.append(([row], _decode([row], dtype.itemsize)))
                except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
                    skipped.append((row[0] if isinstance(row[0], int) else None, str(e).split("\n")[0]))
        for rows, (values, e, t, f, m) in decoded:
            scalars += values
            evals.append(e)
            trains.append(t)
            fixed += f
            metrics += m
            matrix.add_all([row[-1] for row in rows])
    skipped += list(getattr(store, "skipped_rows", []))  # rows the store itself could not decode
    if not scalars:
        why = f" ({len(skipped)} malformed row(s) skipped)" if skipped else ""
        raise FastseedError(f"{store.path} holds no records{why} (protocol {store.protocol}); "
                            f"run a scan into it first")
    seeds, ok, acc, loss, epochs, wall = zip(*scalars)
    ok = np.array(ok)
    eval_epochs, eval_values = _curve_matrix(evals)      # [acc, loss]
    train_epochs, train_values = _curve_matrix(trains)   # [loss, acc]
    spec = _protocol(store.protocol_json)
    predictions = matrix.result()
    seeds = np.array(seeds, dtype=np.int64)
    n_images = predictions.shape[1] if predictions is not None else 0
    metric, mixed, extra, examples, labels = _user_metrics(metrics, n_images, store.test_labels)
    if examples is None:  # a training function that returned nothing per example: nothing to score
        predictions, labels = None, None
    scale = metric.scale
    return Runs(
        label=label, path=Path(store.path), protocol=store.protocol, protocol_hash=store.protocol_hash,
        seeds=seeds, ok=ok, acc=np.where(ok, scale * np.array(acc, dtype=float), np.nan),
        loss=np.array(loss, dtype=float), headline_epoch=np.array(epochs, dtype=np.int64),
        eval_epochs=eval_epochs, eval_acc=scale * eval_values[:, :, 0], eval_loss=eval_values[:, :, 1],
        train_epochs=train_epochs, train_loss=train_values[:, :, 0], train_acc=scale * train_values[:, :, 1],
        predictions=predictions, labels=labels,
        fixed=fixed[0] if len(set(fixed)) == 1 else None,
        wall_time_s=np.array(wall, dtype=float), unit=_curve_unit(spec), loss_name=loss_name(spec),
        dataset=str(spec.get("dataset", "")), skipped_rows=skipped,
        logits=StoredLogits(Path(store.path), seeds, n_images) if n_images else None,
        metric=metric, extra=extra, examples=examples, metrics_mixed=mixed)


def _user_metrics(metrics: list, n_images: int, labels) -> tuple:
    """(metric, whether the records name more than one, extra metrics as arrays, what `predictions`
    hold, the labels to score them with) from the records' metrics columns (None: a built-in recipe's
    record: test accuracy, classes against the store's labels)."""
    named = [m for m in metrics if m is not None]
    if not named:
        return ACCURACY, False, {}, "predictions", labels
    specs = {json.dumps(m.get("metric"), sort_keys=True) for m in named}
    names = sorted({str(k) for m in named for k in (m.get("extra") or {})})
    extra = {k: np.array([float((m or {}).get("extra", {}).get(k, np.nan)) for m in metrics]) for k in names}
    kinds = {m.get("examples") for m in named}
    examples = kinds.pop() if len(kinds) == 1 else None  # records that disagree: no per-example sections
    if examples == "correct":
        labels = np.ones(n_images, dtype=np.uint8)  # predictions hold 1 for right: scored against all-ones
    return Metric.of(named[0]), len(specs) > 1, extra, examples, labels


@dataclass(frozen=True)
class StoredLogits:
    """Some runs' logits, read from the store when asked (it is opened again, read-only, for each
    request): (index, logits) for the requested run indices whose records kept logits. A blob that
    does not decode is left out like a missing one."""
    path: Path
    seeds: np.ndarray
    n_images: int

    def __call__(self, rows) -> Iterator[tuple[int, np.ndarray]]:
        rows = np.asarray(rows, dtype=np.int64)
        index = {int(self.seeds[i]): int(i) for i in rows}
        with Store.open(self.path) as store:
            for batch in store.iter_columns(("seed", "logits"), seeds=list(index), batch=16):
                for seed, blob in batch:
                    if blob is None:
                        continue
                    try:
                        logits = decode_logits(bytes(blob), self.n_images)
                    except (ValueError, zlib.error):
                        continue
                    yield index[seed], logits
