"""Past one node: a scan on a Ray cluster (`pip install 'fastseed[ray]'`).

    python -m fastseed.scan --seeds 100000 --ray auto              # the cluster this machine is part of
    python -m fastseed.scan --seeds 100000 --ray ray://head:10001  # a remote cluster, via Ray Client
    python -m fastseed.scan --preset smoke --seeds 8 --device cpu --ray   # a Ray started here

One long-lived actor per GPU of the cluster (`num_gpus=1`; with `--device cpu`, or on a cluster
without GPUs, one per CPU, `num_cpus=1`; `--workers N` caps the count) builds the scan's job once:
its data set resident, its compiled step warm. The driver (this process) is the only one that
touches the store — SQLite over a network file system is not safe, so an actor never opens it. The
driver (fastseed/workers/driver.py) claims packs of seeds under its own worker id and renews their
lease while they are out, keeps two packs at each actor, and commits each record that comes back.

An actor that dies (node lost, OOM-killed) is restarted by Ray (`max_restarts`); the packs it held
go out again, to it or another: their seeds were never committed, so nothing is lost or doubled. A
killed driver leaves only its claims, which lapse (at once on its own host): the rerun resumes.

Where the data lives: CIFAR (180 MB) is read and checked once here, then shipped through Ray's
object store (`ray.put` once; each node fetches it once, and its actors read that copy). ImageNet
cannot travel: each actor reads `--data-dir` and `--weights`, which must name the same files on
every node (a shared file system, or the same copy on each).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
from typing import Callable

from fastseed import FastseedError
from fastseed.workers.local import LEASE_S, Lease, Outcome, StartupInterrupted

INSTALL = "--ray needs Ray: pip install 'fastseed[ray]'"


def reach(address: str):
    """Ray, and whether this scan will connect it: a caller already connected (a test, a notebook)
    keeps its connection. Refuses at once a missing Ray or an address where nothing listens (ray.init
    would retry it for minutes)."""
    try:
        import ray
    except ImportError:
        raise FastseedError(INSTALL) from None
    if ray.is_initialized():
        return ray, False
    if address == "auto":  # RAY_ADDRESS, or the cluster last started on this machine (None: no cluster)
        try:
            from ray._private.services import canonicalize_bootstrap_address
            found = canonicalize_bootstrap_address("auto")
        except (ImportError, AttributeError, ValueError):  # private to Ray: without it, ray.init decides
            found = None
        if found is not None:
            _reachable(found, address)
    elif address != "local":
        _reachable(address, address)
    return ray, True


def connect(ray, address: str) -> None:
    """`local` starts a Ray here; `auto` finds this machine's cluster; `host:port` or
    `ray://host:port` names one."""
    extra = {"include_dashboard": False} if address == "local" else {}
    # A Ray started here runs its raylet and GCS in our process group: a Ctrl-C in the terminal would
    # reach them too (they would die, and relay a second SIGINT to us). Ignored while they start, it
    # stays ignored in them. ray.init also installs its own SIGTERM handler: ours comes back.
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        if main:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        ray.init(address=address, **extra)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise FastseedError(f"--ray {address}: cannot connect: {_first_line(e)}") from None
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _reachable(address: str, given: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise FastseedError(f"--ray {given}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise FastseedError(f"--ray {given}: no Ray cluster answers at {host}:{port} "
                            f"({e.strerror or e})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def actor_plan(device: str, workers: int | None, resources: dict) -> tuple[int, dict, str]:
    """How many actors, what each asks of Ray, the device it trains on: one per GPU of the cluster
    (`--device auto|cuda`), else one per CPU; `--workers N` asks for N."""
    if workers is not None and workers <= 0:
        raise FastseedError(f"--workers must be a positive number, got {workers}")
    if device not in ("auto", "cuda", "cpu"):
        raise FastseedError(f"--device {device} with --ray: each actor gets a GPU of its own (--device cuda "
                            f"or auto) or trains on the CPU (--device cpu)")
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if device == "cuda" and not gpus:
        raise FastseedError("--ray --device cuda: the cluster has no GPU (`ray status` lists its resources); "
                            "--device cpu trains on its CPUs")
    if device != "cpu" and gpus:
        return workers or gpus, {"num_gpus": 1, "num_cpus": 1}, "cuda"
    if not cpus:
        raise FastseedError("--ray: the cluster has no CPU to train on")
    return workers or cpus, {"num_cpus": 1}, "cpu"


def scan_ray(job, out, start: int, end: int, *, address: str = "local", device: str = "auto",
             workers: int | None = None, stop_flag, quiet: bool = False, lease_s: float = LEASE_S,
             log: Callable[[str], None] = print, until: Callable[[], bool] | None = None) -> Outcome:
    """Train the range on the actors of a Ray cluster (`address`: see `connect`); this process alone
    writes the store at `out`; once `until()` (a stopping rule) is true, no more packs go out. `job` is
    the driver's: it names the protocol, checks the options and reads the data to ship; the actors
    build their own on `device`."""
    from fastseed.store import Store
    from fastseed.store.claims import worker_id
    from fastseed.workers.driver import Driver
    from fastseed.workers.progress import Progress, summary
    protocol, total = job.protocol, end - start
    Store.check(out, protocol.name, protocol.hash)
    if os.path.exists(out):  # a finished scan needs no cluster
        with Store.open(out) as store:
            if store.progress(start, end)[0] >= total:
                log(f"{protocol.name} [{protocol.hash[:12]}]: 0 of {total} seeds to train, {total} already in {out}")
                return Outcome(True, total, total, summary(store.accuracies(start, end), store.metric()))
    ray, connecting = reach(address)
    data = job.read()  # read and checked here, before anything starts (None: each actor reads its own)
    if connecting:
        connect(ray, address)
    try:
        count, ask, on = actor_plan(device, workers, ray.cluster_resources())
        with Store(out, protocol.name, protocol.hash, protocol.to_json()) as store:
            stored, live = store.progress(start, end)
            others = f", {live} claimed by other workers" if live else ""
            log(f"{protocol.name} [{protocol.hash[:12]}]: {total - stored} of {total} seeds to train{others}, "
                f"{stored} already in {out}; {count} Ray actor(s), one per {'GPU' if on == 'cuda' else 'CPU'}")
            if data is not None:
                data = ray.put(data)  # once; each node fetches it once, and its actors read that copy
                log("the data set was read here and goes to the actors through Ray's object store")
            options = dataclasses.replace(job.options, device=on).to_dict()
            args = (protocol.to_json(), options, 1 if on == "cpu" else None, total - stored, count)
            progress = Progress(total, stored, store.accuracies(start, end), quiet)
            progress.set(stored, progress.accs, store.metric())
            driver = Driver(ray, store, start, end, worker=worker_id(), lease_s=lease_s, progress=progress,
                            stop_flag=stop_flag, remaining=total - stored, data=data, until=until)
            stop_flag.doing = "finishing the packs the actors are training (the queued ones are dropped)"
            try:
                with Lease(store, driver.worker, lease_s, progress.write):
                    driver.launch(count, ask, args)
                    driver.run()
            except StartupInterrupted:
                raise
            except KeyboardInterrupt:  # a second Ctrl-C: the packs in flight are dropped with their actors
                pass
            finally:
                driver.close()
                stored = store.progress(start, end)[0]
                progress.set(stored, store.accuracies(start, end))
                progress.close()
            refusal = driver.refusal()
            if refusal is not None:
                raise FastseedError(refusal)
            return Outcome(stored >= total, stored, total, progress.summary(), failed=driver.failed,
                           error=driver.user_error)
    finally:
        if connecting:
            ray.shutdown()
