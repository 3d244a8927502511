"""The results store: records round-trip exactly, commits are durable, foreign files are refused untouched."""

import dataclasses
import hashlib
import json
import math
import os
import signal
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastseed import FastseedError
from fastseed.store import Store
from fastseed.store.record import Record
from processes import Process

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_JSON = json.dumps({"model": "resnet9", "epochs": 10}, sort_keys=True)
PROTOCOL_HASH = hashlib.sha256(PROTOCOL_JSON.encode()).hexdigest()
OTHER_JSON = json.dumps({"model": "resnet18", "epochs": 200}, sort_keys=True)
OTHER_HASH = hashlib.sha256(OTHER_JSON.encode()).hexdigest()


def make_record(seed: int, status: str = "ok", protocol_hash: str = PROTOCOL_HASH) -> Record:
    """A deterministic record for `seed`, so a reader can check every field it gets back."""
    rng = np.random.default_rng(seed)
    acc = math.nan if status == "diverged" else round(0.9 + 0.01 * rng.random(), 6)
    return Record(
        protocol="picard-short", protocol_hash=protocol_hash, seed=seed, status=status,
        test_acc=acc, test_loss=0.3 + seed / 1000, headline_epoch=9,
        eval_curve=[[e, 0.5 + e / 20, 1.5 - e / 10] for e in range(10)],
        train_curve=[[e, 1.6 - e / 10, 0.4 + e / 20] for e in range(10)],
        predictions=rng.integers(0, 10, 10_000, dtype=np.uint8).tobytes(),
        wall_time_s=3.25 + seed,
        pack={"strategy": "sequential", "size": 4, "slot": seed % 4, "seeds": [3, 7, 9, 12]},
        provenance={"fastseed": "0.1.0", "device": "cpu", "dtype": "float32",
                    "started_at": "2025-01-01T00:00:00+00:00",
                    "finished_at": f"2025-01-01T00:00:{seed % 60:02d}+00:00"})


def new_store(path) -> Store:
    return Store(path, "picard-short", PROTOCOL_HASH, PROTOCOL_JSON)


def refused(call, *args, **kwargs) -> str:
    """Assert `call` raises FastseedError with a one-line message, and return that message."""
    with pytest.raises(FastseedError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def assert_same(a: Record, b: Record) -> None:
    for name in ("test_acc", "test_loss"):
        x, y = getattr(a, name), getattr(b, name)
        assert (math.isnan(x) and math.isnan(y)) or x == y, name
    for name in ("protocol", "protocol_hash", "seed", "status", "headline_epoch", "eval_curve",
                 "train_curve", "predictions", "wall_time_s", "pack", "provenance", "logits"):
        assert getattr(a, name) == getattr(b, name), name


def test_records_round_trip_exactly(tmp_path):
    written = [make_record(5), make_record(1, status="diverged"), make_record(3)]
    with new_store(tmp_path / "s.sqlite") as store:
        for r in written:
            store.add(r)
        got = store.records()
        assert len(store) == 3
    assert [r.seed for r in got] == [1, 3, 5]  # ordered by seed
    for r in got:
        assert_same(r, next(w for w in written if w.seed == r.seed))
    diverged = got[0]
    assert diverged.status == "diverged" and math.isnan(diverged.test_acc)
    preds = got[1].predictions_array()
    assert preds.dtype == np.uint8 and preds.shape == (10_000,)
    assert preds.tobytes() == make_record(3).predictions


def test_meta_describes_the_protocol(tmp_path):
    with new_store(tmp_path / "s.sqlite") as store:
        pass
    with Store.open(tmp_path / "s.sqlite") as store:
        assert store.protocol == "picard-short"
        assert store.protocol_hash == PROTOCOL_HASH
        assert store.protocol_json == PROTOCOL_JSON
        assert store.meta["schema"] == "3" and store.meta["fastseed_version"]


def test_store_is_wal_and_creates_parent_folders(tmp_path):
    path = tmp_path / "results" / "deep" / "s.sqlite"
    new_store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    pk = [r[1] for r in conn.execute("PRAGMA table_info(records)") if r[5]]
    assert pk == ["protocol_hash", "seed"]
    conn.close()
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_resume_sees_done_seeds_and_a_second_commit_of_a_seed_keeps_the_first(tmp_path):
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        for seed in (0, 2, 4):
            assert store.add(make_record(seed)) is True
    with new_store(path) as store:
        assert store.done_seeds() == {0, 2, 4}
        late = dataclasses.replace(make_record(2), test_acc=0.5, wall_time_s=99.0)
        assert store.add(late) is False  # e.g. a worker whose lease ran out, finishing second
        assert store.add(make_record(1)) is True
        assert store.done_seeds() == {0, 1, 2, 4} and len(store) == 4
        assert_same(store.record(2), make_record(2))  # the first commit won, untouched


def test_add_refuses_a_record_of_another_protocol(tmp_path):
    with new_store(tmp_path / "s.sqlite") as store:
        refused(store.add, make_record(0, protocol_hash=OTHER_HASH))
        assert len(store) == 0


def test_reader_sees_commits_while_the_writer_is_open(tmp_path):
    path = tmp_path / "s.sqlite"
    with new_store(path) as writer:
        writer.add(make_record(0))
        with Store.open(path) as reader:
            assert reader.done_seeds() == {0}
            writer.add(make_record(1))
            assert reader.done_seeds() == {0, 1}
            refused(reader.add, make_record(2))


WRITER = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}, {store_tests!r}]
from test_store import make_record, new_store
store = new_store({path!r})
for seed in range({n}):
    store.add(make_record(seed))
    print(seed, flush=True)
    time.sleep(0.01)
