"""The worker loop, and a scan in this process.

    claim a pack of free seeds → renew the lease while it trains → commit each record with its claim
    drop → out of memory: release, halve the pack, retry → stop flag: finish the pack, release the rest

`work()` is that loop. A plain scan runs it here (`scan_here`); a pool (workers/pool.py) runs it in
one child process per device (`python -m fastseed.workers.local SPEC`, `child_main` below); a Ray
actor would run it on a cluster node. It needs only a job (fastseed.jobs), a store and a seed range,
and it ends when every seed of the range is stored, whoever trained it.

A claim lives LEASE_S seconds unless renewed; a thread renews it every third of that while the pack
trains (an ImageNet seed trains for hours: renewal, not a long lease, keeps it). A worker that dies
stops renewing, and its seeds go to the next worker that asks once the lease has run out (a pool
releases a dead child's claims at once). `FASTSEED_LEASE_S` shortens the lease (tests).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable

from fastseed import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, FastseedError, UserCodeError

LEASE_S = float(os.environ.get("FASTSEED_LEASE_S", "600"))
WAIT_S = 1.0  # how often a worker with nothing to claim looks again (the rest is claimed by others)


class StartupInterrupted(KeyboardInterrupt):
    """A signal during start-up: nothing trains yet, so the command stops at once."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return startup_line(self.signum)


def startup_line(signum: int) -> str:
    return f"{signal.Signals(signum).name} during start-up: stopped before training any seed"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """SIGINT and SIGTERM, from a command's first statement to its last, in four states:

    starting  nothing written yet: a signal stops the process at once with one line (exit 130),
              whatever it is doing -- an import, a data set read from a pipe: nothing needs closing,
              and nothing is raised into code that cannot take it
    opening   a store is open for writing, nothing trains yet: a signal raises the flag and the
              command stops at its next safe point (`check`) with the same line; a second one stops it
              at once, as a kill would (nothing is raised into Ray's or torch's code, which may take
              it badly; the store is crash-safe, and the next writer removes its -wal and -shm)
    training  the first signal finishes and commits the pack in flight, then stops; a second drops
              it (KeyboardInterrupt)
    closing   training is over (the summary, the export, the store closed): a signal only raises the
              flag, the command ends as it was ending

    `quiet`: the start-up line is left to the parent (a pool's worker, stopped by its parent)."""

    def __init__(self, command: str = "fastseed.scan", quiet: bool = False):
        self.command, self.quiet = command, quiet
        self.signum, self.state = None, "starting"
        self.in_flight: Callable[[], str | None] = lambda: None  # e.g. "about 3 min more"
        self.doing = "finishing the seeds in flight"
        self._raised = threading.Event()

    def __call__(self, signum, frame):
        if self.state == "starting" or (self.state == "opening" and self.signum is not None):
            self._exit_now(signum)
        if self.state in ("opening", "closing"):
            self._raise(signum)
            return
        if self.signum is not None:
            raise KeyboardInterrupt
        self._raise(signum)
        needs = self.in_flight()
        print(f"\n{signal.Signals(signum).name}: {self.doing}{f' ({needs})' if needs else ''}, then stopping "
              f"(again to stop at once)", file=sys.stderr, flush=True)

    def _raise(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self._raised.set()

    def _exit_now(self, signum: int) -> None:
        """One line and exit 130, now: written with os.write, since a print may be what was interrupted."""
        try:
            sys.stdout.flush()  # the lines said so far
        except (OSError, RuntimeError, ValueError):
            pass
        if not self.quiet:
            os.write(2, f"{self.command}: {startup_line(signum)}\n".encode())
        os._exit(EXIT_INTERRUPTED)

    def __bool__(self) -> bool:
        return self.signum is not None

    def wait(self, seconds: float) -> None:
        """Sleep, but wake up when the flag is raised."""
        self._raised.wait(seconds)

    def opening(self) -> None:
        """A store is about to be written: from now on a start-up signal waits for the next safe
        point (`check`, `start_training`), so that what is open is closed cleanly."""
        if self.state == "starting":
            self.state = "opening"

    def check(self) -> None:
        """A safe point of the start-up: StartupInterrupted if a signal came since `opening`."""
        if self.state in ("starting", "opening") and self.signum is not None:
            raise StartupInterrupted(self.signum)

    def start_training(self, in_flight: Callable[[], str | None] | None = None, doing: str | None = None) -> None:
        """Training starts: a signal now stops after `doing` (what the pack in flight is told to do),
        and says how long that takes (`in_flight()`) when known. A signal that came while the store
        was opening stops the start-up here."""
        self.check()
        self.state = "training"
        if in_flight is not None:
            self.in_flight = in_flight
        if doing is not None:
            self.doing = doing

    def closing(self) -> None:
        """Training is over: a signal no longer interrupts what the command does to end."""
        self.state = "closing"

    @contextmanager
    def installed(self, keep: bool = False):
        """The handler on SIGINT and SIGTERM, then both unblocked: a process started with them blocked
        (a pool's worker: workers/pool.py) gets a signal sent before this point now, not never. After
        the block the previous handlers come back, unless `keep` (a command line about to exit): then
        the stop signals are ignored until the process ends, so the exit code stays the command's.
        (Keeping this handler would not do: Python's finalization puts the default action back before
        the interpreter is torn down, and a SIGTERM then ended the process with -15.)"""
        previous = {s: signal.signal(s, self) for s in STOP_SIGNALS}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            yield self
        finally:
            self.closing()
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_IGN if keep else handler)


