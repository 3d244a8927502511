"""Every GPU of a node: one worker process per device on one store, and one bar.

    python -m fastseed.scan --seeds 100000 --gpus all        # one worker per visible GPU
    python -m fastseed.scan --seeds 8 --workers 2 --device cpu

The parent trains nothing. It makes the store, starts one child per device (`python -m
fastseed.workers.local SPEC`: the same loop as a plain scan, with its own `--pack auto`), relays
their lines, and draws one bar from the store's counts (seeds/min across all workers, ETA, running
mean ± std). Ctrl-C is forwarded: each child commits its pack in flight and exits (twice: they drop
it). A child that dies is reported with its exit code, and its claims are released at once, so the
others train its seeds. The range is complete, or not, whoever trained it: that is the outcome. A
worker whose training function raised (`--train`: its traceback relayed, exit 1) stops the others as a
Ctrl-C would: the same code would fail them too.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the parent, which
forwards it once; a GPU child sees only its GPU (CUDA_VISIBLE_DEVICES), so it creates no context on
the others.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from fastseed import EXIT_FAILED, FastseedError
from fastseed.workers.local import LEASE_S, Outcome

POLL_S = 1.0  # how often the parent reads the store's counts and its children's states
STOP_GRACE_S = 30.0  # after a second Ctrl-C, how long children get to release their claims


def pool_devices(gpus: str | None, workers: int | None, device: str) -> list[str]:
    """The devices of a scan's workers, one per worker: `--gpus all|N|I,J,…` (CUDA), or `--workers N`
    on `--device` (N CPU workers with `--device cpu`). One device: the scan trains in its own process."""
    if gpus is not None and workers is not None:
        raise FastseedError("--gpus and --workers: give one (--gpus starts one worker per GPU)")
    if workers is not None:
        if workers <= 0:
            raise FastseedError(f"--workers must be a positive number, got {workers}")
        return [device] * workers
    if gpus is None:
        return [device]
    if device != "auto":
        raise FastseedError(f"--gpus and --device {device}: give one (--gpus picks the CUDA devices)")
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise FastseedError(f"--gpus {gpus}: no CUDA GPU is visible to torch (on a CPU: --workers N --device cpu)")
    text = gpus.strip()
    if text == "all":
        return [f"cuda:{i}" for i in range(count)]
    if text.isdigit():
        n = int(text)
        if not 1 <= n <= count:
            raise FastseedError(f"--gpus {gpus}: {count} GPU(s) visible; give 1 to {count}, a list like 0,1 or all")
        return [f"cuda:{i}" for i in range(n)]
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FastseedError(f"--gpus {gpus}: expected all, a count, or GPU indices like 0,1,2") from None
    bad = [i for i in ids if not 0 <= i < count]
    if not ids or bad or len(set(ids)) != len(ids):
        raise FastseedError(f"--gpus {gpus}: {count} GPU(s) visible (0 to {count - 1}); each index once")
    return [f"cuda:{i}" for i in ids]


@dataclass
class Child:
    """One worker process and what the parent knows of it."""
    name: str             # cuda:3, or cpu#1
    worker: str           # its claims' worker id
    proc: subprocess.Popen
    relay: threading.Thread | None = None  # copies its lines above the bar
    error: str | None = None  # its one-line refusal, if it had one
    lines: list = field(default_factory=list)
    reported: bool = False


def _spawn(name: str, device: str, spec: dict) -> subprocess.Popen:
    env = dict(os.environ)
    options = dict(spec["options"], device=device)
    if device.startswith("cuda:"):  # the child sees only its GPU, as cuda:0
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        options["device"] = "cuda"
    argv = [sys.executable, "-m", "fastseed.workers.local", json.dumps(dict(spec, options=options))]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)


def _relay(child: Child, write: Callable[[str], None]) -> None:
    for line in child.proc.stdout:
        line = line.rstrip("\n")
        if line.startswith("error: "):
            child.error = line[len("error: "):]
        if line.strip():
            write(f"[{child.name}] {line}")


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _signal(children: list[Child], signum: int) -> None:
    for child in children:
        if child.proc.poll() is None:
            try:
                child.proc.send_signal(signum)
            except ProcessLookupError:
                pass


def scan_pool(job, out, start: int, end: int, devices: list[str], *, stop_flag, quiet: bool = False,
              lease_s: float = LEASE_S, log: Callable[[str], None] = print,
              until: Callable[[], bool] | None = None) -> Outcome:
    """Train the range with one child process per device on the store at `out`. `until()` (a stopping
    rule, asked as the store is polled): once true, the children are stopped as by a Ctrl-C (each
    commits its pack in flight)."""
    from fastseed.store import Store
    from fastseed.store.claims import worker_id
    from fastseed.workers.progress import Progress, summary
    protocol, total = job.protocol, end - start
    with Store(out, protocol.name, protocol.hash, protocol.to_json()) as store:  # made once, here
        stored, live = store.progress(start, end)
        # a worker's name is its device, numbered when several share one (CPU workers always do)
        names = [d if devices.count(d) == 1 else f"{d}#{i}" for i, d in enumerate(devices)]
        others = f", {live} claimed by other workers" if live else ""
        log(f"{protocol.name} [{protocol.hash[:12]}]: {total - stored} of {total} seeds to train{others}, {stored} "
            f"already in {out}; {len(devices)} workers: {', '.join(names)}")
        if stored >= total or (until is not None and until()):
            return Outcome(stored >= total, stored, total, summary(store.accuracies(start, end), store.metric()))
        cpu_workers = sum(d.startswith("cpu") for d in devices)
        threads = None  # CPU workers share the cores (unless OMP_NUM_THREADS says otherwise)
        if cpu_workers and "OMP_NUM_THREADS" not in os.environ:
            threads = max(1, (os.cpu_count() or 1) // cpu_workers)
        spec = dict(protocol=protocol.to_json(), options=job.options.to_dict(), store=str(os.path.abspath(out)),
                    start=start, end=end, lease_s=lease_s, workers=len(devices), seed_lines=quiet, threads=threads)
        progress = Progress(total, stored, store.accuracies(start, end), quiet)
        run_id = worker_id()
        children = []
        try:
            for name, device in zip(names, devices):
                worker = f"{run_id}/{name}"
                child = Child(name, worker, _spawn(name, device, dict(spec, worker=worker)))
                child.relay = threading.Thread(target=_relay, args=(child, progress.write), daemon=True)
                child.relay.start()
                children.append(child)
            stop_flag.doing = f"stopping the {len(devices)} workers once they commit their packs in flight"
            stop_flag.start_training()
            failed = _watch(children, store, start, end, stop_flag, progress, until)
        except KeyboardInterrupt:  # a second Ctrl-C: the children drop their packs in flight
            _signal(children, signal.SIGINT)
            _wait(children, STOP_GRACE_S)
            failed = 0
        finally:
            _signal(children, signal.SIGKILL)  # none is left running, whatever happened here
            for child in children:
                child.proc.wait()
                child.relay.join(timeout=5)  # its last lines, before the bar's last state
                _release_all(store, child.worker)
            stored = store.progress(start, end)[0]
            progress.set(stored, store.accuracies(start, end), store.metric())
            progress.close()
        refused = [c for c in children if c.proc.returncode == 2 and c.error]
        if len(refused) == len(children):  # the same bad input for all (missing data, …): one line
            raise FastseedError(refused[0].error)
        raised = next((c.error for c in children if c.proc.returncode == EXIT_FAILED and c.error), None)
        return Outcome(stored >= total, stored, total, progress.summary(), failed=failed, error=raised)


def _watch(children: list[Child], store, start: int, end: int, stop_flag, progress, until=None) -> int:
    """Until every child has exited: forward a stop (a signal, or `until()` turned true), report
    deaths (their claims go back to the pool at once), redraw the bar. Returns how many children
    failed."""
    forwarded, failed = False, 0
    while True:
        if not forwarded and not stop_flag and until is not None and until():
            progress.write(f"the stopping rule has decided: stopping the {len(children)} workers once they "
                           f"commit their packs in flight")
            _signal(children, signal.SIGINT)
            forwarded = True
        if stop_flag and not forwarded:
            _signal(children, signal.SIGINT)
            forwarded = True
        running = 0
        for child in children:
            code = child.proc.poll()
            if code is None:
                running += 1
            elif not child.reported:
                child.reported = True
                if code == 0 or (code == 130 and forwarded):
                    continue
                failed += 1
                _release_all(store, child.worker)
                why = f": {child.error}" if child.error else ""
                progress.write(f"worker {child.name} (pid {child.proc.pid}) stopped: {_exit_reason(code)}{why}; "
                               f"its claimed seeds go back to the pool")
                if code == EXIT_FAILED and child.error and not forwarded:  # the user's function raised: the
                    progress.write("stopping the other workers once they commit their packs in flight (the "
                                   "training function raised: its traceback is above)")  # others would too
                    _signal(children, signal.SIGINT)
                    forwarded = True
        progress.set(store.progress(start, end)[0], store.accuracies(start, end), store.metric())
        if not running:
            return failed
        if forwarded:
            time.sleep(POLL_S)
        else:
            stop_flag.wait(POLL_S)


def _release_all(store, worker: str) -> None:
    try:
        store.release(worker)
    except FastseedError:
        pass  # (a full disk) the lease runs out instead


def _wait(children: list[Child], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for child in children:
        try:
            child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass

