"""One finished seed as a Python object, and its row in the store: encode, decode, compare.

Decoding is strict: a row written by hand or by another tool (text where a number belongs, JSON that
does not parse, a curve that is not a list) raises `MalformedRow` with the column and the reason, so
a reader can skip that row and say why instead of crashing or guessing.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field, fields

import numpy as np

JSON_COLUMNS = ("eval_curve", "train_curve", "pack", "provenance")  # metrics too, when not NULL
SCALAR_COLUMNS = ("protocol", "protocol_hash", "seed", "status", "test_acc", "test_loss",
                  "headline_epoch", "wall_time_s", "finished_at")
# What a seed's training produced. Wall time, timestamps and provenance (host, versions) describe the
# run, not its result: two stores holding the same seed are in agreement when these fields are equal.
OUTCOME_FIELDS = ("status", "test_acc", "test_loss", "headline_epoch", "eval_curve", "train_curve",
                  "predictions", "logits", "pack", "metrics")


@dataclass(frozen=True)
class Metric:
    """What a record's headline number is: its name, unit, direction, the bounds it cannot leave (None:
    unbounded), and `scale`, the factor from the stored value to the one shown. Built-in recipes store
    test accuracy as a fraction and show percent (ACCURACY); a user's training function names its own
    metric in its result and is shown as it returned it (scale 1)."""
    name: str = "test accuracy"
    unit: str = "%"
    higher_is_better: bool = True
    bounds: tuple[float, float] | None = (0.0, 100.0)
    scale: float = 100.0

    @property
    def label(self) -> str:
        """The metric as an axis or a column says it: "test accuracy (%)", "log loss"."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def points(self) -> str:
        """The unit of a difference of two values: percentage points for a percentage."""
        return "pp" if self.unit == "%" else self.unit

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "higher_is_better": self.higher_is_better,
                "bounds": None if self.bounds is None else list(self.bounds)}

    @classmethod
    def from_dict(cls, d: dict) -> "Metric":
        """The metric a user record names (records.metrics["metric"]), shown as returned."""
        bounds = d.get("bounds")
        return cls(str(d.get("name", "metric")), str(d.get("unit", "")), bool(d.get("higher_is_better", True)),
                   None if bounds is None else (float(bounds[0]), float(bounds[1])), 1.0)

    @classmethod
    def of(cls, metrics: dict | None) -> "Metric":
        """The metric of a record's `metrics` column (None: a built-in recipe's test accuracy)."""
        if isinstance(metrics, dict) and isinstance(metrics.get("metric"), dict):
            return cls.from_dict(metrics["metric"])
        return ACCURACY


ACCURACY = Metric()


@dataclass
class Record:
    """Everything one finished seed leaves behind: metrics, curves, predictions, how it was run."""
    protocol: str            # preset name, e.g. "picard-short"
    protocol_hash: str       # hex sha256 of the protocol's canonical JSON
    seed: int
    status: str              # "ok" or "diverged"
    test_acc: float          # headline test accuracy in [0, 1]; NaN allowed when diverged
    test_loss: float
    headline_epoch: int      # 0-based epoch the headline number comes from
    eval_curve: list         # [[epoch, acc, loss], ...]
    train_curve: list        # [[epoch, mean_train_loss, train_acc], ...]
    predictions: bytes       # predicted class per test image, in the store's label_dtype
    wall_time_s: float
    pack: dict               # {"strategy", "size", "slot", "seeds"}: how the seed shared the GPU
    provenance: dict         # versions, commit, device, dtype, started_at, finished_at, ...
    logits: bytes | None = None  # encode_logits(images × classes): soft votes need them; optional
    # A user function's record (--train): {"metric": Metric.to_dict(), "extra": {name: number},
    # "examples": "predictions" | "correct" | None, "curves": {name: [[x, y], ...]}, "streams": [...]};
    # None for a built-in recipe's (its headline is test accuracy, ACCURACY)
    metrics: dict | None = None
    # The test labels `predictions` refer to, as uint16 bytes, on its way to the store, which keeps them
    # once (its test_labels) and checks each record's against them: not a column, so None once read back
    labels: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def metric(self) -> Metric:
        return Metric.of(self.metrics)

    def predictions_array(self, dtype=np.uint8) -> np.ndarray:
        """Predicted classes; `dtype` is the store's `label_dtype` (uint16 for ImageNet)."""
        return np.frombuffer(self.predictions, dtype=dtype)

    def to_row(self) -> dict:
        row = asdict(self)
        del row["labels"]  # the store keeps them once (Store.add)
        for col in JSON_COLUMNS:
            row[col] = json.dumps(row[col])
        row["metrics"] = None if self.metrics is None else json.dumps(self.metrics)
        row["predictions"] = bytes(self.predictions)
        row["logits"] = None if self.logits is None else bytes(self.logits)
        row["finished_at"] = finished_at(self)
        return row

    @classmethod
    def from_row(cls, row) -> "Record":
        """The record of a stored row; `MalformedRow` (column and reason) if a value has the wrong type."""
        values = {}
        for f in fields(cls):
            if f.name == "labels":
                continue
            value = row[f.name] if f.name in row.keys() else None  # older schemas: no logits, no metrics
            values[f.name] = _decode(f.name, value)
        return cls(**values)

    def outcome_differences(self, other: "Record") -> list[str]:
        """The OUTCOME_FIELDS in which `other` differs (NaN equals NaN; curves compared as JSON)."""
        return [name for name in OUTCOME_FIELDS
                if _comparable(getattr(self, name)) != _comparable(getattr(other, name))]