"""


@pytest.mark.slow
def test_commit_survives_sigkill(tmp_path):
    path, n, k = tmp_path / "s.sqlite", 300, 5
    code = WRITER.format(repo=str(REPO), tests=str(REPO / "tests"), store_tests=str(REPO / "tests" / "store"),
                         path=str(path), n=n)
    with Process([sys.executable, "-c", code], tmp_path, name="writer") as writer:
        writer.wait_until(lambda: len(writer.stdout_text().split()) >= k, f"{k} commits", timeout=120)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    committed = [int(seed) for seed in writer.stdout_text().split()]  # each printed once committed
    assert committed == list(range(len(committed))) and len(committed) >= k
    with Store.open(path) as reader:  # a report can read a killed scan's results
        assert len(reader) >= k
    with new_store(path) as store:
        got = store.records()
        assert len(committed) <= len(got) < n  # killed mid-run, nothing committed was lost
        assert [r.seed for r in got] == list(range(len(got)))
        for r in got:  # every row is whole: no partial record
            assert_same(r, make_record(r.seed))
        store.add(make_record(len(got)))  # and the scan can go on


def test_refuses_a_store_of_another_protocol_untouched(tmp_path):
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        store.add(make_record(0))
    before = snapshot(path)
    message = refused(Store, path, "imagenet-long", OTHER_HASH, OTHER_JSON)
    assert "picard-short" in message and "imagenet-long" in message
    assert PROTOCOL_HASH[:12] in message and OTHER_HASH[:12] in message
    assert "--out" in message
    assert snapshot(path) == before


@pytest.mark.parametrize("content", [b"seed,acc\n1,0.93\n", bytes(np.random.default_rng(0)
                                     .integers(0, 256, 4096, dtype=np.uint8)), b""],
                         ids=["text", "random-bytes", "empty"])
def test_refuses_a_file_that_is_not_sqlite_untouched(tmp_path, content):
    path = tmp_path / "s.sqlite"
    path.write_bytes(content)
    before = snapshot(path)
    assert "not an SQLite database" in refused(new_store, path)
    assert "not an SQLite database" in refused(Store.open, path)
    assert snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]


def test_refuses_an_sqlite_file_without_the_fastseed_schema_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (seed INTEGER, acc REAL)")
    conn.execute("INSERT INTO results VALUES (1, 0.93)")
    conn.commit()
    conn.close()
    before = snapshot(path)
    assert "not a fastseed store" in refused(new_store, path)
    assert "not a fastseed store" in refused(Store.open, path)
    assert snapshot(path) == before


def test_refuses_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file where a folder should be")
    refused(new_store, blocker / "s.sqlite")
    refused(new_store, blocker / "sub" / "s.sqlite")
    refused(new_store, Path("/proc/fastseed-test/s.sqlite"))
    assert blocker.read_text() == "a file where a folder should be"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_check_refuses_like_the_store_and_writes_nothing(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    refused(Store.check, blocker / "s.sqlite", "smoke", "a" * 64)
    fresh = tmp_path / "new" / "deeper" / "s.sqlite"
    Store.check(fresh, "smoke", "a" * 64)  # creatable: accepted, and nothing made yet
    assert not (tmp_path / "new").exists()
    path = tmp_path / "s.sqlite"
    Store(path, "picard-short", "a" * 64, "{}").close()
    before = snapshot(path)
    Store.check(path, "picard-short", "a" * 64)
    assert "another --out" in refused(Store.check, path, "smoke", "b" * 64)
    assert snapshot(path) == before


def test_refuses_a_directory_as_store(tmp_path):
    refused(new_store, tmp_path)
    refused(Store.open, tmp_path)


def test_open_refuses_a_missing_store(tmp_path):
    assert "no store" in refused(Store.open, tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


def filled_store(tmp_path) -> Store:
    store = new_store(tmp_path / "s.sqlite")
    for seed in (2, 0, 1):
        store.add(make_record(seed, status="diverged" if seed == 1 else "ok"))
    return store


def test_to_frame_has_one_row_per_seed(tmp_path):
    with filled_store(tmp_path) as store:
        frame = store.to_frame()
    assert list(frame["seed"]) == [0, 1, 2]
    assert frame["seed"].dtype == np.int64 and frame["test_acc"].dtype == np.float64
    assert frame["headline_epoch"].dtype == np.int64
    row = frame.iloc[2]
    want = make_record(2)
    assert row["test_acc"] == want.test_acc and row["wall_time_s"] == want.wall_time_s
    assert row["eval_curve"] == want.eval_curve and row["pack"] == want.pack
    assert row["predictions"] == want.predictions
    assert row["finished_at"] == want.provenance["finished_at"]
    assert math.isnan(frame.iloc[1]["test_acc"]) and frame.iloc[1]["status"] == "diverged"


def test_to_frame_of_an_empty_store_has_the_columns(tmp_path):
    with new_store(tmp_path / "s.sqlite") as store:
        frame = store.to_frame()
    assert len(frame) == 0 and {"seed", "test_acc", "eval_curve", "predictions"} <= set(frame)


def test_csv_export_reads_back(tmp_path):
    out = tmp_path / "exports" / "s.csv"
    with filled_store(tmp_path) as store:
        store.export_csv(out)
    frame = pd.read_csv(out)
    assert list(frame["seed"]) == [0, 1, 2] and "predictions" not in frame
    assert frame["test_acc"].iloc[0] == make_record(0).test_acc
    assert math.isnan(frame["test_acc"].iloc[1])
    assert json.loads(frame["eval_curve"].iloc[2]) == make_record(2).eval_curve
    assert json.loads(frame["pack"].iloc[0]) == make_record(0).pack


def test_parquet_export_keeps_predictions(tmp_path):
    out = tmp_path / "s.parquet"
    with filled_store(tmp_path) as store:
        store.export_parquet(out)
    frame = pd.read_parquet(out)
    assert list(frame["seed"]) == [0, 1, 2]
    for _, row in frame.iterrows():
        want = make_record(int(row["seed"]), status=row["status"])
        assert row["predictions"] == want.predictions
        assert [list(p) for p in row["eval_curve"]] == want.eval_curve
        assert json.loads(row["provenance"]) == want.provenance


def test_export_to_an_unwritable_path_is_refused(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with filled_store(tmp_path) as store:
        refused(store.export_csv, blocker / "s.csv")
        refused(store.export_parquet, blocker / "s.parquet")


def test_test_labels_are_stored_once_and_guarded(tmp_path):
    path = tmp_path / "s.sqlite"
    labels = np.arange(100, dtype=np.uint8) % 10
    with new_store(path) as store:
        assert store.test_labels is None
        store.set_test_labels(labels)
        store.set_test_labels(labels)  # the same labels again: accepted
        assert "other test labels" in refused(store.set_test_labels, labels[::-1])
    assert np.array_equal(Store.open(path).test_labels, labels)


def test_imagenet_labels_and_predictions_are_stored_as_uint16(tmp_path):
    """1,000 classes do not fit uint8: labels and predictions go wide, CIFAR stores stay uint8."""
    from fastseed.stats.runs import load_runs
    path = tmp_path / "s.sqlite"
    labels = (np.arange(3000) * 7) % 1000
    preds = labels.copy()
    preds[:300] = (preds[:300] + 1) % 1000  # 10 % wrong
    with new_store(path) as store:
        store.set_test_labels(labels)
        assert store.label_dtype == np.uint16
        store.add(dataclasses.replace(make_record(0), predictions=preds.astype(np.uint16).tobytes()))
    with Store.open(path) as store:
        assert np.array_equal(store.test_labels, labels) and store.test_labels.dtype == np.uint16
        runs = load_runs(store, "s")
        assert runs.scorable and runs.predictions.dtype == np.uint16
        assert (runs.predictions[0] == runs.labels).mean() == pytest.approx(0.9)
        assert np.array_equal(store.records()[0].predictions_array(store.label_dtype), preds)
    cifar = tmp_path / "c.sqlite"
    with new_store(cifar) as store:
        store.set_test_labels(np.arange(10))
        assert store.label_dtype == np.uint8 and "label_dtype" not in store.meta


def test_a_full_disk_fails_one_commit_in_one_line_and_the_store_resumes(tmp_path):
    """Issue #11.7 with SQLite's own limit (PRAGMA max_page_count), which makes it report "database or
    disk is full" exactly as on a full disk, on every machine; test_file.py fills a real one."""
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        for seed in range(3):
            store.add(make_record(seed))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # less than one more record
        message = refused(store.add, make_record(3))
        assert message == f"{path}: disk full while committing seed 3; the records committed before are intact"
        assert store.done_seeds() == {0, 1, 2}
        assert "disk full while claiming" in refused(store.claim, 0, 10**6, 10**5, "w", 60)
        store._conn.execute(f"PRAGMA max_page_count = {10 * pages}")  # space freed
        assert store.add(make_record(3)) is True
        assert store.claim(0, 10, 2, "w", 60) == [4, 5]
    with new_store(path) as store:  # and a scan started afresh resumes it
        assert store.done_seeds() == {0, 1, 2, 3} and store.progress(0, 10) == (4, 2)
        for r in store.records():
            assert_same(r, make_record(r.seed))
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def insert_raw(path: Path, seed: int, **columns) -> None:
    """A row as another tool (or a hand edit) might leave it: the columns given replace a good record's."""
    row = {**make_record(seed).to_row(), **columns}
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(f"INSERT INTO records ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})", row)
    conn.close()


