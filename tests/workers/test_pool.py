"""A pool: `--workers N --device cpu` (as `--gpus` on a GPU node) runs N worker processes on one store
with one bar; a worker killed mid-seed is reported and its seed trained by another; Ctrl-C stops them
all after their seeds in flight, and the rerun completes the range. Real scans of smoke at small scale
(tests/scans.py), as a user runs them; which devices `--gpus` means is checked against a pretend 4-GPU
machine."""

import os
import subprocess
import signal
import sqlite3
import sys

import pytest
import torch

from fastseed import FastseedError
from fastseed.workers.pool import pool_devices
from processes import Process, children, run
from scans import SMALL_SET, STOP_TIMEOUT_S, assert_complete, claims, committed, scan_argv


def both_training(scan, out):
    """Both workers hold a claim: each is training a seed."""
    return lambda: len(workers := children(scan.pid)) == 2 and set(workers) <= set(claims(out).values())


@pytest.mark.slow
def test_two_cpu_workers_share_the_range_with_one_bar_and_a_killed_one_gives_its_seed_back(
        real_cifar_root, tmp_path):
    out = tmp_path / "s.sqlite"
    with Process(scan_argv(real_cifar_root, out, "--seeds", 2, "--workers", 2, *SMALL_SET), tmp_path,
                 name="scan") as scan:
        scan.wait_until(both_training(scan, out), "both workers to train")
        victim = max(children(scan.pid))  # the worker started second: cpu#1
        os.kill(victim, signal.SIGKILL)
        assert scan.wait(timeout=300) == 0  # the other worker trained both seeds: the range is complete
    printed, bar = scan.stdout_text(), scan.stderr_text()
    assert f"worker cpu#1 (pid {victim}) stopped: killed by SIGKILL; its claimed seeds go back to the pool" in printed
    assert "2 workers: cpu#0, cpu#1" in printed
    assert "2/2" in bar and "seeds/min" in bar and "acc " in bar  # the one bar, drawn by the parent
    assert "Traceback" not in bar
    records = committed(out)
    for seed, record in zip([0, 1], records, strict=True):
        assert_complete(record, seed)
    with sqlite3.connect(out) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_after_its_seed_in_flight_and_the_rerun_completes(real_cifar_root, tmp_path):
    out = tmp_path / "s.sqlite"
    argv = scan_argv(real_cifar_root, out, "--seeds", 4, "--workers", 2, "--no-progress", *SMALL_SET)
    with Process(argv, tmp_path, name="scan") as scan:
        scan.wait_until(both_training(scan, out), "both workers to train")
        scan.send_signal(signal.SIGINT)
        assert scan.wait(timeout=STOP_TIMEOUT_S) == 130
    errors = scan.stderr_text()
    assert "SIGINT: stopping the 2 workers once they commit their packs in flight" in errors
    assert "rerun the same command to resume" in errors and "Traceback" not in errors + scan.stdout_text()
    stopped = committed(out)
    assert [r.seed for r in stopped] == [0, 1]  # the two seeds in flight, finished and committed
    for seed, record in enumerate(stopped):
        assert_complete(record, seed)

    rerun = run(argv, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 of 4 seeds to train" in rerun.stdout
    done = committed(out)
    assert [r.seed for r in done] == [0, 1, 2, 3] and done[:2] == stopped


# ---- which devices ----------------------------------------------------------------------------

@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


def test_gpus_name_the_devices_of_one_worker_each(four_gpus):
    cuda = [f"cuda:{i}" for i in range(4)]
    assert pool_devices("all", None, "auto") == cuda
    assert pool_devices("2", None, "auto") == cuda[:2]
    assert pool_devices("3,1", None, "auto") == ["cuda:3", "cuda:1"]
    assert pool_devices(None, 3, "cpu") == ["cpu"] * 3
    assert pool_devices(None, None, "cuda:2") == ["cuda:2"]  # the plain command: this process, one device


@pytest.mark.parametrize("gpus,workers,device,phrase", [
    ("5", None, "auto", "4 GPU(s) visible; give 1 to 4"),
    ("0,4", None, "auto", "4 GPU(s) visible (0 to 3)"),
    ("1,1", None, "auto", "each index once"),
    ("one", None, "auto", "expected all, a count, or GPU indices"),
    ("all", 2, "auto", "--gpus and --workers: give one"),
    ("all", None, "cpu", "--gpus and --device cpu: give one"),
    (None, 0, "cpu", "--workers must be a positive number"),
])
def test_bad_device_choices_are_one_line(four_gpus, gpus, workers, device, phrase):
    with pytest.raises(FastseedError) as e:
        pool_devices(gpus, workers, device)
    assert phrase in str(e.value) and "\n" not in str(e.value)


def test_gpus_without_a_gpu_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FastseedError, match="no CUDA GPU is visible"):
        pool_devices("all", None, "auto")


