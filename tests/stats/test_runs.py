"""A store as arrays: percent, NaN for diverged runs and missing epochs, predictions stacked."""

import numpy as np
import pytest

from fastseed import FastseedError
from fastseed.stats.runs import load_runs
from fastseed.stats.synthetic import (balanced_labels, make_record, predictions_for, synthetic_store,
                                      write_store)
from fastseed.store import Store


def test_runs_hold_the_records_in_percent(tmp_path):
    path = synthetic_store(tmp_path / "s.sqlite", 20, diverged=2, epochs=6, fixed=("order",))
    with Store.open(path) as store:
        records, runs = store.records(), load_runs(store, "x")
    assert runs.label == "x" and len(runs) == 20 and runs.n_ok == 18
    assert list(runs.seeds) == [r.seed for r in records]
    ok = [r for r in records if r.status == "ok"]
    np.testing.assert_allclose(runs.ok_acc, [100 * r.test_acc for r in ok])
    assert np.isnan(runs.acc[~runs.ok]).all()
    assert list(runs.eval_epochs) == list(range(6))
    np.testing.assert_allclose(runs.eval_acc[0], [100 * a for _, a, _ in records[0].eval_curve])
    np.testing.assert_allclose(runs.train_loss[0], [l for _, l, _ in records[0].train_curve])
    assert np.isnan(runs.eval_acc[-1, -1])  # a diverged run's curve stops early
    assert runs.fixed == frozenset({"order"})
    assert runs.scorable and runs.predictions.shape == (20, 10_000)
    np.testing.assert_allclose(100 * (runs.predictions[runs.ok] == runs.labels).mean(axis=1), runs.ok_acc)


def test_ragged_curves_and_predictions(tmp_path):
    labels = balanced_labels(100)
    rng = np.random.default_rng(0)
    a = make_record(0, predictions_for(0.5, labels, rng), labels, epochs=3)
    b = make_record(1, predictions_for(0.5, labels, rng), labels, epochs=5)
    b.predictions = b.predictions[:50]                      # another test set size: not scorable
    b.provenance["fixed"] = ["init"]                         # runs that disagree on what was fixed
    path = write_store(tmp_path / "r.sqlite", [a, b], labels)
    with Store.open(path) as store:
        runs = load_runs(store, "r")
    assert list(runs.eval_epochs) == [0, 1, 2, 3, 4] and np.isnan(runs.eval_acc[0, 3:]).all()
    assert runs.predictions is None and not runs.scorable and runs.fixed is None


def test_an_empty_store_is_refused(tmp_path):
    path = write_store(tmp_path / "e.sqlite", [], balanced_labels(10))
    with Store.open(path) as store, pytest.raises(FastseedError, match="holds no records"):
        load_runs(store, "e")