class Lease:
    """While a pack trains, a thread renews its worker's claims every lease/3 (the store takes the
    threads' calls in turn)."""

    def __init__(self, store, worker: str, lease_s: float, log: Callable[[str], None]):
        self.store, self.worker, self.lease_s, self.log = store, worker, lease_s, log
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease {worker}", daemon=True)

    def _renew(self) -> None:
        failed = False
        while not self._done.wait(self.lease_s / 3):
            try:
                self.store.renew(self.worker, self.lease_s)
            except FastseedError as e:  # the pack goes on; another worker may take its seeds over
                if not failed:
                    self.log(f"could not renew the lease of the seeds in flight: {e}")
                failed = True

    def __enter__(self) -> "Lease":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def _release(store, worker: str, seeds) -> None:
    """Give `seeds` back to the pool now; if even that fails (a full disk), their lease runs out."""
    if seeds:
        try:
            store.release(worker, list(seeds))
        except FastseedError:
            pass


def work(job, store, start: int, end: int, *, pack: int, worker: str, stop_flag, lease_s: float = LEASE_S,
         on_record: Callable | None = None, pace=None, log: Callable[[str], None] = print,
         poll_s: float = WAIT_S, until: Callable[[], bool] | None = None) -> bool:
    """Train the seeds of [start, end) that are neither stored nor claimed, `pack` at a time, until the
    whole range is stored (True) or `stop_flag` is raised or `until()` is true before a claim (False).
    `on_record(record, new)` after each commit (`new` False: another worker, which took the seed over
    when this one's lease ran out, stored it first). With nothing left to claim, it looks again every
    `poll_s` seconds until the claimed rest is stored. A long seed stopped mid-run (the engine's
    SeedStopped: its state is in its checkpoint) is released for a rerun to resume. Memory stays
    O(pack) whatever the width of the range."""
    from fastseed.engine.autopack import is_oom
    from fastseed.engine.checkpoint import SeedStopped
    while not stop_flag and not (until is not None and until()):
        seeds = store.claim(start, end, pack, worker, lease_s)
        if not seeds:
            if store.progress(start, end)[0] >= end - start:
                return True
            stop_flag.wait(poll_s)  # the rest is claimed by others: wait for their commits, or their expiry
            continue
        left = list(seeds)  # claimed, not committed yet

        def commit(record, left=left, seeds=seeds):
            if record.seed not in left:
                raise RuntimeError(f"record of seed {record.seed} arrived, not one of the pack {seeds}")
            new = store.add(record, worker)
            left.remove(record.seed)
            if on_record is not None:
                on_record(record, new)

        if pace is not None:
            pace.start(len(seeds) if job.together else 1)
        try:
            with Lease(store, worker, lease_s, log):
                job.train(seeds, commit, stop_flag, pace.step if pace is not None else None)
        except SeedStopped as e:  # stop_flag is raised: the seed is checkpointed, the rerun resumes it
            _release(store, worker, left)
            log(str(e))
            return False
        except BaseException as e:
            _release(store, worker, left)
            if not (isinstance(e, RuntimeError) and is_oom(e) and pack > 1):
                raise
            pack = back_off(job, pack, log)  # the pack's seeds were not committed: retry them in smaller packs
            continue
        _release(store, worker, left)  # stopped between the seeds of a one-after-another pack
    return store.progress(start, end)[0] >= end - start