# ---- how many workers, and a stop while they start (issue #23) ----------------------------------

class FakeJob:
    """What `capped` asks of a job: the memory it holds in a worker beyond the runtime."""

    def __init__(self, held: int):
        self.held = held

    def worker_bytes(self) -> int:
        return self.held


def test_workers_are_capped_by_the_seeds_left_the_cores_and_the_memory_in_one_line(monkeypatch):
    """Issue #23.1: `--workers 1000 --seeds 2` started 145 torch processes and 11.7 GB before it was
    stopped. Each limit caps alone, and the line names the one that did."""
    from fastseed.workers import pool
    monkeypatch.setattr(pool, "cores", lambda: 16)
    monkeypatch.setattr(pool, "resident_bytes", lambda: 2**30)  # a worker's runtime: 1 GiB, + 1 GiB of job
    monkeypatch.setattr("fastseed.engine.autopack.available_memory", lambda: 10 * 2**30)
    lines = []
    assert pool.capped(["cpu"] * 1000, 2, FakeJob(2**30), lines.append) == ["cpu"] * 2
    assert pool.capped(["cpu"] * 1000, 100, FakeJob(2**30), lines.append) == ["cpu"] * 4  # 80 % of 10 GiB
    assert pool.capped(["cpu"] * 1000, 100, FakeJob(0), lines.append) == ["cpu"] * 8
    monkeypatch.setattr("fastseed.engine.autopack.available_memory", lambda: 2**40)
    assert pool.capped(["cpu"] * 1000, 100, FakeJob(0), lines.append) == ["cpu"] * 16
    assert pool.capped(["cuda:0", "cuda:1"], 100, FakeJob(0), lines.append) == ["cuda:0", "cuda:1"]  # no cap
    assert pool.capped(["cpu"] * 3, 100, FakeJob(0), lines.append) == ["cpu"] * 3
    assert lines == ["1000 workers asked for, starting 2: 2 seed(s) left to train",
                     "1000 workers asked for, starting 4: memory for 4 (about 2.0 GiB a worker, 10.0 GiB available)",
                     "1000 workers asked for, starting 8: memory for 8 (about 1.0 GiB a worker, 10.0 GiB available)",
                     "1000 workers asked for, starting 16: 16 CPU core(s)"]


@pytest.mark.slow
def test_workers_1000_on_this_machine_start_what_it_holds_and_say_so(real_cifar_root, tmp_path, monkeypatch, capsys):
    """The acceptance of issue #23: the parent starts at most the cores here, and says so in one line
    (the workers are stand-ins that exit at once: what is checked is how many start)."""
    from fastseed import scan
    from fastseed.workers import pool
    started = []

    def spawn(name, device, spec):
        started.append(name)
        return subprocess.Popen([sys.executable, "-c", "pass"], stdout=subprocess.PIPE, text=True)

    monkeypatch.setattr(pool, "_spawn", spawn)
    argv = ["--preset", "smoke", "--device", "cpu", "--data-dir", str(real_cifar_root), "--out", str(tmp_path / "s.sqlite"),
            "--no-progress", "--seeds", "100", "--workers", "1000"]
    assert scan.main(argv) == 1  # the stand-ins trained nothing
    asked = [line for line in capsys.readouterr().out.splitlines() if "workers asked for" in line]
    assert len(started) == min(len(os.sched_getaffinity(0)), 100) < 1000
    # one line, naming the limit(s) that capped it: the cores, or the memory a worker needs (estimated
    # from this process's size, large late in a test session), or both when they tie
    n = len(started)
    assert len(asked) == 1 and asked[0].startswith(f"1000 workers asked for, starting {n}: ")
    assert f"{n} CPU core(s)" in asked[0] or f"memory for {n} (" in asked[0]


@pytest.mark.slow
def test_a_stop_sent_to_a_worker_still_starting_python_ends_it_quietly_with_130(tmp_path):
    """Issue #23.3: a worker stopped while Python started printed a KeyboardInterrupt traceback, and
    the parent reported it "killed by SIGINT", as failed. It starts with the stop signals blocked, so a
    SIGINT sent before its handler exists waits for it: exit 130, not a line printed."""
    from fastseed.workers.pool import _spawn
    spec = {"protocol": "{}", "options": {}, "store": str(tmp_path / "s.sqlite"), "start": 0, "end": 1}
    proc = _spawn("cpu#0", "cpu", spec)
    proc.send_signal(signal.SIGINT)  # at once: the child is still being created
    assert proc.wait(timeout=60) == 130
    assert proc.stdout.read() == ""
    assert not (tmp_path / "s.sqlite").exists()
