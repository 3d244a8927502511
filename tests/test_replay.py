"""python -m fastseed.replay: a (small) smoke seed replays bit-identically on the CPU; a tampered record is
reported as different; bad input is one line and exit code 2."""

import sqlite3

import pytest
import torch

from fastseed import replay
from fastseed.data.cifar import load_cifar10, to_tensors
from fastseed.engine import train_pack
from fastseed.recipe.presets import get_preset
from fastseed.store import Store
from fastseed.store.record import Record
from scans import SMALL


@pytest.fixture(scope="module")
def store(smoke_scan):
    """The session's real smoke scan (tests/conftest.py): smoke at small scale, seeds 0 and 1 in one
    fused pack (each replay below retrains that pack), seed 2 alone."""
    return smoke_scan.out


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    """A store of the same protocol whose records are made up, for the refusals: they come before any
    training."""
    path = tmp_path_factory.mktemp("made-up") / "s.sqlite"
    with Store(path, SMALL.name, SMALL.hash, SMALL.to_json()) as store:
        for seed in (0, 1):
            store.add(Record(protocol=SMALL.name, protocol_hash=SMALL.hash, seed=seed, status="ok", test_acc=0.2,
                             test_loss=2.0, headline_epoch=3, eval_curve=[[3, 0.2, 2.0]], train_curve=[[3, 2.0, 0.2]],
                             predictions=bytes(SMALL.test_size), wall_time_s=1.0,
                             pack={"strategy": "fused", "size": 2, "slot": seed, "seeds": [0, 1]}, provenance={}))
    return path


@pytest.mark.slow
def test_replay_of_a_smoke_seed_is_bit_identical(store, real_cifar_root, capsys):
    assert replay.main([str(store), "--seed", "1", "--data-dir", str(real_cifar_root)]) == 0
    out = capsys.readouterr().out
    assert "fused pack of 2 [0, 1]" in out and "seed 1: identical" in out


def edited(store, path, sql: str):
    """A copy of `store` at `path`, `sql` run on it (a row changed as a hand edit or another tool would)."""
    with sqlite3.connect(store) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    with sqlite3.connect(path) as db:
        db.execute(sql)
    return path


@pytest.mark.slow
def test_tampered_record_is_reported_as_different(store, real_cifar_root, tmp_path, capsys):
    tampered = edited(store, tmp_path / "t.sqlite", "UPDATE records SET test_acc = test_acc + 0.001 WHERE seed = 0")
    assert replay.main([str(tampered), "--seed", "0", "--data-dir", str(real_cifar_root)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT in 1 field(s)" in out and "test_acc: stored" in out


@pytest.mark.parametrize("argv,phrase", [
    (["{store}", "--seed", "99"], "seed 99 is not in"),
    (["{store}", "--seed", str(2**70)], f"seed {2**70} is not in"),  # beyond SQLite's integers: no traceback
    (["{missing}", "--seed", "0"], "no store at"),
    (["{store}"], "--seed"),
])
def test_bad_input_is_one_line_and_exit_2(made_up, tmp_path, capsys, argv, phrase):
    argv = [a.format(store=made_up, missing=tmp_path / "nope.sqlite") for a in argv]
    assert replay.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastseed.replay: error:") and phrase in err[0]


@pytest.mark.slow
def test_replay_leaves_the_store_unchanged(store):
    with Store.open(store) as s:
        assert sorted(s.done_seeds()) == [0, 1, 2]


def test_a_malformed_record_is_one_line_naming_its_seed(made_up, real_cifar_root, tmp_path, capsys):
    """Issue #11.9: today replay crashed reading every record; now only the replayed one is decoded."""
    broken = tmp_path / "b.sqlite"
    with sqlite3.connect(made_up) as src, sqlite3.connect(broken) as dst:
        src.backup(dst)
    with sqlite3.connect(broken) as db:
        db.execute("UPDATE records SET pack = '{\"strategy\": ' WHERE seed = 0")  # invalid JSON
    assert replay.main([str(broken), "--seed", "0", "--data-dir", str(real_cifar_root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastseed.replay: error:")
    assert "seed 0" in err[0] and "malformed" in err[0] and "pack" in err[0]


# ---- the CPU's layout (issue #23) -------------------------------------------------------------------

TINY = get_preset("smoke").variant(width=0.0625, train_size=500, test_size=1000, epochs=1)


def notes(err: str) -> list[str]:
    """The notes of a replay but the one about the code's version (a checkout being edited says it)."""
    return [line for line in err.splitlines() if not line.startswith("note: the record was made by commit")]


@pytest.fixture(scope="module")
def one_thread_store(real_cifar_root, tmp_path_factory):
    """Seeds 0 and 1 of a tiny smoke trained on one CPU thread, as a pool's worker or a Ray actor
    trains; seed 1's record without the CPU's layout, as an older fastseed wrote it."""
    data = to_tensors(load_cifar10(real_cifar_root), "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        records = train_pack(TINY, [0, 1], data, "cpu", strategy="sequential")
    finally:
        torch.set_num_threads(threads)
    records[1].provenance = {k: v for k, v in records[1].provenance.items() if k not in ("threads", "cpu_capability")}
    out = tmp_path_factory.mktemp("threads") / "s.sqlite"
    with Store(out, TINY.name, TINY.hash, TINY.to_json()) as store:
        store.set_test_labels(data.test_y[: TINY.test_size].numpy())
        for record in records:
            store.add(record)
    return out


def test_a_seed_trained_on_one_thread_replays_identically_in_a_process_of_two(one_thread_store, real_cifar_root,
                                                                            capsys):
    """Issue #23.4: a seed of a --workers child or a Ray actor (1 thread) replayed as "DIFFERENT in 5
    field(s)" in a plain replay (2 threads): the thread count changes float32 CPU results and was not in
    the record's layout."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert replay.main([str(one_thread_store), "--seed", "0", "--data-dir", str(real_cifar_root)]) == 0
        assert torch.get_num_threads() == 2  # the record's count only while the replay trains
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    assert "seed 0: identical" in captured.out and notes(captured.err) == []


def test_an_older_record_without_its_thread_count_replays_with_a_note(one_thread_store, real_cifar_root, capsys):
    code = replay.main([str(one_thread_store), "--seed", "1", "--data-dir", str(real_cifar_root)])
    captured = capsys.readouterr()
    assert code in (0, 1)  # identical or not: this process's thread count decides
    assert notes(captured.err) == [f"note: the record does not say how many CPU threads trained it (an older "
                                   f"fastseed): replaying with {torch.get_num_threads()}; a difference may come from that"]


def test_a_truncated_predictions_blob_is_one_line_not_10000_images_differ(one_thread_store, real_cifar_root,
                                                                          tmp_path, capsys):
    """Issue #23.7: replay trained the seed and reported "10,000 test images differ"."""
    broken = edited(one_thread_store, tmp_path / "b.sqlite", "UPDATE records SET predictions = x'00' WHERE seed = 0")
    assert replay.main([str(broken), "--seed", "0", "--data-dir", str(real_cifar_root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fastseed.replay: error: {broken}: the record of seed 0 is malformed: predictions hold 1 byte(s), "
                   f"not 1000 (a class per test image)"]