def back_off(job, pack: int, log: Callable[[str], None]) -> int:
    """After a pack of `pack` seeds ran out of memory: half the pack, the device's cache emptied."""
    import torch
    if getattr(job, "device", None) is not None and job.device.type == "cuda":
        torch.cuda.empty_cache()
    pack //= 2
    log(f"out of memory: backing off to packs of {pack}")
    return pack


@dataclass(frozen=True)
class Outcome:
    """How a scan of a range ended."""
    complete: bool    # every seed of the range is stored
    stored: int       # seeds of the range in the store
    total: int
    summary: str      # the running accuracy, as the bar showed it
    failed: int = 0   # workers of a pool that crashed
    error: str | None = None  # why it stopped early, when the user's training function raised


def skipped_rows_line(store) -> str | None:
    """One line about the store's rows that do not decode (the scan goes on without them); the blobs
    are typed, not read (10^5 seeds with logits: ~18 GB)."""
    for _ in store.iter_records(blobs=False):
        pass
    if not store.skipped_rows:
        return None
    seed, why = store.skipped_rows[0]
    more = f" (and {len(store.skipped_rows) - 1} more)" if len(store.skipped_rows) > 1 else ""
    return (f"{store.path}: skipping {len(store.skipped_rows)} malformed row(s): seed {seed}: {why}{more}; "
            f"the scan goes on without them")


def scan_here(job, out, start: int, end: int, *, stop_flag: StopFlag, quiet: bool = False,
              lease_s: float = LEASE_S, log: Callable[[str], None] = print, stopping=None,
              versus: tuple | None = None) -> Outcome:
    """Train the range in this process: the job's data loaded once, packs claimed from the store at
    `out` (shared with any other scan of the same protocol), one bar. `stopping` (workers/stopping.py)
    ends the scan once its rule decides (the pack in flight is committed first); with a Versus rule,
    `versus` is side B's (job, store path): its seeds are trained here, in turn, when the rule needs
    them (None: B's store holds its whole range, the rule only reads it)."""
    from fastseed.store import Store
    from fastseed.store.claims import worker_id
    from fastseed.workers.progress import Pace, Progress, shown, summary
    jobs = {"A": (job, out)} | ({"B": versus} if versus is not None else {})
    for side_job, path in jobs.values():
        Store.check(path, side_job.protocol.name, side_job.protocol.hash)  # refuse before the slow data load
    total = end - start
    if stopping is not None and stopping.turn() is None:  # decided by what is stored: no data to load
        with Store.open(out) as store:
            stored, accs, metric = store.progress(start, end)[0], store.accuracies(start, end), store.metric()
        why = "the stopping rule is answered by" if stopping.decision is not None else "every seed of the range:"
        log(f"{job.protocol.name}: {why} the {stored} seeds stored in {out}: nothing to train")
        return Outcome(stored >= total, stored, total, summary(accs, metric))
    with ExitStack() as stack:
        sides = {name: _open_side(name, side_job, path, start, end, stack, stop_flag, log)
                 for name, (side_job, path) in jobs.items()}
        store = sides["A"].store
        progress = Progress(total, store.progress(start, end)[0], store.accuracies(start, end), quiet,
                            store.metric())
        for side in sides.values():
            side.pace = Pace(side.job.device, side.left, log=progress.write,
                             on_progress=progress.seed_steps if side.job.long_seeds else None)
        turn = ["A"]  # the side training now
        stop_flag.start_training(None if job.stops_mid_seed else lambda: sides[turn[0]].pace.in_flight(),
                                 job.on_stop)

        def committed(record, new, side="A"):
            if not new:
                progress.write(f"seed {record.seed}: already stored by another worker (it took the seed over "
                               f"when this one's lease ran out); the first record is kept")
            elif side == "A":
                progress.add(record)
            else:
                progress.write(f"{sides[side].job.protocol.name}: seed {record.seed}: {record.status} "
                               f"{shown(record)} ({record.wall_time_s:.1f}s)")

        def train(side: str, until=None) -> bool:
            turn[0] = side
            return work(sides[side].job, sides[side].store, start, end, pack=sides[side].pack, worker=worker_id(),
                        stop_flag=stop_flag, lease_s=lease_s, pace=sides[side].pace, log=progress.write,
                        on_record=lambda record, new: committed(record, new, side), until=until)

        try:
            if stopping is None:
                train("A")
            else:
                while not stop_flag and (side := stopping.turn()) in sides:
                    train(side, until=lambda side=side: stopping.turn() != side)
        except KeyboardInterrupt:  # a second signal: the pack in flight was dropped (its claims released)
            pass
        finally:
            progress.close()
            if stopping is not None:
                stopping.close()  # its readers before the writers: the last to close cleans up the -wal
        stored = store.progress(start, end)[0]  # whoever trained them: other scans share the store
        return Outcome(stored >= total, stored, total, summary(store.accuracies(start, end), store.metric()))


