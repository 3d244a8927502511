"""The worker loop (`work`): workers racing on one new store partition the seeds — every seed trained
once, none lost, none twice; a worker killed mid-pack loses nothing; a lease is renewed while a long
pack trains; a frozen worker's seeds are taken over once its lease runs out.

Workers are separate processes (tests/workers/local_worker.py) running `work()` exactly as a scan does,
on a tiny CIFAR protocol (real CIFAR-10, 200 images, one epoch: milliseconds a seed)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastseed.data.cifar import load_cifar10
from fastseed.store import Store
from processes import ROOT, Process, wait_until

sys.path.insert(0, str(Path(__file__).parent))
from local_worker import TINY  # noqa: E402

WORKER = Path(__file__).with_name("local_worker.py")
POLL_S = 0.05  # a worker with nothing left to claim looks again this often (a scan: every second)

pytestmark = pytest.mark.slow  # every test here races worker processes


@pytest.fixture(scope="module")
def data(real_cifar_root, tmp_path_factory) -> Path:
    """The 200 images the workers train and test on, read once and handed over as an .npz."""
    full = load_cifar10(real_cifar_root)
    path = tmp_path_factory.mktemp("local") / "tiny.npz"
    np.savez(path, train_x=full.train_x[: TINY.train_size], train_y=full.train_y[: TINY.train_size],
             test_x=full.test_x[: TINY.test_size], test_y=full.test_y[: TINY.test_size])
    return path


def launch(data, path, start, stop, report, *, pack=2, lease_s=60.0, pause_s=0.0, started=None, ready=None,
           go=None, rounds=None) -> tuple[Process, Path]:
    """One worker over [start, stop), as a scan runs it; it writes what it trained and committed to
    `report`. `ready`/`go`: it says when it is ready and waits for the go before it touches the store.
    `rounds`: several such runs, one after another in the same process (`path` etc. then unused)."""
    if rounds is None:
        rounds = [{"store": path, "start": start, "end": stop, "report": report, "started": started,
                   "ready": ready, "go": go}]
    rounds = [{key: str(value) if isinstance(value, Path) else value for key, value in run.items()}
              for run in rounds]
    spec = {"data": str(data), "pack": pack, "lease_s": lease_s, "pause_s": pause_s, "poll_s": POLL_S,
            "rounds": rounds}
    spec_path = report.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    return Process([sys.executable, WORKER, spec_path], report.parent, name=report.stem), report


def wait_for(path: Path, workers, timeout=120.0) -> None:
    """Until `path` exists; a worker that dies first fails the test with its output."""
    wait_until(path.exists, path.name, [proc for proc, _ in workers], timeout, poll_s=0.01)


def finish(workers, timeout=120) -> list[dict]:
    for proc, _ in workers:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    codes = [proc.returncode for proc, _ in workers]
    logs = "\n".join(proc.stdout_text() + proc.stderr_text() for proc, _ in workers)
    assert codes == [0] * len(workers), logs
    return [json.loads(report.read_text()) if report.exists() else None for _, report in workers]


def started_seeds(started: Path, worker) -> list[int]:
    wait_for(started, [worker], timeout=60)
    return json.loads(started.read_text())


def assert_stored_once(path, seeds) -> None:
    """Every seed of the union stored, each by one commit; SQLite finds the file sound; no claim left."""
    with Store.open(path) as store:
        records = store.records()
    assert [r.seed for r in records] == sorted(seeds)
    assert all(r.status == "ok" and r.protocol_hash == TINY.hash and len(r.predictions) == 100 for r in records)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


RANGES = {"equal": [(0, 6)] * 3, "overlapping": [(0, 4), (2, 6), (4, 8)]}


def test_three_workers_started_together_on_a_new_store_train_every_seed_once(data, tmp_path):
    """Issue #12's acceptance, 10 races: records = seeds, no duplicates, integrity ok, every worker
    done (it returns only when the whole range is stored, whoever trained it). Three processes run
    the ten races one after another; each race starts when all three are ready for it."""
    races = [("equal" if race % 2 == 0 else "overlapping") for race in range(10)]
    rounds = [[{"store": tmp_path / f"race{race}" / "s.sqlite", "start": RANGES[shape][i][0],
                "end": RANGES[shape][i][1], "report": tmp_path / f"race{race}-{i}.json", "started": None,
                "ready": tmp_path / f"race{race}-{i}.ready", "go": tmp_path / f"race{race}.go"}
               for race, shape in enumerate(races)] for i in range(3)]
    workers = [launch(data, None, None, None, tmp_path / f"worker{i}.json", rounds=rounds[i]) for i in range(3)]
    try:
        for race in range(len(races)):
            for i in range(3):
                wait_for(rounds[i][race]["ready"], workers)
            (tmp_path / f"race{race}.go").touch()  # all three at the store's door: they reach it together
    except BaseException:
        for proc, _ in workers:
            proc.kill()
        raise
    finish(workers)  # every process exits 0 (else the test fails with their logs)
    shared = 0
    for race, shape in enumerate(races):
        path = tmp_path / f"race{race}" / "s.sqlite"
        reports = [json.loads(rounds[i][race]["report"].read_text()) for i in range(3)]
        seeds = set().union(*(range(a, b) for a, b in RANGES[shape]))
        assert all(r["complete"] for r in reports)
        trained = sorted(s for r in reports for s in r["trained"])
        assert trained == sorted(seeds), (race, shape)  # each seed trained by exactly one worker, once
        assert sorted(s for r in reports for s in r["committed"]) == sorted(seeds)
        assert_stored_once(path, seeds)
        shared += sum(1 for r in reports if r["trained"]) >= 2
    assert shared >= 2  # the workers did race: the work was split, not done by whoever came first


def test_a_worker_killed_mid_pack_loses_nothing_and_its_seeds_are_trained_once(data, tmp_path):
    """SIGKILL while a pack trains: the pack was never committed; its seeds go to the next worker at
    once (its process is gone: no need to wait out the 60-s lease), nothing lost, nothing twice."""
    path = tmp_path / "s.sqlite"
    victim = launch(data, path, 0, 6, tmp_path / "victim.json", pack=3, pause_s=60, started=tmp_path / "started")
    survivor = launch(data, path, 0, 6, tmp_path / "survivor.json", ready=tmp_path / "ready", go=tmp_path / "go")
    assert started_seeds(tmp_path / "started", victim) == [0, 1, 2]
    wait_for(tmp_path / "ready", [survivor])
    victim[0].kill()
    victim[0].wait()
    t0 = time.monotonic()
    (tmp_path / "go").touch()
    (report,) = finish([survivor])
    assert report["complete"] and sorted(report["trained"]) == [0, 1, 2, 3, 4, 5]
    assert time.monotonic() - t0 < 30  # not after the lease: the dead process's claims were dropped
    assert_stored_once(path, range(6))


def test_a_lease_is_renewed_while_a_long_pack_trains(data, tmp_path):
    """A pack that trains for 5 leases keeps its seeds: a second worker trains the others and waits
    for them, never trains them too."""
    path = tmp_path / "s.sqlite"
    slow = launch(data, path, 0, 6, tmp_path / "slow.json", pack=2, lease_s=1.5, pause_s=7.5,
                  started=tmp_path / "started")
    other = launch(data, path, 0, 6, tmp_path / "other.json", pack=2, lease_s=1.5, ready=tmp_path / "ready",
                   go=tmp_path / "go")
    assert started_seeds(tmp_path / "started", slow) == [0, 1]
    wait_for(tmp_path / "ready", [other])
    (tmp_path / "go").touch()  # while the slow pack still has leases to run
    slow_report, other_report = finish([slow, other])
    assert set(slow_report["trained"]) & set(other_report["trained"]) == set()
    assert {0, 1} <= set(slow_report["trained"])
    assert sorted(slow_report["trained"] + other_report["trained"]) == list(range(6))
    assert slow_report["complete"] and other_report["complete"]
    assert_stored_once(path, range(6))


def test_a_frozen_workers_seeds_are_taken_over_when_its_lease_runs_out(data, tmp_path):
    """A worker that stops renewing (a machine lost, a process frozen) but still exists keeps its
    seeds for its lease, then loses them to a worker that asks; the range completes without it."""
    path = tmp_path / "s.sqlite"
    frozen = launch(data, path, 0, 4, tmp_path / "frozen.json", pack=2, lease_s=1.5, pause_s=60,
                    started=tmp_path / "started")
    taker = launch(data, path, 0, 4, tmp_path / "taker.json", lease_s=1.5, ready=tmp_path / "ready",
                   go=tmp_path / "go")
    assert started_seeds(tmp_path / "started", frozen) == [0, 1]
    wait_for(tmp_path / "ready", [taker])
    os.kill(frozen[0].pid, signal.SIGSTOP)  # the lease thread stops too: no more renewals
    try:
        t0 = time.monotonic()
        (tmp_path / "go").touch()
        (report,) = finish([taker])
        waited = time.monotonic() - t0
    finally:
        frozen[0].kill()
        frozen[0].wait()
    assert report["complete"] and sorted(report["trained"]) == [0, 1, 2, 3]
    assert waited >= 1.0  # seeds 0 and 1 came only when the frozen worker's lease had run out
    assert_stored_once(path, range(4))


# ---- the stop flag, from the first statement to the last (issue #23) ------------------------------

def test_the_stop_flag_stops_at_once_before_a_write_at_a_safe_point_after_and_never_in_the_end():
    """Before anything is written a signal ends the process at once with one line (nothing is raised into
    what runs then: an import, a read); once a store is open it waits for a safe point; while training
    the first finishes the pack and the second drops it; at the end it only raises the flag."""
    from fastseed.workers.local import StartupInterrupted, StopFlag
    flag = StopFlag()
    flag.opening()
    flag(signal.SIGTERM, None)
    assert flag and flag.state == "opening"
    with pytest.raises(StartupInterrupted, match="SIGTERM during start-up: stopped before training any seed"):
        flag.start_training()

    flag = StopFlag()
    flag.start_training()
    flag(signal.SIGINT, None)  # the pack in flight finishes
    assert flag and flag.signum == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        flag(signal.SIGINT, None)  # dropped
    flag = StopFlag()
    flag.start_training()
    flag.closing()
    flag(signal.SIGINT, None)
    flag(signal.SIGTERM, None)  # nothing raised: the scan ends as it was ending
    assert flag.signum == signal.SIGINT


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True], ids=["scan", "pool worker"])
def test_a_signal_before_anything_is_written_ends_the_process_with_one_line_and_130(quiet):
    script = ("import os, signal, time\n"
              "from fastseed.workers.local import StopFlag\n"
              f"with StopFlag(quiet={quiet}).installed():\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    time.sleep(30)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 130
    assert done.stderr == ("" if quiet else "fastseed.scan: SIGTERM during start-up: stopped before training any seed\n")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_python_tears_down_a_finished_command_leaves_its_exit_code(signum):
    """Found by tests/faults/ (a second SIGTERM 0.3 s after the first, while `python -m fastseed.scan`
    was exiting, ended it with -15): Python's finalization puts back the default action of a signal
    whose handler is a Python function, so a command line's StopFlag leaves the stop signals ignored
    once its block ends. Here the signal lands while the interpreter tears its modules down."""
    script = ("import os, signal, sys, time\n"
              "from fastseed.workers.local import StopFlag\n"
              "class Late:\n"
              "    def __del__(self):  # runs while the interpreter clears the modules\n"
              f"        os.kill(os.getpid(), {int(signum)})\n"
              "        time.sleep(0.2)\n"
              "late = Late()\n"
              "with StopFlag().installed(keep=True):\n"
              "    pass\n"
              "sys.exit(130)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert (done.returncode, done.stderr) == (130, "")
