"""python -m fastseed.replay: a (small) smoke seed replays bit-identically on the CPU; a tampered record is
reported as different; bad input is one line and exit code 2."""

import sqlite3

import pytest

from fastseed import replay
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


@pytest.mark.slow
def test_tampered_record_is_reported_as_different(store, real_cifar_root, tmp_path, capsys):
    tampered = tmp_path / "t.sqlite"
    with sqlite3.connect(store) as src, sqlite3.connect(tampered) as dst:
        src.backup(dst)
    with sqlite3.connect(tampered) as db:
        db.execute("UPDATE records SET test_acc = test_acc + 0.001 WHERE seed = 0")
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
