"""Many processes, one store: they partition the seeds, lose none, train none twice, and a worker
killed (or frozen) while holding claims costs only its lease.

Workers are forked processes that drive the store as a scan does (claim a pack, "train" each seed
for a few milliseconds, commit it, renew the lease), all released at the same instant by a barrier,
starting on a store that does not exist yet: its creation is part of the race.
"""

import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastseed.store import Store
from fastseed.store.claims import worker_id

sys.path.insert(0, str(Path(__file__).parent))
from test_store import assert_same, make_record, new_store  # noqa: E402

FORK = multiprocessing.get_context("fork")  # the parent's imports are reused: a worker starts at once
LABELS = np.arange(10_000, dtype=np.uint8) % 10  # a class for each of make_record's predictions


def work(path: Path, start: int, stop: int, k: int, lease_s: float, train_s: float, barrier,
         report: Path, claimed=None) -> None:
    """One scan's loop over [start, stop): claim, train, commit, until every seed is stored, whoever
    stored it. Writes the seeds this worker committed to `report`."""
    if barrier is not None:
        barrier.wait()
    store = new_store(path)
    store.set_test_labels(LABELS)  # every worker sets them, as every scan does
    me, committed = worker_id(), []
    while True:
        seeds = store.claim(start, stop, k, me, lease_s)
        if claimed is not None and seeds:
            claimed.send(seeds)  # the parent may now kill or freeze this worker
        if not seeds:
            stored, _ = store.progress(start, stop)
            if stored == stop - start:
                break
            time.sleep(0.02)  # the rest is claimed by others: wait for them, or for their leases
            continue
        for seed in seeds:
            time.sleep(train_s)
            if store.add(make_record(seed), worker=me):
                committed.append(seed)
            store.renew(me, lease_s)
    store.close()
    report.write_text(json.dumps(committed))


def launch(path, ranges, tmp_path, tag, k=3, lease_s=30.0, train_s=0.002, barrier=None, **extra):
    procs = []
    for i, (start, stop) in enumerate(ranges):
        report = tmp_path / f"{tag}-{i}.json"
        p = FORK.Process(target=work, args=(path, start, stop, k, lease_s, train_s, barrier, report),
                         kwargs=extra)
        p.start()
        procs.append((p, report))
    return procs


def finish(procs, timeout=60) -> list[list[int]]:
    deadline = time.monotonic() + timeout
    for p, _ in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
        if p.is_alive():
            p.kill()
            p.join()
    assert [p.exitcode for p, _ in procs] == [0] * len(procs)
    return [json.loads(report.read_text()) for _, report in procs]


def assert_complete(path: Path, seeds: set[int]) -> None:
    """Every seed stored exactly once and whole; no claim left; SQLite finds the file sound."""
    with Store.open(path) as store:
        records = store.records()
        assert [r.seed for r in records] == sorted(seeds)
        for r in records:
            assert_same(r, make_record(r.seed))
        assert np.array_equal(store.test_labels, LABELS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    conn.close()
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


RACES = [  # (workers, equal ranges or overlapping ones)
    (3, "equal"), (3, "overlapping"), (4, "equal"), (4, "overlapping"), (5, "equal"),
    (5, "overlapping"), (6, "equal"), (6, "overlapping"), (8, "equal"), (8, "overlapping"),
    (3, "equal"), (8, "equal"),
]


@pytest.mark.slow
def test_scans_started_together_on_a_new_store_partition_the_seeds(tmp_path):
    """The acceptance test of issue #12, 12 times: records = seeds, no duplicates, integrity ok,
    every process exits 0 — with the store itself created by the race."""
    shared = 0
    for r, (n, shape) in enumerate(RACES):
        path = tmp_path / f"race{r}" / "s.sqlite"
        ranges = ([(0, 24)] * n if shape == "equal" else [(4 * i, 4 * i + 16) for i in range(n)])
        barrier = FORK.Barrier(n + 1)
        procs = launch(path, ranges, tmp_path, f"race{r}", barrier=barrier)
        barrier.wait(timeout=30)  # all workers forked and waiting: go
        committed = finish(procs)
        seeds = set().union(*(range(a, b) for a, b in ranges))
        flat = [s for c in committed for s in c]
        assert sorted(flat) == sorted(seeds), (r, n, shape)  # each seed committed by exactly one
        assert_complete(path, seeds)
        shared += sum(1 for c in committed if c) >= 2
    print(f"{shared} of {len(RACES)} races shared the work")
    assert shared >= 2  # the races did race: not every worker but one came too late


@pytest.mark.slow
def test_a_worker_killed_with_claims_costs_only_its_lease(tmp_path):
    path = tmp_path / "s.sqlite"
    receive, send = FORK.Pipe(duplex=False)
    victim = launch(path, [(0, 12)], tmp_path, "victim", k=4, lease_s=0.5, train_s=30, claimed=send)
    held = receive.recv()  # claimed, and now "training" its first seed for 30 s
    assert held == [0, 1, 2, 3]
    os.kill(victim[0][0].pid, signal.SIGKILL)
    victim[0][0].join()
    survivors = launch(path, [(0, 12), (0, 12)], tmp_path, "survivor", lease_s=30)
    committed = finish(survivors)
    assert sorted(committed[0] + committed[1]) == list(range(12))
    assert_complete(path, set(range(12)))


@pytest.mark.slow
def test_a_frozen_worker_whose_seeds_were_taken_over_finishes_second_and_exits_0(tmp_path):
    """The first commit wins; the late worker's commits are refused quietly (add returns False)."""
    path = tmp_path / "s.sqlite"
    receive, send = FORK.Pipe(duplex=False)
    late = launch(path, [(0, 6)], tmp_path, "late", k=2, lease_s=0.3, train_s=0.5, claimed=send)
    assert receive.recv() == [0, 1]
    os.kill(late[0][0].pid, signal.SIGSTOP)
    time.sleep(0.4)  # its lease runs out while it is frozen
    others = finish(launch(path, [(0, 6)], tmp_path, "other", lease_s=30))
    os.kill(late[0][0].pid, signal.SIGCONT)
    (late_committed,) = finish(late)
    assert others == [list(range(6))] and late_committed == []
    assert_complete(path, set(range(6)))


def test_one_store_serves_a_committing_thread_and_a_lease_renewing_thread(tmp_path):
    import threading
    path, me, stop, errors = tmp_path / "s.sqlite", worker_id(), threading.Event(), []
    store = new_store(path)

    def heartbeat():
        try:
            while not stop.is_set():
                store.renew(me, lease_s=30)
                store.progress(0, 40)
        except BaseException as e:  # noqa: BLE001  (reported to the test below)
            errors.append(e)

    beat = threading.Thread(target=heartbeat)
    beat.start()
    try:
        while seeds := store.claim(0, 40, 4, me, lease_s=30):
            for seed in seeds:
                assert store.add(make_record(seed), worker=me)
            assert len(store.records()) == seeds[-1] + 1
    finally:
        stop.set()
        beat.join()
        store.close()
    assert errors == []
    with Store.open(path) as reader:
        assert reader.done_seeds() == set(range(40)) and reader.progress(0, 40) == (40, 0)
