"""Processes a test starts: one run to its end, or one in the background that the test waits on (a
line printed, a file written) and that is never left running when the test ends or fails.

    with Process([sys.executable, "-m", "fastseed.scan", ...], tmp_path, name="scan") as scan:
        scan.wait_until(lambda: "seed 0: ok" in scan.stdout_text(), "seed 0 to be committed")
        scan.send_signal(signal.SIGINT)
        assert scan.wait(timeout=STOP_TIMEOUT_S) == 130
    assert "Traceback" not in scan.stderr_text()

A background process writes its stdout and stderr to files in its folder, never to a pipe: a pipe
nobody reads fills up and blocks the child. Every child imports this checkout's fastseed (first on
PYTHONPATH, installed or not), reads data only from its command line (FASTSEED_DATA is dropped), and by
default runs one OpenMP thread: the tests share two cores with pytest and with each other's
processes, and two threads fighting over a busy core made one smoke seed take 5 s or 35 s by chance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # for anything a child is waited on for: start-up and a few seeds on a loaded 2-core machine


def environment(one_thread: bool = True) -> dict:
    """The environment of a child (see the module's docstring). `one_thread=False` leaves the thread
    count as this process has it: a child whose float sums are compared with this process's."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("FASTSEED_DATA", None)
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    return env


def run(argv: list, cwd: Path | None = None, timeout: float = TIMEOUT_S, one_thread: bool = True,
        ) -> subprocess.CompletedProcess:
    """`argv` run to its end; its output captured as text."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=environment(one_thread), capture_output=True,
                          text=True, timeout=timeout)


def wait_until(ready: Callable[[], bool], what: str, processes: Iterable[Process], timeout: float = TIMEOUT_S,
               poll_s: float = 0.1) -> None:
    """Poll `ready()`; fail the test with a process's stderr if it exits first, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while not ready():
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"{process.name} exited with {process.returncode} before {what}:\n{process.stderr_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(poll_s)


class Process(subprocess.Popen):
    """`argv` started in `folder` (its working directory), its stdout and stderr written to
    `folder/<name>.stdout` and `.stderr`. As a context manager it is killed and waited for on exit
    if it still runs."""

    def __init__(self, argv: list, folder: Path, name: str = "process", one_thread: bool = True):
        self.name = name
        self.stdout_path, self.stderr_path = folder / f"{name}.stdout", folder / f"{name}.stderr"
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            super().__init__([str(a) for a in argv], cwd=folder, env=environment(one_thread),
                             stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)

    def stdout_text(self) -> str:
        """What it printed so far."""
        return self.stdout_path.read_text()

    def stderr_text(self) -> str:
        """What it wrote to stderr so far."""
        return self.stderr_path.read_text()

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
        wait_until(ready, what, [self], timeout)

    def __exit__(self, *exc):
        if self.poll() is None:
            self.kill()
        return super().__exit__(*exc)


def children(pid: int) -> list[int]:
    """The processes a process started (Linux); none once it is gone."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (a pool's workers start sessions of their own: no process group holds
    them)."""
    return [p for child in children(pid) for p in [child, *descendants(child)]]


def kill_all(pids: Iterable[int], timeout: float = TIMEOUT_S) -> None:
    """SIGKILL every pid, then wait until none runs any more: a kill lands when its process next leaves
    the kernel, so a write it was making (a commit's last page) still completes after os.kill returns.
    A process that is gone or a zombie (dead, not yet reaped by its parent) counts as stopped."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            pytest.fail(f"processes {[p for p in pids if _running(p)]} still run {timeout} s after SIGKILL")
        time.sleep(0.01)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
