"""A user's training function, one call per seed, its result as a Record (`--train package.module:function`).

    result = function(seed, device, **protocol.knobs)      # seed: fastseed.seeds.Streams; device: torch.device

The result is a number (the headline metric), or a dict:

    metric            the headline number (required)
    name, unit        what it is: "accuracy", "%" (default "metric", no unit)
    higher_is_better  default True
    bounds            (low, high) that the metric cannot leave, when known (an accuracy in %: (0, 100));
                      `--ci-method bounded` needs them
    loss              a test loss
    predictions, labels   the predicted and the true class of every test example (integers; the same test
                      set for every seed): the report's per-example sections, seed ensembles (votes)
    correct           or: whether each test example was right (booleans), where classes do not apply
    logits            (examples × classes) scores, or `probabilities`: kept with `--keep logits` (soft
                      votes, calibration); predictions default to their argmax
    eval_curve        [(epoch, metric[, loss]), …]      the report's metric-per-epoch figure
    train_curve       [(epoch, loss[, metric]), …]      its training curves
    curves            {name: [(x, y), …]}              any other curves, kept in the record
    extra             {name: number}                   other metrics, summarised by the report
    step              the epoch the headline comes from (default: the last of eval_curve, else 0)

A NaN or infinite metric is a `diverged` seed. A result fastseed cannot read is one line naming the key
(FastseedError); an exception raised by the function stops the scan with the function's own traceback
(fastseed.UserCodeError), the seeds committed before it kept.
"""

from __future__ import annotations

import difflib
import math
import time
import traceback
from datetime import datetime, timezone

import numpy as np
import torch

from fastseed import FastseedError, UserCodeError
from fastseed.engine.provenance import provenance
from fastseed.store.record import Metric, Record, encode_logits

KEYS = ("metric", "name", "unit", "higher_is_better", "bounds", "loss", "predictions", "labels", "correct",
        "logits", "probabilities", "eval_curve", "train_curve", "curves", "extra", "step")
NO_PREDICTION = {np.uint8: 255, np.uint16: 65535}  # the store's filler for "no prediction"


def call(function, protocol, seed: int, device: torch.device):
    """`function(seed streams, device, **knobs)`; the streams it drew; an exception it raised as a
    UserCodeError whose traceback is the function's own frames (fastseed's call above them left out)."""
    streams = protocol.seed(seed)
    try:
        return function(streams, device, **protocol.knobs), streams
    except Exception as e:
        user = traceback.format_exception(type(e), e, e.__traceback__.tb_next)
        raise UserCodeError(f"{protocol.train} raised {type(e).__name__} for seed {seed}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
                            "".join(user)) from None


