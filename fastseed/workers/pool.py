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
the others. `--gpus` counts the GPUs this process sees: under an inherited CUDA_VISIBLE_DEVICES
(Slurm, a shared box: `4,5`) its index i is that list's i-th entry, and the child is given that entry,
never i itself; CUDA_DEVICE_ORDER, which says what an index means, is passed on unchanged. The parent
says which physical GPUs its workers have (name, UUID, PCI bus).

The parent reads only what is new in the store each second (the accuracies committed since its last
read, and counts that skip the stored prefix), so its polling costs the same at 10^5 seeds as at 10.

A child starts with SIGINT and SIGTERM blocked and unblocks them once its handler is in
place: a stop forwarded while it was still starting Python is taken then (it exits 130, quietly), not
lost and not a KeyboardInterrupt traceback.

No more workers start than the machine can hold: seeds left to train, cores for CPU workers, and the
memory a worker needs (an estimate: `worker_bytes`); one line says so when that caps `--workers`.
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
from fastseed.workers.local import LEASE_S, STOP_SIGNALS, Outcome

POLL_S = 1.0  # how often the parent reads the store's counts and its children's states
STOP_GRACE_S = 30.0  # after a second Ctrl-C, how long children get to release their claims
MEMORY_SHARE = 0.8  # of the available memory, what a pool's workers may take together


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


def cores() -> int:
    """The CPU cores this process may run on (its affinity: a Slurm or container limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resident_bytes() -> int:
    """This process's resident memory (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def worker_bytes(job) -> int:
    """Host memory one worker process needs, estimated: this process's resident memory now (Python,
    torch and fastseed loaded, no data yet: a worker's runtime, its shared libraries counted in full,
    so the estimate errs high) and what the job holds on top (`job.worker_bytes()`: its data set while it
    is read, a seed's training step on a CPU)."""
    return resident_bytes() + job.worker_bytes()