class MalformedRow(ValueError):
    """A stored row that does not decode into a Record; the message names the column."""


ROW_COLUMNS = tuple(f.name for f in fields(Record) if f.name != "labels") + ("finished_at",)
_TEXT = ("protocol", "protocol_hash", "status")
_INTEGER = ("seed", "headline_epoch")
_REAL = ("test_acc", "test_loss", "wall_time_s")
_JSON_TYPES = {"eval_curve": list, "train_curve": list, "pack": dict, "provenance": dict, "metrics": dict}


def _decode(name: str, value):
    """One column's value, checked: SQLite keeps whatever type was written, whatever the column says."""
    if name in _INTEGER:
        if type(value) is not int:
            raise MalformedRow(f"{name} is {_shown(value)}, not an integer")
        return value
    if name in _REAL:
        if value is None and name != "wall_time_s":  # SQLite stores a NaN REAL as NULL
            return math.nan
        if type(value) not in (int, float):
            raise MalformedRow(f"{name} is {_shown(value)}, not a number")
        return float(value)
    if name in _TEXT:
        if type(value) is not str:
            raise MalformedRow(f"{name} is {_shown(value)}, not text")
        return value
    if name == "metrics" and value is None:  # a built-in recipe's record (NULL)
        return None
    if name in _JSON_TYPES:
        if type(value) is not str:
            raise MalformedRow(f"{name} is {_shown(value)}, not JSON text")
        try:
            decoded = json.loads(value)
        except ValueError as e:
            raise MalformedRow(f"{name} is not valid JSON ({e})") from None
        if not isinstance(decoded, _JSON_TYPES[name]):
            raise MalformedRow(f"{name} is a JSON {type(decoded).__name__}, "
                               f"not a {_JSON_TYPES[name].__name__}")
        return decoded
    if name == "predictions" or (name == "logits" and value is not None):
        if type(value) is not bytes:
            raise MalformedRow(f"{name} is {_shown(value)}, not a blob")
        return value
    return value


def _shown(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _comparable(value):
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (list, dict)):  # NaN inside a curve: json writes it as NaN on both sides
        return json.dumps(value, sort_keys=True)
    return value


def finished_at(record: Record) -> str | None:
    """Copied out of provenance into its own column so readers can sort and filter by it."""
    finished = record.provenance.get("finished_at")
    return None if finished is None else str(finished)


def encode_logits(logits) -> bytes:
    """(images × classes) logits as zlib-compressed little-endian float16: 10,000 × 10 CIFAR logits
    take ~200 kB raw, and float16's 3 significant digits are plenty to soft-vote or calibrate."""
    return zlib.compress(np.ascontiguousarray(logits, dtype="<f2").tobytes())


def decode_logits(blob: bytes, images: int) -> np.ndarray:
    """The (images × classes) float16 array `encode_logits` stored."""
    return np.frombuffer(zlib.decompress(blob), dtype="<f2").reshape(images, -1)
