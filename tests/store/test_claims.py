"""Seed claims in one process: which seeds a worker gets, leases, take-over, and the commit that ends
a claim. The races between processes are tests/store/test_store_concurrency.py."""

import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from fastseed import FastseedError
from fastseed.store import claims
from fastseed.store import Store
from fastseed.store.claims import worker_id

sys.path.insert(0, str(Path(__file__).parent))
from test_store import make_record, new_store, refused  # noqa: E402

TOP = 2**63 - 1  # the widest range a scan can ask for


class Clock:
    """The claims' wall clock, moved by hand: leases expire when the test says so, not after sleeps."""

    def __init__(self):
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(claims, "time", fake)
    return fake


def test_worker_ids_name_host_and_process_and_never_repeat():
    import os
    import socket
    ids = {worker_id() for _ in range(100)}
    assert len(ids) == 100
    host, pid, tag = next(iter(ids)).rsplit(":", 2)
    assert host == socket.gethostname() and int(pid) == os.getpid() and len(tag) == 8


def test_claims_are_the_lowest_free_seeds_as_a_brute_force_search_finds_them(tmp_path, clock):
    """Random stores (stored seeds, live and expired claims) against the plain definition."""
    rng = np.random.default_rng(0)
    for trial in range(12):
        with new_store(tmp_path / f"s{trial}.sqlite") as store:
            start, stop = int(rng.integers(0, 5)), int(rng.integers(20, 40))
            stored = set(rng.choice(45, int(rng.integers(0, 25)), replace=False).tolist())
            with store.transaction("filling"):  # one commit, one fsync
                for seed in stored:
                    store.add(make_record(seed))
            holders = {}
            for seed in rng.choice(45, 12, replace=False).tolist():
                if seed not in stored:  # half of them live, half expired
                    live = bool(rng.integers(2))
                    store.claim(seed, seed + 1, 1, "other", lease_s=60 if live else 5)
                    holders[seed] = live
            clock.now += 10  # the 5-second leases have run out
            k = int(rng.integers(1, 12))
            free = [s for s in range(start, stop) if s not in stored and not holders.get(s, False)]
            got = store.claim(start, stop, k, "me", lease_s=60)
            assert got == free[:k], (trial, start, stop, k)
            again = store.claim(start, stop, k, "me", lease_s=60)  # claimed now: the next ones
            assert again == free[k:2 * k]


def test_claim_works_over_the_widest_range(tmp_path, clock):
    with new_store(tmp_path / "s.sqlite") as store:
        for seed in (0, 1, 2, 5):
            store.add(make_record(seed))
        assert store.claim(0, TOP, 4, "a", 60) == [3, 4, 6, 7]
        assert store.claim(0, TOP, 3, "b", 60) == [8, 9, 10]
        assert store.claim(TOP - 3, TOP, 10, "c", 60) == [TOP - 3, TOP - 2, TOP - 1]
        assert store.claim(TOP - 3, TOP, 10, "c", 60) == []
        assert store.claim(5, 5, 3, "c", 60) == [] and store.claim(0, 10, 0, "c", 60) == []
        assert store.progress(0, TOP) == (4, 10)


def test_an_expired_claim_is_taken_over_and_renewing_keeps_a_claim(tmp_path, clock):
    with new_store(tmp_path / "s.sqlite") as store:
        assert store.claim(0, 10, 3, "dead", lease_s=30) == [0, 1, 2]
        assert store.claim(0, 10, 2, "alive", lease_s=30) == [3, 4]
        clock.now += 20
        store.renew("alive", lease_s=30)  # alive's lease now runs to +50, dead's to +30
        assert store.claim(0, 5, 5, "third", lease_s=30) == []
        clock.now += 15
        assert store.progress(0, 10) == (0, 2)  # dead's claims ran out, alive's did not
        assert store.claim(0, 10, 4, "third", lease_s=30) == [0, 1, 2, 5]
        holders = dict(store._conn.execute("SELECT seed, worker FROM claims"))
        assert holders == {0: "third", 1: "third", 2: "third", 3: "alive", 4: "alive", 5: "third"}


def test_a_late_commit_after_a_take_over_keeps_the_first_and_ends_every_claim(tmp_path, clock):
    with new_store(tmp_path / "s.sqlite") as store:
        assert store.claim(0, 10, 1, "slow", lease_s=10) == [0]
        clock.now += 11
        assert store.claim(0, 10, 1, "fast", lease_s=10) == [0]
        first = make_record(0)
        assert store.add(first, worker="fast") is True
        late = make_record(0)
        late.test_acc = 0.123
        assert store.add(late, worker="slow") is False
        assert store.record(0).test_acc == first.test_acc
        assert store.progress(0, 10) == (1, 0)
        assert store._conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_release_frees_a_workers_seeds_for_the_others_at_once(tmp_path, clock):
    with new_store(tmp_path / "s.sqlite") as store:
        assert store.claim(0, 10, 4, "a", 600) == [0, 1, 2, 3]
        assert store.claim(0, 10, 2, "b", 600) == [4, 5]
        store.release("a", seeds=[1, 3])
        assert store.claim(0, 10, 3, "c", 600) == [1, 3, 6]
        store.release("a")
        assert store.progress(0, 10) == (0, 5)
        assert store.claim(0, 10, 10, "c", 600) == [0, 2, 7, 8, 9]


def test_progress_and_accuracies_count_only_the_range(tmp_path, clock):
    with new_store(tmp_path / "s.sqlite") as store:
        for seed in (1, 3, 4, 8):
            store.add(make_record(seed, status="diverged" if seed == 4 else "ok"))
        store.claim(0, 6, 2, "w", 60)  # seeds 0 and 2
        assert store.progress(0, 6) == (3, 2)
        assert store.progress(3, 9) == (3, 0)
        accs = store.accuracies(2, 9)
        want = [make_record(3).test_acc, np.nan, make_record(8).test_acc]
        np.testing.assert_array_equal(accs, want)
        assert store.accuracies(20, 30).shape == (0,)


def test_a_store_opened_read_only_claims_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    new_store(path).close()
    with Store.open(path) as reader:
        assert "read-only" in refused(reader.claim, 0, 10, 1, "w", 60)
        assert "read-only" in refused(reader.add, make_record(0))
        assert reader.progress(0, 10) == (0, 0)
    with pytest.raises(FastseedError):
        Store.open(path).renew("w", 60)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


@pytest.mark.slow
def test_a_dead_process_claims_are_freed_at_once_and_other_machines_claims_are_kept(tmp_path, clock):
    """A claim names its machine (host and pid namespace) and pid: a claim of a pid that no longer
    exists on this machine is freed at the next claim, long before its lease ends; the same pid
    under another machine's name (another host, or a container with its own pids) keeps its lease."""
    import socket
    import subprocess
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    with new_store(tmp_path / "s.sqlite") as store:
        with sqlite3.connect(store.path) as db:
            db.executemany("INSERT INTO claims VALUES (?, ?, ?, ?, ?)",
                           [(0, "gone:1:aa", claims.machine(), pid, clock.now + 3600),
                            (1, "far:1:bb", claims.machine() + "-elsewhere", pid, clock.now + 3600)])
        assert store.claim(0, 4, 4, worker_id(), lease_s=60) == [0, 2, 3]
    assert claims.machine().startswith(socket.gethostname())