def test_rows_checked_without_their_blobs_are_named_malformed_alike(tmp_path):
    """The scan's start-up check types the blobs instead of reading them (a store of 10^5 seeds with
    logits holds ~18 GB): the same rows are skipped, for the same reasons, as when they are read."""
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        for seed in (0, 2, 4):
            store.add(dataclasses.replace(make_record(seed), logits=bytes(range(seed + 3))))
    insert_raw(path, 1, predictions="0123")
    insert_raw(path, 3, logits=42)
    insert_raw(path, 5, eval_curve="{not json")
    insert_raw(path, 6)  # no logits: fine
    with Store.open(path) as store:
        light = list(store.iter_records(blobs=False))
        skipped = store.skipped_rows
        full = list(store.iter_records())
        assert [r.seed for r in light] == [r.seed for r in full] == [0, 2, 4, 6]
        assert skipped == store.skipped_rows and [seed for seed, _ in skipped] == [1, 3, 5]
        assert all(r.predictions == b"" and r.logits is None for r in light)
        assert full[1].logits == bytes(range(5)) and full[3].logits is None


def test_malformed_rows_are_skipped_and_named_and_one_record_names_its_seed(tmp_path):
    """Issue #11.9: one bad row must not stop a report or a scan, and must not go unnoticed."""
    from fastseed.stats.runs import load_runs
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        for seed in (0, 2, 4):
            store.add(make_record(seed))
    insert_raw(path, 1, eval_curve="{not json")
    insert_raw(path, 3, test_acc="0.9x")
    for opened in (Store.open, new_store):
        with opened(path) as store:
            assert [r.seed for r in store.records()] == [0, 2, 4]
            assert [seed for seed, _ in store.skipped_rows] == [1, 3]
            assert "eval_curve is not valid JSON" in store.skipped_rows[0][1]
            assert "test_acc is str '0.9x', not a number" == store.skipped_rows[1][1]
            message = refused(store.record, 3)
            assert "seed 3" in message and "test_acc" in message
            assert_same(store.record(2), make_record(2))
            assert store.record(9) is None
            assert len(store) == 5 and store.done_seeds() == {0, 1, 2, 3, 4}  # stored, if unreadable
            np.testing.assert_array_equal(store.accuracies(0, 5), [make_record(s).test_acc for s in (0, 1, 2, 4)])
    with Store.open(path) as store:
        runs = load_runs(store, "s")  # the report's reader goes on without them
        assert list(runs.seeds) == [0, 2, 4]