def capped(devices: list[str], left: int, job, log: Callable[[str], None]) -> list[str]:
    """The first of `devices` the machine can hold: no more workers than seeds `left` to train, CPU
    workers no more than the cores, and all of them within MEMORY_SHARE of the available memory (one
    line says which limit, when one does)."""
    from fastseed.engine.autopack import available_memory
    limits = [(max(1, left), f"{left} seed(s) left to train")]
    if any(d.startswith("cpu") for d in devices):
        limits.append((cores(), f"{cores()} CPU core(s)"))
    per, available = worker_bytes(job), available_memory()
    fit = max(1, int(MEMORY_SHARE * available // max(per, 1)))
    limits.append((fit, f"memory for {fit} (about {per / 2**30:.1f} GiB a worker, {available / 2**30:.1f} GiB "
                        f"available)"))
    k = min(len(devices), *(n for n, _ in limits))
    if k < len(devices):
        why = "; ".join(reason for n, reason in limits if n == k)
        log(f"{len(devices)} workers asked for, starting {k}: {why}")
    return devices[:k]


def visible_gpu(index: int, environ=os.environ) -> str:
    """The CUDA_VISIBLE_DEVICES entry that makes a child see this process's GPU `index` (torch's
    cuda:index): the index-th entry of the inherited list (an index, or a GPU-/MIG- UUID), or the
    index itself when none is inherited. Read under the same CUDA_DEVICE_ORDER, it names the same GPU."""
    inherited = environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        return str(index)
    entries = [e.strip() for e in inherited.split(",") if e.strip()]
    if not 0 <= index < len(entries):
        raise FastseedError(f"cuda:{index}: CUDA_VISIBLE_DEVICES={inherited} has no entry {index}")
    return entries[index]


def gpu_line(devices: list[str], environ=os.environ) -> str | None:
    """Which physical GPUs the workers have: 'cuda:0 = GPU 4 (NVIDIA H100 80GB HBM3, GPU-8f1…,
    PCI 0000:41:00.0), …', with the device order the entries are read in."""
    import torch
    parts = []
    for device in devices:
        if not device.startswith("cuda:"):
            continue
        index = int(device.split(":", 1)[1])
        props = torch.cuda.get_device_properties(index)
        uuid, bus = getattr(props, "uuid", None), getattr(props, "pci_bus_id", None)
        domain, slot = getattr(props, "pci_domain_id", None), getattr(props, "pci_device_id", None)
        where = [f"GPU-{uuid}" if uuid is not None else None,
                 f"PCI {domain:04x}:{bus:02x}:{slot:02x}.0" if None not in (domain, bus, slot) else None]
        parts.append(f"{device} = GPU {visible_gpu(index, environ)} ({', '.join([props.name] + [w for w in where if w])})")
    if not parts:
        return None
    order = environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST (CUDA's default; nvidia-smi numbers by PCI bus)")
    inherited = environ.get("CUDA_VISIBLE_DEVICES")
    return (f"GPUs: {'; '.join(parts)}; CUDA_DEVICE_ORDER={order}"
            + (f"; inherited CUDA_VISIBLE_DEVICES={inherited}" if inherited is not None else ""))


def _spawn(name: str, device: str, spec: dict) -> subprocess.Popen:
    env = dict(os.environ)  # CUDA_DEVICE_ORDER included: the child reads its entry as this process would
    options = dict(spec["options"], device=device)
    if device.startswith("cuda:"):  # the child sees only its GPU, as cuda:0
        env["CUDA_VISIBLE_DEVICES"] = visible_gpu(int(device.split(":", 1)[1]))
        options["device"] = "cuda"
    argv = [sys.executable, "-m", "fastseed.workers.local", json.dumps(dict(spec, options=options))]
    # the child inherits this thread's signal mask: blocked until its StopFlag is installed
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


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
    stop_flag.opening()
    with Store(out, protocol.name, protocol.hash, protocol.to_json()) as store:  # made once, here
        stored, live = store.progress(start, end)
        if stored < total:
            devices = capped(devices, total - stored - live, job, log)
        # a worker's name is its device, numbered when several share one (CPU workers always do)
        names = [d if devices.count(d) == 1 else f"{d}#{i}" for i, d in enumerate(devices)]
        others = f", {live} claimed by other workers" if live else ""
        log(f"{protocol.name} [{protocol.hash[:12]}]: {total - stored} of {total} seeds to train{others}, {stored} "
            f"already in {out}; {len(devices)} workers: {', '.join(names)}")
        if stored >= total or (until is not None and until()):
            return Outcome(stored >= total, stored, total, summary(store.accuracies(start, end), store.metric()))
        if (gpus := gpu_line(devices)) is not None:
            log(gpus)
        cpu_workers = sum(d.startswith("cpu") for d in devices)
        threads = None  # CPU workers share the cores (unless OMP_NUM_THREADS says otherwise)
        if cpu_workers and "OMP_NUM_THREADS" not in os.environ:
            threads = max(1, cores() // cpu_workers)
        spec = dict(protocol=protocol.to_json(), options=job.options.to_dict(), store=str(os.path.abspath(out)),
                    start=start, end=end, lease_s=lease_s, workers=len(devices), seed_lines=quiet, threads=threads)
        accs, row = store.accuracies_after(start, end)
        progress = Progress(total, stored, accs, quiet, store.metric())
        run_id = worker_id()
        children = []
        stop_flag.doing = f"stopping the {len(devices)} workers once they commit their packs in flight"
        stop_flag.start_training()  # a stop now reaches the workers, starting or not
        try:
            for name, device in zip(names, devices):
                worker = f"{run_id}/{name}"
                child = Child(name, worker, _spawn(name, device, dict(spec, worker=worker)))
                child.relay = threading.Thread(target=_relay, args=(child, progress.write), daemon=True)
                child.relay.start()
                children.append(child)
            failed = _watch(children, store, start, end, stop_flag, progress, until, row)
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


def _watch(children: list[Child], store, start: int, end: int, stop_flag, progress, until=None, row: int = 0) -> int:
    """Until every child has exited: forward a stop (a signal, or `until()` turned true), report
    deaths (their claims go back to the pool at once), redraw the bar from what was committed since
    store row `row`. Returns how many children failed."""
    forwarded, failed, metric = False, 0, None
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
        new, row = store.accuracies_after(start, end, row)
        if new.size and metric is None:  # one protocol, one metric: read once (it walks the records)
            metric = store.metric()
        progress.extend(store.progress(start, end)[0], new, metric)
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