def array(value, what: str, where: str) -> np.ndarray:
    """A result's array (a list, a numpy array, a torch tensor on any device) as numpy."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu() if value.dtype in (torch.float16, torch.bfloat16) else value.detach().cpu()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as e:
        raise FastseedError(f"{where}: {what} is not an array: {e}") from None


def classes(value, what: str, where: str) -> np.ndarray:
    a = array(value, what, where)
    if a.ndim != 1 or a.size == 0 or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise FastseedError(f"{where}: {what} must be a non-empty 1-D array of integer classes, got "
                            f"{a.dtype} of shape {a.shape}")
    if a.min() < 0 or a.max() >= 65535:
        raise FastseedError(f"{where}: {what} must be classes in [0, 65535), got {a.min()}..{a.max()}")
    return a.astype(np.int64)


def curve(value, what: str, where: str, width: int) -> list:
    """[(x, a[, b]), …] as the store keeps curves: [[x, a, b], …], NaN where b is not given."""
    rows = []
    try:
        for row in value:
            row = [float(v) for v in row]
            if not 2 <= len(row) <= width or not math.isfinite(row[0]):
                raise ValueError
            rows.append([int(row[0]) if row[0].is_integer() else row[0]] + row[1:] + [math.nan] * (width - len(row)))
    except (TypeError, ValueError):
        raise FastseedError(f"{where}: {what} must be a list of (epoch, value{', value' if width > 2 else ''}) "
                            f"rows") from None
    return rows


def number(value, what: str, where: str) -> float:
    if hasattr(value, "item"):  # a numpy or torch scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FastseedError(f"{where}: {what} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def parse_result(value, where: str, keep_logits: bool) -> dict:
    """The record's fields from a function's result (see the module's docstring); one line for anything
    it cannot read, naming `where` (the function and the seed)."""
    if not isinstance(value, dict):
        value = {"metric": value}
    unknown = [k for k in value if k not in KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), KEYS, n=2)
        raise FastseedError(f"{where}: the result has an unknown key {unknown[0]!r}"
                            f"{f' (did you mean {close[0]}?)' if close else ''}; keys: {', '.join(KEYS)}")
    if "metric" not in value:
        raise FastseedError(f"{where}: the result has no metric (return a number, or a dict with metric=...)")
    metric = number(value["metric"], "metric", where)
    bounds = value.get("bounds")
    if bounds is not None:
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            low = high = math.nan
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise FastseedError(f"{where}: bounds must be (low, high), two finite numbers, low < high, got "
                                f"{value['bounds']!r}")
        bounds = (low, high)
    spec = Metric(name=str(value.get("name", "metric")), unit=str(value.get("unit", "")),
                  higher_is_better=bool(value.get("higher_is_better", True)), bounds=bounds, scale=1.0)
    ok = math.isfinite(metric)
    if ok and bounds is not None and not bounds[0] <= metric <= bounds[1]:
        raise FastseedError(f"{where}: metric {metric:g} is outside its bounds [{bounds[0]:g}, {bounds[1]:g}]")
    fields = {"status": "ok" if ok else "diverged", "test_acc": metric if ok else math.nan,
              "test_loss": number(value["loss"], "loss", where) if value.get("loss") is not None else math.nan}
    fields["eval_curve"] = curve(value.get("eval_curve", ()), "eval_curve", where, 3)
    fields["train_curve"] = curve(value.get("train_curve", ()), "train_curve", where, 3)
    fields["headline_epoch"] = (int(number(value["step"], "step", where)) if value.get("step") is not None
                                else int(fields["eval_curve"][-1][0]) if fields["eval_curve"] else 0)
    extra = {}
    for k, v in (value.get("extra") or {}).items():
        extra[str(k)] = number(v, f"extra[{k!r}]", where)
    curves = {str(k): curve(v, f"curves[{k!r}]", where, 2) for k, v in (value.get("curves") or {}).items()}
    fields.update(examples(value, where, keep_logits))
    fields["metrics"] = {"metric": spec.to_dict(), "extra": extra, "curves": curves,
                         "examples": fields.pop("examples")}
    return fields


def examples(value, where: str, keep_logits: bool) -> dict:
    """predictions, labels, logits and what the record holds per test example ("predictions" with the
    labels, "correct" right-or-wrong only, or None)."""
    logits = value.get("logits")
    if value.get("probabilities") is not None:
        if logits is not None:
            raise FastseedError(f"{where}: return logits or probabilities, not both")
        p = array(value["probabilities"], "probabilities", where).astype(np.float64)
        logits = np.log(np.clip(p, 1e-12, None))  # log-probabilities are logits: softmax gives p back
    if logits is not None:
        logits = array(logits, "logits", where).astype(np.float32)
        if logits.ndim != 2 or not len(logits):
            raise FastseedError(f"{where}: logits must be an (examples × classes) array, got shape {logits.shape}")
    if value.get("correct") is not None:
        if any(value.get(k) is not None for k in ("predictions", "labels")):
            raise FastseedError(f"{where}: return predictions with labels, or correct, not both")
        right = array(value["correct"], "correct", where)
        if right.ndim != 1 or not len(right) or right.dtype != np.bool_:
            raise FastseedError(f"{where}: correct must be a 1-D array of booleans (one per test example)")
        return {"predictions": right.astype(np.uint8).tobytes(), "labels": None, "logits": None,
                "examples": "correct"}
    if value.get("labels") is None:
        if value.get("predictions") is not None or logits is not None:
            raise FastseedError(f"{where}: predictions and logits need the labels (the true class of each "
                                f"test example)")
        return {"predictions": b"", "labels": None, "logits": None, "examples": None}
    labels = classes(value["labels"], "labels", where)
    if value.get("predictions") is None and logits is None:
        raise FastseedError(f"{where}: labels need the predictions (or logits) they score")
    predicted = (classes(value["predictions"], "predictions", where) if value.get("predictions") is not None
                 else logits.argmax(axis=1))
    for what, n in (("predictions", len(predicted)), ("logits", None if logits is None else len(logits))):
        if n is not None and n != len(labels):
            raise FastseedError(f"{where}: {what} hold {n} test examples, the labels {len(labels)}")
    dtype = np.uint16 if labels.max() >= 255 else np.uint8  # as Store.set_test_labels keeps the labels
    if predicted.max() >= NO_PREDICTION[dtype]:
        raise FastseedError(f"{where}: prediction {predicted.max()} is beyond the classes of the labels "
                            f"(0..{labels.max()})")
    return {"predictions": predicted.astype(dtype).tobytes(), "labels": labels.astype(np.uint16).tobytes(),
            "logits": encode_logits(logits) if keep_logits and logits is not None else None,
            "examples": "predictions"}


def train_function(protocol, function, seed: int, device: torch.device, keep_logits: bool = False) -> Record:
    """Seed `seed` of a training function's protocol, trained by one call, as its Record. `--fix` streams
    the function never drew are refused (they would fix nothing)."""
    from fastseed.engine.train import determinism
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    with determinism(protocol.deterministic):
        value, streams = call(function, protocol, seed, device)
    wall = time.perf_counter() - t0
    where = f"{protocol.train}, seed {seed}"
    never = sorted(set(protocol.fixed) - streams.used)
    if never:
        drew = ", ".join(sorted(streams.used)) or "none"
        raise FastseedError(f"--fix {','.join(never)}: {where} drew no {' or '.join(never)} stream (it drew "
                            f"{drew}): a fixed stream it never draws fixes nothing")
    fields = parse_result(value, where, keep_logits)
    fields["metrics"]["streams"] = sorted(streams.used)
    return Record(protocol=protocol.name, protocol_hash=protocol.hash, seed=seed, wall_time_s=wall,
                  pack={"strategy": "sequential", "size": 1, "slot": 0, "seeds": [seed]},
                  provenance=provenance(device, None, started=started, fixed=sorted(streams.fixed),
                                        fix_seed=streams.fix_seed, streams=sorted(streams.used)),
                  **fields)