def test_two_writers_storing_the_same_test_labels_at_once_both_succeed(tmp_path):
    path = tmp_path / "s.sqlite"
    labels = np.arange(50) % 10
    first, second = new_store(path), new_store(path)  # both opened before either stored the labels
    try:
        first.set_test_labels(labels)
        second.set_test_labels(labels)  # fastseed 0.1.0: "UNIQUE constraint failed: meta.key"
        assert "other test labels" in refused(second.set_test_labels, labels[::-1])
        assert np.array_equal(second.test_labels, labels)
    finally:
        first.close(), second.close()


def test_records_are_read_a_batch_at_a_time_in_seed_order(tmp_path, monkeypatch):
    monkeypatch.setattr(Store, "ROWS_PER_READ", 3)
    path = tmp_path / "s.sqlite"
    with new_store(path) as store, store.transaction("filling"):
        for seed in (9, 0, 4, 7, 1, 3, 8):
            store.add(make_record(seed))
    insert_raw(path, 5, train_curve="[1, 2")
    insert_raw(path, 6, train_curve="{}")
    with Store.open(path) as store:
        assert [r.seed for r in store.iter_records()] == [0, 1, 3, 4, 7, 8, 9]
        assert [seed for seed, _ in store.skipped_rows] == [5, 6]


