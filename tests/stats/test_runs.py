"""A store as arrays: percent, NaN for diverged runs and missing epochs, predictions stacked;
malformed rows skipped and listed; logits read on demand."""

import json
import sqlite3
import zlib

import numpy as np
import pytest

from fastseed import FastseedError
from fastseed.store.record import decode_logits
from fastseed.stats.runs import load_runs, loss_name
from fastseed.stats.synthetic import (balanced_labels, logits_for, make_record, predictions_for,
                                      synthetic_store, write_logits, write_store)
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


def test_ragged_curves_and_a_predictions_blob_of_another_length(tmp_path):
    labels = balanced_labels(100)
    rng = np.random.default_rng(0)
    a = make_record(0, predictions_for(0.5, labels, rng), labels, epochs=3)
    b = make_record(1, predictions_for(0.5, labels, rng), labels, epochs=5)
    b.provenance["fixed"] = ["init"]                         # runs that disagree on what was fixed
    path = write_store(tmp_path / "r.sqlite", [a, b], labels)
    with Store.open(path) as store:
        runs = load_runs(store, "r")
    assert list(runs.eval_epochs) == [0, 1, 2, 3, 4] and np.isnan(runs.eval_acc[0, 3:]).all()
    assert not np.isnan(runs.eval_acc[1]).any() and runs.fixed is None
    assert runs.scorable and runs.predictions.shape == (2, 100) and runs.skipped_rows == []

    c = make_record(1, predictions_for(0.5, labels, rng), labels, epochs=5)
    c.predictions = c.predictions[:50]                      # not one prediction per test image: malformed
    path = write_store(tmp_path / "c.sqlite", [a, c], labels)
    with Store.open(path) as store:
        runs = load_runs(store, "c")
    assert list(runs.seeds) == [0] and [s for s, _ in runs.skipped_rows] == [1]
    assert runs.scorable and runs.predictions.shape == (1, 100) and list(runs.eval_epochs) == [0, 1, 2]


def test_an_empty_store_is_refused(tmp_path):
    path = write_store(tmp_path / "e.sqlite", [], balanced_labels(10))
    with Store.open(path) as store, pytest.raises(FastseedError, match="holds no records"):
        load_runs(store, "e")


def test_a_malformed_row_is_skipped_and_listed(tmp_path, monkeypatch):
    path = synthetic_store(tmp_path / "m.sqlite", 6, n_images=50, epochs=3)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE records SET eval_curve = '[[0, 0.5' WHERE seed = 2")   # invalid JSON
        conn.execute("UPDATE records SET predictions = 'abc' WHERE seed = 4")       # text, not bytes
    conn.close()
    monkeypatch.setattr(Store, "__len__", lambda self: 1)  # as if a writer added rows meanwhile
    with Store.open(path) as store:
        runs = load_runs(store, "m")
    assert list(runs.seeds) == [0, 1, 3, 5] and runs.predictions.shape == (4, 50)
    assert [s for s, _ in runs.skipped_rows] == [2, 4]
    assert all(isinstance(why, str) and why for _, why in runs.skipped_rows)
    conn = sqlite3.connect(path)
    want = [np.frombuffer(b, np.uint8) for b, in conn.execute(
        "SELECT predictions FROM records WHERE seed IN (0, 1, 3, 5) ORDER BY seed")]
    conn.close()
    np.testing.assert_array_equal(runs.predictions, np.stack(want))


def test_rows_the_store_skipped_are_listed_too(tmp_path):
    path = synthetic_store(tmp_path / "s.sqlite", 3, n_images=20, epochs=2)
    with Store.open(path) as store:
        store.skipped_rows = [(7, "invalid JSON in train_curve")]  # what Store.records() reports
        runs = load_runs(store, "s")
    assert runs.skipped_rows == [(7, "invalid JSON in train_curve")]


def test_logits_are_read_for_the_runs_asked_only(tmp_path):
    path = synthetic_store(tmp_path / "l.sqlite", 5, n_images=30, epochs=2)
    with Store.open(path) as store:
        runs = load_runs(store, "l")
    assert list(runs.logits([0, 1, 2, 3, 4])) == []  # no logits column yet: nothing, no error
    rng = np.random.default_rng(0)
    kept = {s: logits_for(runs.predictions[s], rng) for s in (1, 3, 4)}
    write_logits(path, kept)
    got = list(runs.logits(np.array([0, 1, 3])))
    assert [i for i, _ in got] == [1, 3]
    for i, logits in got:
        assert logits.dtype == np.float16 and np.array_equal(logits, kept[i])
        assert np.array_equal(logits.argmax(axis=1), runs.predictions[i])
    with pytest.raises(ValueError):
        decode_logits(zlib.compress(np.zeros(7, "<f2").tobytes()), 3)


def test_the_loss_is_named_from_the_protocol():
    from fastseed.recipe.presets import get_preset
    name = lambda preset: loss_name(json.loads(get_preset(preset).to_json()))
    assert name("picard-short") == "CE + 2·LSCE(ε = 0.2)"
    assert name("resnet18-exp1") == "CE"
    assert name("imagenet-rn50") == "head: CE + LSCE(ε = 0.1); full: CE"
    assert loss_name({}) == "CE"
