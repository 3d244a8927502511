"""python -m fastseed.merge: disjoint stores, identical and conflicting duplicates, foreign protocols
and test sets refused untouched, and a merge killed midway that leaves OUT as it was."""

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastseed.merge import main
from fastseed.store import Store

sys.path.insert(0, str(Path(__file__).parent / "store"))  # test_store: the store tests' helpers
from test_store import (OTHER_HASH, OTHER_JSON, assert_same, make_record, new_store,  # noqa: E402
                        snapshot)

REPO = Path(__file__).resolve().parents[1]
LABELS = np.arange(10_000) % 10


def store_of(path: Path, records, labels=LABELS) -> Path:
    with new_store(path) as store:
        if labels is not None:
            store.set_test_labels(labels)
        with store.transaction("filling"):
            for r in records:
                store.add(r)
    return path


def elsewhere(seed: int):
    """Seed `seed` trained again on another machine: the same outcome, another wall time and host."""
    return dataclasses.replace(make_record(seed), wall_time_s=123.0,
                               provenance={"host": "node7", "finished_at": "2025-02-02T00:00:00+00:00"})


def merge(capsys, *argv) -> tuple[int, list[str], str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def seeds_in(path: Path) -> list[int]:
    with Store.open(path) as store:
        return [r.seed for r in store.records()]


def test_disjoint_stores_merge_into_a_new_store(tmp_path, capsys):
    a = store_of(tmp_path / "a.sqlite", [make_record(s) for s in (0, 2, 4)])
    b = store_of(tmp_path / "b.sqlite", [make_record(s, status="diverged" if s == 3 else "ok") for s in (1, 3)])
    out = tmp_path / "merged" / "all.sqlite"
    before = snapshot(a), snapshot(b)
    code, lines, err = merge(capsys, out, a, b)
    assert (code, err) == (0, "")
    assert lines == [f"{out}: 5 records added from 2 store(s), 0 identical duplicate(s), 0 conflict(s), "
                     f"0 malformed row(s) skipped; 5 records in all"]
    with Store.open(out) as store:
        assert np.array_equal(store.test_labels, LABELS) and store.protocol == "picard-short"
        for r in store.records():
            assert_same(r, make_record(r.seed, status="diverged" if r.seed == 3 else "ok"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["all.sqlite"]  # no temp, no -wal left
    assert (snapshot(a), snapshot(b)) == before  # the INs were only read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sqlite", "b.sqlite", "merged"]


def test_identical_duplicates_are_kept_once(tmp_path, capsys):
    a = store_of(tmp_path / "a.sqlite", [make_record(s) for s in range(4)])
    b = store_of(tmp_path / "b.sqlite", [elsewhere(s) for s in range(2, 6)])
    out = tmp_path / "all.sqlite"
    code, lines, _ = merge(capsys, out, a, b)
    assert code == 0 and "6 records added from 2 store(s), 2 identical duplicate(s), 0 conflict(s)" in lines[-1]
    with Store.open(out) as store:
        got = {r.seed: r for r in store.records()}
    assert sorted(got) == list(range(6))
    assert got[2].wall_time_s == make_record(2).wall_time_s  # the first store's copy
    assert got[5].provenance["host"] == "node7"
    code, lines, _ = merge(capsys, out, a, b)  # merging again changes nothing
    assert code == 0 and "0 records added from 2 store(s), 8 identical duplicate(s)" in lines[-1]


def test_a_conflicting_duplicate_is_reported_and_the_first_kept_unless_preferred(tmp_path, capsys):
    a = store_of(tmp_path / "a.sqlite", [make_record(s) for s in range(3)])
    other = dataclasses.replace(make_record(1), test_acc=0.5, predictions=bytes(10_000))
    b = store_of(tmp_path / "b.sqlite", [other, make_record(3)])
    out = tmp_path / "all.sqlite"
    code, lines, _ = merge(capsys, out, a, b)
    assert code == 1
    assert lines[0] == f"conflict: seed 1: test_acc, predictions differ; kept {a}, dropped {b}"
    assert "4 records added from 2 store(s), 0 identical duplicate(s), 1 conflict(s)" in lines[1]
    assert_same(Store.open(out).record(1), make_record(1))
    preferred = tmp_path / "preferred.sqlite"
    code, lines, _ = merge(capsys, preferred, a, b, "--prefer", b)
    assert code == 1 and lines[0] == f"conflict: seed 1: test_acc, predictions differ; kept {b}, dropped {a}"
    assert_same(Store.open(preferred).record(1), other)
    code, lines, _ = merge(capsys, out, b, "--prefer", b)  # an existing OUT gives way to --prefer too
    assert code == 1 and lines[0] == f"conflict: seed 1: test_acc, predictions differ; kept {b}, dropped {out}"
    assert_same(Store.open(out).record(1), other) and seeds_in(out) == [0, 1, 2, 3]


def test_an_existing_out_keeps_its_records_and_gains_the_new_ones(tmp_path, capsys):
    out = store_of(tmp_path / "all.sqlite", [make_record(s) for s in (0, 1)])
    a = store_of(tmp_path / "a.sqlite", [elsewhere(1), make_record(7)], labels=None)
    code, lines, _ = merge(capsys, out, a)
    assert code == 0 and "1 records added from 1 store(s), 1 identical duplicate(s)" in lines[-1]
    assert seeds_in(out) == [0, 1, 7]
    assert Store.open(out).record(1).wall_time_s == make_record(1).wall_time_s


def refused(capsys, *argv) -> str:
    code, lines, err = merge(capsys, *argv)
    assert code == 2 and lines == [] and err.startswith("fastseed.merge: error: ")
    assert err.count("\n") == 1  # one line, no traceback
    return err


def test_a_foreign_protocol_or_test_set_is_refused_and_nothing_is_written(tmp_path, capsys):
    a = store_of(tmp_path / "a.sqlite", [make_record(0)])
    foreign = tmp_path / "f.sqlite"
    with Store(foreign, "resnet18-long", OTHER_HASH, OTHER_JSON) as store:
        store.add(make_record(1, protocol_hash=OTHER_HASH))
    out = tmp_path / "all.sqlite"
    assert "only stores of one protocol merge" in refused(capsys, out, a, foreign)
    assert not out.exists()
    relabelled = store_of(tmp_path / "r.sqlite", [make_record(2)], labels=LABELS[::-1])
    assert "different test labels" in refused(capsys, out, a, relabelled)
    assert not out.exists()
    existing = store_of(tmp_path / "e.sqlite", [make_record(3)])
    before = snapshot(existing)
    message = refused(capsys, foreign, a)  # OUT of another protocol
    assert "OUT" in message and "resnet18-long" in message
    assert "different test labels" in refused(capsys, relabelled, existing)
    assert snapshot(existing) == before and seeds_in(relabelled) == [2]


def test_bad_command_lines_are_refused_in_one_line(tmp_path, capsys):
    a = store_of(tmp_path / "a.sqlite", [make_record(0)])
    out = tmp_path / "all.sqlite"
    assert "no store" in refused(capsys, out, tmp_path / "missing.sqlite")
    assert "both OUT and an IN" in refused(capsys, a, a)
    assert "twice" in refused(capsys, out, a, tmp_path / "." / "a.sqlite")
    assert "--prefer" in refused(capsys, out, a, "--prefer", tmp_path / "b.sqlite")
    assert "required" in refused(capsys, out)
    (tmp_path / "notes.txt").write_text("seed,acc\n")
    assert "not an SQLite database" in refused(capsys, out, a, tmp_path / "notes.txt")
    assert not out.exists()


def test_malformed_rows_of_an_in_are_skipped_and_listed(tmp_path, capsys):
    a = store_of(tmp_path / "a.sqlite", [make_record(0), make_record(2)])
    conn = sqlite3.connect(a)
    with conn:
        conn.execute("UPDATE records SET pack = 'oops' WHERE seed = 2")
    conn.close()
    out = tmp_path / "all.sqlite"
    code, lines, _ = merge(capsys, out, a)
    assert code == 1 and lines[0].startswith(f"{a}: seed 2: malformed row skipped: pack is not valid JSON")
    assert "1 malformed row(s) skipped" in lines[-1] and seeds_in(out) == [0]


def test_merging_a_store_a_scan_is_writing_leaves_the_scan_undisturbed(tmp_path, capsys):
    live = tmp_path / "live.sqlite"
    with new_store(live) as scan:
        scan.set_test_labels(LABELS)
        scan.add(make_record(0))
        scan.claim(0, 10, 3, "scan", 600)
        code, lines, _ = merge(capsys, tmp_path / "all.sqlite", live)
        assert code == 0 and seeds_in(tmp_path / "all.sqlite") == [0]
        assert scan.add(make_record(1)) is True and scan.progress(0, 10) == (2, 2)
    assert seeds_in(live) == [0, 1]


KILLED_MERGE = """
import os, signal
from fastseed.store import Store
from fastseed.merge import main
real_add, count = Store.add, [0]
def add(self, *args, **kwargs):  # SIGKILL in the middle of the merge's transaction
    count[0] += 1
    if count[0] == {after}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_add(self, *args, **kwargs)
Store.add = add
main({argv!r})
"""


def killed_merge(argv, after: int) -> int:
    code = KILLED_MERGE.format(after=after, argv=[str(a) for a in argv])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode


@pytest.mark.slow
def test_a_merge_killed_midway_leaves_out_as_it_was(tmp_path):
    a = store_of(tmp_path / "a.sqlite", [make_record(s) for s in range(0, 40, 2)])
    b = store_of(tmp_path / "b.sqlite", [make_record(s) for s in range(1, 40, 2)])
    new_out = tmp_path / "new" / "all.sqlite"
    assert killed_merge([new_out, a, b], after=25) == -9
    assert not new_out.exists()  # a new OUT appears complete or not at all
    out = store_of(tmp_path / "all.sqlite", [make_record(100)])
    assert killed_merge([out, a, b], after=25) == -9
    assert seeds_in(out) == [100]  # an existing OUT: the merge's transaction never committed
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert main([str(out), str(a), str(b)]) == 0  # and the merge, run again, completes
    assert seeds_in(out) == list(range(40)) + [100]


# ---- issue #23 ----------------------------------------------------------------------------------------

def on_cpu(record, threads: int):
    """`record` as a CPU scan with `threads` threads stored it."""
    return dataclasses.replace(record, provenance={**record.provenance, "device_type": "cpu", "threads": threads,
                                                   "cpu_capability": "AVX512"})


def test_a_seed_trained_on_another_thread_count_is_another_sample_not_a_conflict(tmp_path, capsys):
    """Issue #23.4: the seeds of a plain store (2 threads) and a --workers store (1 thread) showed up
    as conflicts: the thread count changes a float32 result and is part of the layout now. Under the
    same layout a different outcome is still a conflict; an older record, which does not state its
    threads, is taken as the same layout."""
    plain = store_of(tmp_path / "plain.sqlite", [on_cpu(make_record(s), 2) for s in range(3)])
    pooled = [on_cpu(dataclasses.replace(make_record(s), test_acc=0.5), 1) for s in (1, 2)]
    workers = store_of(tmp_path / "workers.sqlite", pooled)
    out = tmp_path / "all.sqlite"
    code, lines, _ = merge(capsys, out, plain, workers)
    assert code == 0
    assert lines[:2] == [f"another layout: seed {s}: threads 2 vs 1: test_acc differ; kept {plain}, dropped {workers}"
                         for s in (1, 2)]
    assert lines[2] == (f"{out}: 3 records added from 2 store(s), 0 identical duplicate(s), 0 conflict(s), "
                        f"2 duplicate(s) trained under another layout, 0 malformed row(s) skipped; 3 records in all")
    older = store_of(tmp_path / "older.sqlite", [dataclasses.replace(make_record(1), test_acc=0.5)])
    code, lines, _ = merge(capsys, out, older)
    assert code == 1 and lines[0] == f"conflict: seed 1: test_acc differ; kept {out}, dropped {older}"


@pytest.mark.slow
def test_what_a_merge_killed_while_building_a_new_out_left_is_removed_by_the_next(tmp_path):
    """Issue #23.6: a merge killed (-9) while building a new OUT left `.OUT.merge-<pid>-….tmp` and its
    -wal beside OUT, and later merges never removed them."""
    a = store_of(tmp_path / "a.sqlite", [make_record(s) for s in range(0, 40, 2)])
    out = tmp_path / "new" / "all.sqlite"
    assert killed_merge([out, a], after=15) == -9
    left = sorted(p.name for p in out.parent.iterdir())
    assert left and all(name.startswith(".all.sqlite.merge-") for name in left)  # the temp store, its -wal
    assert main([str(out), str(a)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["all.sqlite"]
    assert seeds_in(out) == list(range(0, 40, 2))


def signalled_merge(argv, after: int, signum: int) -> subprocess.CompletedProcess:
    """The merge of `argv` in a process that gets `signum` at its `after`-th record, and its exit code."""
    code = KILLED_MERGE.format(after=after, argv=[str(a) for a in argv]).replace("signal.SIGKILL", str(int(signum)))
    code = code.replace("\nmain(", "\nraise SystemExit(main(") + ")"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_merge_stopped_by_a_signal_rolls_back_in_one_line_and_130(tmp_path, signum):
    """SIGINT or SIGTERM mid-merge: one line, exit 130, a new OUT not there and nothing beside it, an
    existing OUT as it was (before: a KeyboardInterrupt traceback, or a SIGTERM death that left the
    temp store)."""
    a = store_of(tmp_path / "a.sqlite", [make_record(s) for s in range(0, 40, 2)])
    existing = store_of(tmp_path / "old" / "all.sqlite", [make_record(100)])
    for out in (tmp_path / "new" / "all.sqlite", existing):
        done = signalled_merge([out, a], after=15, signum=signum)
        assert done.returncode == 130, done.stderr
        assert done.stderr.splitlines() == [f"fastseed.merge: {signal.Signals(signum).name}: stopped; OUT is as it "
                                            f"was, or complete if the merge had just ended: run the same merge again"]
    assert list((tmp_path / "new").iterdir()) == []
    assert sorted(p.name for p in existing.parent.iterdir()) == ["all.sqlite"] and seeds_in(existing) == [100]


def test_a_truncated_predictions_blob_is_skipped_and_named_not_copied(tmp_path, capsys):
    """Issue #23.7: merge copied `predictions = x'00'` into OUT as a valid record."""
    a = store_of(tmp_path / "a.sqlite", [make_record(s) for s in range(3)])
    with sqlite3.connect(a) as db:
        db.execute("UPDATE records SET predictions = x'00' WHERE seed = 1")
    out = tmp_path / "all.sqlite"
    code, lines, _ = merge(capsys, out, a)
    assert code == 1
    assert lines[0] == (f"{a}: seed 1: malformed row skipped: predictions hold 1 byte(s), not 10000 (a class per "
                        f"test image)")
    assert seeds_in(out) == [0, 2]
