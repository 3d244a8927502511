"""A record and its row: logits round-trip, malformed rows are named, outcomes compare NaN-safely."""

import dataclasses
import math
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from fastseed.store.record import MalformedRow, Record, decode_logits, encode_logits

sys.path.insert(0, str(Path(__file__).parent))
from test_store import assert_same, make_record, new_store  # noqa: E402


def test_logits_round_trip_as_float16_and_compress():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (10_000, 10)).astype(np.float32)
    blob = encode_logits(logits)
    back = decode_logits(blob, 10_000)
    assert back.dtype == np.float16 and back.shape == (10_000, 10)
    np.testing.assert_array_equal(back, logits.astype(np.float16))  # float16 exactly, nothing else lost
    assert len(blob) < logits.astype(np.float16).nbytes
    assert decode_logits(encode_logits(logits[:3, :2].T), 2).shape == (2, 3)  # any layout in, C order out


def test_a_record_with_logits_round_trips_through_the_store(tmp_path):
    logits = np.random.default_rng(1).normal(size=(10_000, 10))
    with_logits = dataclasses.replace(make_record(4), logits=encode_logits(logits))
    with new_store(tmp_path / "s.sqlite") as store:
        store.add(with_logits)
        store.add(make_record(5))  # a record without logits is as good as before
        four, five = store.records()
    assert_same(four, with_logits)
    assert five.logits is None
    np.testing.assert_array_equal(decode_logits(four.logits, 10_000), logits.astype(np.float16))


def row_of(record: Record, **changes) -> sqlite3.Row:
    """`record`'s row as SQLite hands it back, with some columns replaced by raw values."""
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    row = {**record.to_row(), **changes}
    names = list(row)
    return conn.execute(f"SELECT {', '.join('?' + ' AS ' + n for n in names)}",
                        [row[n] for n in names]).fetchone()


def test_a_row_decodes_into_the_record_it_came_from():
    for record in (make_record(3), make_record(7, status="diverged")):
        assert_same(Record.from_row(row_of(record)), record)


@pytest.mark.parametrize("column, value, reason", [
    ("eval_curve", "[[0, 0.5, 1.2]", "eval_curve is not valid JSON"),
    ("pack", "[1, 2]", "pack is a JSON list, not a dict"),
    ("test_acc", "high", "test_acc is str 'high', not a number"),
    ("seed", 2.5, "seed is float 2.5, not an integer"),
    ("predictions", "0123", "predictions is str '0123', not a blob"),
    ("status", None, "status is NoneType None, not text"),
    ("wall_time_s", None, "wall_time_s is NoneType None, not a number"),
])
def test_a_malformed_row_names_its_column_and_why(column, value, reason):
    with pytest.raises(MalformedRow) as info:
        Record.from_row(row_of(make_record(3), **{column: value}))
    assert str(info.value).startswith(reason) and "\n" not in str(info.value)


def test_outcome_differences_ignore_time_and_provenance_and_treat_nan_as_equal():
    a = make_record(1, status="diverged")
    a.train_curve[-1][1] = math.nan  # a loss that blew up, inside a curve
    b = Record.from_row(row_of(a))
    b.wall_time_s, b.provenance = 1e6, {"host": "elsewhere"}
    assert a.outcome_differences(b) == []
    c = dataclasses.replace(b, test_loss=0.0, pack={**a.pack, "slot": 3},
                            logits=encode_logits(np.zeros((2, 2))))
    assert a.outcome_differences(c) == ["test_loss", "logits", "pack"]


def test_logits_go_to_parquet_as_binary_and_stay_out_of_csv(tmp_path):
    import pandas as pd
    blob = encode_logits(np.eye(10_000, 10))
    with new_store(tmp_path / "s.sqlite") as store:
        store.add(dataclasses.replace(make_record(0), logits=blob))
        store.add(make_record(1))
        store.export_parquet(tmp_path / "s.parquet")
        store.export_csv(tmp_path / "s.csv")
    frame = pd.read_parquet(tmp_path / "s.parquet")
    assert frame["logits"].iloc[0] == blob and frame["logits"].iloc[1] is None
    assert "logits" not in pd.read_csv(tmp_path / "s.csv")