@dataclass
class Side:
    """One protocol a scan trains in this process: its job (data loaded), its store, its pack size."""
    job: object
    store: object
    pack: int
    left: int  # seeds of the range not stored when the scan started
    pace: object = None


def _open_side(name: str, job, out, start: int, end: int, stack: ExitStack, stop_flag, log) -> Side:
    from fastseed.store import Store
    protocol, total = job.protocol, end - start
    labels = job.load()  # None: a training function's labels come with its results
    stop_flag.opening()
    store = stack.enter_context(Store(out, protocol.name, protocol.hash, protocol.to_json()))
    if labels is not None:
        store.set_test_labels(labels)
    skipped = skipped_rows_line(store)
    if skipped:
        log(skipped)
    stored, live = store.progress(start, end)
    pack = job.pack_size(total - stored, log) if stored < total else 1
    others = f", {live} claimed by other workers" if live else ""
    log(f"{'versus: ' * (name != 'A')}{protocol.name} [{protocol.hash[:12]}] on {job.device}: {total - stored} of "
        f"{total} seeds to train{others}, {stored} already in {out}; {job.describe(pack)}")
    return Side(job, store, pack, total - stored)


# ---- a pool's child: `python -m fastseed.workers.local SPEC` ----------------------------------------

def child_main(spec: dict) -> int:
    """One worker of a pool (workers/pool.py): the job rebuilt from the protocol's JSON and the
    options, the loop run on its device until the range is stored. Exit 0: the range is complete;
    130: stopped by a signal; 2: bad input (one line on stderr); 1: a training function raised (its
    traceback, then the `error: ` line the parent reads)."""
    # its own session (pool._spawn): only the parent's forwarded Ctrl-C reaches it, and a stop before it
    # trains ends it quietly (the parent says so)
    stop_flag = StopFlag(quiet=True)
    with stop_flag.installed(keep=True):
        try:
            return _child(spec, stop_flag)
        except FastseedError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return EXIT_USAGE
        except UserCodeError as e:  # the traceback of the user's function, then the line the parent reads
            print(e.traceback_text.rstrip("\n"), file=sys.stderr, flush=True)
            print(f"error: {e}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED


def _child(spec: dict, stop_flag: StopFlag) -> int:
    from fastseed.jobs import Options, make_job
    from fastseed.recipe.protocol import protocol_from_json
    from fastseed.store import Store
    from fastseed.workers.progress import Pace, shown
    log = lambda line: print(line, flush=True)
    if spec.get("threads"):
        import torch
        torch.set_num_threads(spec["threads"])
    job = make_job(protocol_from_json(spec["protocol"]), Options(**spec["options"]), log=log)
    start, end, worker = spec["start"], spec["end"], spec["worker"]
    labels = job.load()
    protocol = job.protocol
    stop_flag.opening()
    with Store(spec["store"], protocol.name, protocol.hash, protocol.to_json()) as store:
        if labels is not None:
            store.set_test_labels(labels)
        stored = store.progress(start, end)[0]
        pack = job.pack_size(end - start - stored, log) if stored < end - start else 1
        log(f"on {job.device}: {job.describe(pack)}")
        pace = Pace(job.device, end - start - stored, spec["workers"], log=log)
        stop_flag.start_training(None if job.stops_mid_seed else pace.in_flight, job.on_stop)

        def committed(record, new):
            if not spec["seed_lines"]:
                return
            log(f"seed {record.seed}: {record.status} {shown(record)} ({record.wall_time_s:.1f}s)"
                + ("" if new else " (already stored by another worker: the first record is kept)"))

        complete = work(job, store, start, end, pack=pack, worker=worker, stop_flag=stop_flag,
                        lease_s=spec["lease_s"], on_record=committed, pace=pace, log=log)
    return 0 if complete else EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(child_main(json.loads(sys.argv[1])))
