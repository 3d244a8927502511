"""Fault injection for issue #23: scans (one process, `--workers 2`, Ray on a local cluster) and merges
stopped by SIGINT, SIGTERM or SIGKILL at seeded random moments of their start-up, training, commits
and shutdown, or by a disk that fills at a random moment; each one rerun to completion, then checked.

A moment is drawn from a seeded RNG (`draw`): a mode, a phase of the run, a signal, a delay after the
phase's mark, and variations (a second signal, a CSV export, a real `python -m` process, a merge into
an existing OUT). The mark is something the run shows: a line it prints, a record its trace callback
announces inside the commit's transaction (zygote.py: `mark`), a handler in place (/proc/PID/status).
A moment that ends before its mark or its delay did not happen ("missed"); the tests count those that
did. After each: every process of the moment has ended, the run is rerun to completion, and

    every seed of the range is stored exactly once, and what was stored before the rerun is unchanged
    `PRAGMA integrity_check` is ok; no claim is left
    no temporary file is left, nor a -wal or -shm (every writer has closed cleanly), after the
        rerun and already after a run that one SIGINT or SIGTERM stopped (a second one may stop it
        at once, as a kill: the rerun removes what that leaves)
    the exit code is 0 or 130 after SIGINT/SIGTERM, -9 (137 in a shell) after SIGKILL, 0 or 2 when the
        disk filled (then one line: `fastseed.scan: error: …`)
    no traceback, on stderr or in a worker's relayed lines; a pool stopped by a signal reports no
        worker as failed; a stopped command's last line on stderr is one of its stop lines

Runs are cheap: a tiny recipe (smoke at 1/16 width on 100 real CIFAR-10 images, 2 epochs: ~0.4 s a
seed), forked from a warm process (zygote.py), several moments in flight at once, one Ray cluster for
every Ray moment, one small tmpfs a lane (in a private mount namespace, as tests/store/test_file.py
mounts one) for the disk moments.

    moments.py     what a moment is, `draw`, and `marked` (has the run reached its phase)
    servers.py     the fork server as the harness drives it, the Ray cluster, a real `python -m` scan
    invariants.py  what must hold after a moment; a merge moment's stores
    harness.py     running moments: fire, wait, rerun, check
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from invariants import merge_inputs, prefill_out, readable, records_of, store_problems, victim_problems  # noqa: E402
from moments import MERGE_IN, SEEDS, TINY_SETS, Moment, Outcome, marked  # noqa: E402
from servers import WAIT_S, RayCluster, Zygote, fresh  # noqa: E402


class Harness:
    """Runs moments: its fork server(s), the Ray cluster, the merge's IN stores, one folder each."""

    def __init__(self, root: Path, data_dir: Path, zygote: Zygote, disks: list[Path] = (),
                 ray: RayCluster | None = None):
        self.root, self.data_dir, self.zygote, self.disks, self.ray = root, data_dir, zygote, list(disks), ray
        self.inputs = merge_inputs(root / "inputs")

    def run(self, moments, lanes: int = 3) -> list[Outcome]:
        """The moments in `lanes` threads, each its share in order (a disk moment fills its lane's disk:
        a lane's moments never overlap), the outcomes in the moments' order."""
        moments = list(moments)
        with ThreadPoolExecutor(lanes) as pool:
            shares = [pool.submit(lambda lane: [self.one(m, lane) for m in moments[lane::lanes]], lane)
                      for lane in range(lanes)]
            done = [share.result() for share in shares]
        return [done[i % lanes][i // lanes] for i in range(len(moments))]

    # -- what each mode runs --

    def argv(self, m: Moment, folder: Path, *, rerun: bool = False) -> tuple[str, list]:
        if m.command == "merge":
            return "merge", [folder / "out.sqlite", *self.inputs]
        argv = ["--preset", "smoke", *[a for s in TINY_SETS for a in ("--set", s)], "--device", "cpu",
                "--no-progress", "--data-dir", self.data_dir, "--out", folder / "s.sqlite", "--seeds", SEEDS[m.mode]]
        if m.csv:
            argv += ["--csv", folder / "s.csv"]
        if not rerun and m.mode == "workers":
            argv += ["--workers", 2]
        if not rerun and m.mode == "ray":
            argv += ["--ray", self.ray.address, "--workers", 1]
        return "scan", argv

    def one(self, m: Moment, lane: int) -> Outcome:
        try:
            return self._one(m, lane)
        except Exception as e:  # noqa: BLE001 (a problem of the moment, with the others' still run)
            return Outcome(m, problems=[f"the harness failed: {type(e).__name__}: {e}"])

    def _one(self, m: Moment, lane: int) -> Outcome:
        out = Outcome(m)
        server = self.zygote
        folder = (self.disks[lane] if m.mode == "disk" else self.root) / m.tag
        here = server.seen(folder) if m.mode == "disk" else folder  # the folder as this process sees it
        logs = self.root / "logs" / m.tag
        logs.mkdir(parents=True)
        here.mkdir(parents=True)
        if m.into:
            prefill_out(logs / "out.sqlite", self.inputs)
            shutil.copyfile(logs / "out.sqlite", here / "out.sqlite")
        command, argv = self.argv(m, folder)
        if m.fresh:
            victim = fresh(argv, logs)
            pid, ended = victim.pid, lambda: victim.poll() is not None
        else:
            pid = server.spawn(command, argv, logs, m.tag)
            ended = lambda: server.code(pid) is not None
        out.fired = self.fire(m, pid, ended, logs, server, folder)
        if m.fresh:
            out.code = victim.wait(timeout=WAIT_S)
        else:
            server.wait_all(m.tag)
            out.code = server.code(pid)
        if m.signum == signal.SIGKILL and out.code == 0:
            out.fired = False  # it had exited (a zombie takes a signal and ignores it): nothing to kill
        if m.mode == "disk":
            server.ask({"op": "free", "path": str(folder.parent / "filler")})
        out.problems += victim_problems(m, out, logs)
        if m.signum in (signal.SIGINT, signal.SIGTERM) and m.again is None and out.code in (0, 130):  # closed
            if left := [p.name for p in here.iterdir() if p.name.endswith(("-wal", "-shm", ".tmp"))]:
                out.problems.append(f"stopped with {out.code}, it left {sorted(left)} beside its store")
        before = records_of(readable(here / ("out.sqlite" if m.command == "merge" else "s.sqlite"), logs / "before"))
        out.problems += self.rerun(m, server, folder, here, logs, before)
        if not out.problems:  # kept for a look otherwise; a disk moment's folder frees its tmpfs
            shutil.rmtree(here)
        return out

    def fire(self, m: Moment, pid: int, ended, logs: Path, server: Zygote, folder: Path) -> bool:
        """Wait for the moment's mark, then its delay, then send its signal (or fill the disk); False if
        the run ended first."""
        deadline = time.monotonic() + WAIT_S
        while not marked(m, pid, logs):
            if ended() or time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        until = time.monotonic() + m.delay
        while time.monotonic() < until:
            if ended():
                return False
            time.sleep(min(0.002, max(0.0, until - time.monotonic())))
        if m.signum is None:
            server.ask({"op": "fill", "path": str(folder.parent / "filler")})
            return not ended()
        try:
            os.kill(pid, m.signum)
        except ProcessLookupError:
            return False
        if m.again is not None:
            time.sleep(m.again)
            try:
                os.kill(pid, m.signum)
            except ProcessLookupError:
                pass
        return True

    def rerun(self, m: Moment, server: Zygote, folder: Path, here: Path, logs: Path, before: dict) -> list:
        """The same command again, in one process (a pool's or a Ray scan's store is a store): it must
        complete; then the invariants."""
        again = logs / "rerun"
        again.mkdir()
        command, argv = self.argv(m, folder, rerun=True)
        pid = server.spawn(command, argv, again, f"{m.tag}/rerun")
        server.wait_all(f"{m.tag}/rerun")
        problems = []
        code, printed = server.code(pid), (again / "stdout").read_text() + (again / "stderr").read_text()
        if code != 0:
            problems.append(f"the rerun exited {code}: {printed[-600:]}")
        if command == "merge":
            seeds = set(range(2 * MERGE_IN)) | ({-1} if m.into else set())
            return problems + store_problems(here / "out.sqlite", seeds, before, {"out.sqlite"}, logs / "after")
        seeds = set(range(SEEDS[m.mode]))
        if code == 0 and f"{len(seeds) - len(before)} of {len(seeds)} seeds to train" not in printed \
                and f"{len(seeds)} of {len(seeds)} seeds in" not in printed:
            problems.append(f"the rerun did not train exactly the {len(seeds) - len(before)} seeds left: {printed[-600:]}")
        return problems + store_problems(here / "s.sqlite", seeds, before, {"s.sqlite", "s.csv"}, logs / "after")
