"""A scan as the tests run it: the smoke preset's command line, its small variant for the tests whose
point is the scan around the training (the store, signals, workers), what a reader sees in a store,
and what every finished seed must hold."""

import sqlite3
import sys
from pathlib import Path

import torch

from fastseed.recipe.overrides import resolve_protocol
from fastseed.recipe.presets import get_preset
from fastseed.store import Store

SMOKE = get_preset("smoke")
# smoke on a fifth of its training images and a fifth of its test images: its code path in ~2 s a seed
# on one core instead of ~12 (its four evaluations of all 10,000 test images are half of smoke's time),
# still well above chance
SMALL_KNOBS = ["train_size=1000", "test_size=2000"]
SMALL_SET = [arg for knob in SMALL_KNOBS for arg in ("--set", knob)]
SMALL = resolve_protocol("smoke", SMALL_KNOBS)
CHANCE = 0.10  # ten balanced classes
STOP_TIMEOUT_S = 120  # from a signal to the exit: at most the seeds in flight, then the exit


def scan_argv(data_dir, out, *extra) -> list:
    """`python -m fastseed.scan` of the smoke preset on the CPU."""
    return [sys.executable, "-m", "fastseed.scan", "--preset", "smoke", "--device", "cpu",
            "--data-dir", str(data_dir), "--out", str(out), *map(str, extra)]


def committed(out: Path) -> list:
    """The records a reader sees in the store now (none while it does not exist yet)."""
    if not out.exists():
        return []
    with Store.open(out) as store:
        return store.records()


def claims(out: Path) -> dict[int, int]:
    """seed → pid of the worker training it, as the store's claims say now (none while it does not
    exist yet)."""
    if not out.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{out}?mode=ro", uri=True) as db:
            return dict(db.execute("SELECT seed, pid FROM claims").fetchall())
    except sqlite3.OperationalError:  # the store is being created
        return {}


def assert_complete(record, seed: int, protocol=SMALL) -> None:
    """A finished smoke seed: every field the spec promises is there and plausible."""
    assert record.seed == seed
    assert record.protocol == protocol.name and record.protocol_hash == protocol.hash
    assert record.status == "ok"
    assert record.test_acc > CHANCE + 0.05, f"seed {seed}: {record.test_acc:.4f} is not well above chance"
    assert len(record.predictions) == protocol.test_size
    assert set(record.predictions_array().tolist()) <= set(range(10))
    assert [e for e, _, _ in record.eval_curve] == [0, 1, 2, 3]
    assert record.headline_epoch == 3
    assert record.test_acc == record.eval_curve[-1][1]  # headline "last": the epoch-3 evaluation
    assert [e for e, _, _ in record.train_curve] == [0, 1, 2, 3]
    assert record.provenance["torch"] == torch.__version__
    assert record.provenance["device_type"] == "cpu" and record.provenance["device"]