def test_a_blob_of_the_wrong_length_or_a_curve_of_the_wrong_shape_is_a_malformed_row(tmp_path):
    """Issue #23.7: a truncated predictions blob (`x'00'`) was read as valid, so merge copied it and
    replay compared 10,000 images with 1. Every blob is checked against the store's test set when read,
    with its blobs or without (the scan's start-up): the same rows, the same reasons."""
    import zlib
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        store.set_test_labels(np.arange(10_000) % 10)
        store.add(dataclasses.replace(make_record(0), logits=zlib.compress(bytes(2 * 10_000 * 10))))
    insert_raw(path, 1, predictions=b"\x00")
    insert_raw(path, 2, logits=zlib.compress(bytes(7)))
    insert_raw(path, 3, logits=b"\x00\x00")
    insert_raw(path, 4, train_curve="[[0, 1.5], [1, 1.2]]")
    insert_raw(path, 5, pack='{"strategy": "fused", "seeds": [1, "two"]}')
    insert_raw(path, 6)
    with Store.open(path) as store:
        light = [r.seed for r in store.iter_records(blobs=False)]
        light_skipped = store.skipped_rows
        full = [r.seed for r in store.iter_records()]
        assert full == [0, 6] and light == [0, 2, 3, 6]  # the logits are not read at start-up
        assert store.skipped_rows[0] == (1, "predictions hold 1 byte(s), not 10000 (a class per test image)")
        assert store.skipped_rows[1] == (2, "logits hold 7 byte(s) decompressed, not float16 classes for each of "
                                            "10000 test images")
        assert store.skipped_rows[2][0] == 3 and store.skipped_rows[2][1].startswith("logits do not decompress")
        assert store.skipped_rows[3] == (4, "train_curve has a row list [0, 1.5], not [epoch, a, b]")
        assert store.skipped_rows[4] == (5, "pack seeds is list [1, 'two']")
        assert [seed for seed, _ in light_skipped] == [1, 4, 5]
        assert light_skipped[0] == store.skipped_rows[0]
        assert "seed 1 is malformed: predictions hold 1 byte(s)" in refused(store.record, 1)
