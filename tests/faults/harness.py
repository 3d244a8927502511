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
        rerun and already after a run that SIGINT or SIGTERM stopped
    the exit code is 0 or 130 after SIGINT/SIGTERM, -9 (137 in a shell) after SIGKILL, 0 or 2 when the
        disk filled (then one line: `fastseed.scan: error: …`)
    no traceback, on stderr or in a worker's relayed lines; a pool stopped by a signal reports no
        worker as failed; a stopped command's last line on stderr is one of its stop lines

Runs are cheap: a tiny recipe (smoke at 1/16 width on 100 real CIFAR-10 images, 2 epochs: ~0.4 s a
seed), forked from a warm process (zygote.py), several moments in flight at once, one Ray cluster for
every Ray moment, one tmpfs (in a private mount namespace, as tests/test_storefile.py mounts one) for
every disk moment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastseed.recipe.overrides import resolve_protocol
from fastseed.store import Store
from fastseed.store.record import Record

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TINY_SETS = ["width=0.0625", "train_size=100", "test_size=100", "batch_size=50", "chunk_size=50", "epochs=2",
             "eval_batch_size=100"]
TINY = resolve_protocol("smoke", TINY_SETS)
SEEDS = {"scan": 3, "workers": 4, "ray": 3, "disk": 3}
MERGE_IN = 150  # records in each of the two IN stores of a merge moment
# The phases of each mode, and how long after its mark a moment may fall (seconds, uniform): a run of
# the tiny recipe on 2 busy cores. A forked process starts in about 0.2 s; a real one in about 4.
PHASES = {
    "scan": {"start-up": 0.3, "training": 1.2, "commit": 0.01, "shutdown": 0.1},
    "workers": {"start-up": 0.25, "workers starting": 0.35, "training": 2.5, "commit": 0.01, "shutdown": 0.05},
    "ray": {"start-up": 2.0, "actors starting": 3.0, "training": 1.0, "commit": 0.01, "shutdown": 0.1},
    "merge": {"start-up": 0.12, "copying": 0.4, "commit": 0.01, "shutdown": 0.05},
}
FRESH_START_UP_S = 4.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
# the harness's own cluster, reached only from this machine: no token to share with its drivers
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
WAIT_S = 300  # for every process of a moment to end (a loaded machine)
STOP_LINES = re.compile(r"(stopped early: rerun the same command to resume"
                        r"|fastseed\.scan: SIG(INT|TERM) during start-up: stopped before training any seed"
                        r"|fastseed\.scan: stopped at once: rerun the same command to resume"
                        r"|fastseed\.merge: SIG(INT|TERM): stopped; OUT is as it was, .*)")


@dataclass(frozen=True)
class Moment:
    mode: str            # scan, workers, ray, merge, disk
    index: int
    command: str         # what runs: scan or merge (a disk moment fills under either)
    phase: str
    signum: int | None   # None: the disk fills instead
    delay: float         # seconds after the phase's mark
    nth: int             # a commit moment: at the nth record inserted (a merge: its one commit)
    again: float | None  # a second signal this long after the first (a catchable one only)
    csv: bool            # the scan also exports a CSV: its shutdown writes one
    fresh: bool          # a real `python -m fastseed.scan`, for signals that land while it imports
    into: bool           # a merge into an existing OUT (else a new one)

    @property
    def tag(self) -> str:
        return f"{self.mode}-{self.index}"

    @property
    def phases(self) -> dict:
        return PHASES["merge" if self.command == "merge" else "scan" if self.mode == "disk" else self.mode]

    def __str__(self) -> str:
        what = "the disk fills" if self.signum is None else signal.Signals(self.signum).name
        twice = f", again after {self.again:.2f} s" if self.again is not None else ""
        at = f" (record {self.nth})" if self.phase == "commit" and self.command == "scan" else ""
        return (f"{self.tag}: {self.command}, {what} {self.delay:.3f} s into {self.phase}{at}{twice}"
                f"{' (python -m)' * self.fresh}{' (--csv)' * self.csv}{' (into an existing OUT)' * self.into}")


def draw(mode: str, index: int, seed: int) -> Moment:
    rng = random.Random(f"{seed}/{mode}/{index}")
    command = "merge" if mode == "merge" or (mode == "disk" and rng.random() < 1 / 3) else "scan"
    phases = PHASES["merge" if command == "merge" else "scan" if mode == "disk" else mode]
    phase = rng.choice(list(phases))
    signum = None if mode == "disk" else rng.choice(SIGNALS)
    fresh = mode == "scan" and phase == "start-up" and rng.random() < 0.3
    window = FRESH_START_UP_S if fresh else phases[phase]
    again = rng.uniform(0.05, 0.3) if signum in (signal.SIGINT, signal.SIGTERM) and rng.random() < 0.2 else None
    return Moment(mode, index, command, phase, signum, rng.uniform(0, window),
                  nth=rng.randint(1, SEEDS.get(mode, 1)), again=again,
                  csv=command == "scan" and rng.random() < 0.3, fresh=fresh,
                  into=command == "merge" and rng.random() < 0.5)


# ---- the processes ----------------------------------------------------------------------------------

class Zygote:
    """The fork server (zygote.py) as the harness drives it: spawn, learn exits, fill a disk."""

    def __init__(self, data_dir: Path, disks: list[Path] = (), size: str = "16m"):
        argv = [sys.executable, str(HERE / "zygote.py"), str(data_dir)]
        if disks:  # root of a new user and mount namespace, a tmpfs of `size` at each of `disks`
            mounts = "".join(f'mount -t tmpfs -o size={size} tmpfs "{disk}"; ' for disk in disks)
            argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-ec", f'{mounts}exec "$0" "$@"', *argv]
        env = dict(os.environ, **RAY_ENV, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.pop("FASTSEED_DATA", None)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.lock, self.changed = threading.Lock(), threading.Condition()
        self.replies: queue.Queue = queue.Queue()
        self.live: dict = defaultdict(set)   # tag → pids running
        self.codes: dict = {}                # pid → exit code
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError(f"the fork server did not start (exit {self.proc.wait()})")
        self.pid = json.loads(first)["ready"]
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            with self.changed:
                if "spawned" in message:
                    self.live[str(message["tag"])].add(message["spawned"])
                elif "exit" in message:
                    self.codes[message["exit"]] = message["code"]
                    self.live[str(message["tag"])].discard(message["exit"])
                    self.changed.notify_all()
                else:
                    self.replies.put(message)

    def ask(self, request: dict) -> dict:
        with self.lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            return self.replies.get(timeout=WAIT_S)

    def spawn(self, command: str, argv: list, cwd: Path, tag: str) -> int:
        return self.ask({"op": "spawn", "tag": tag, "command": command, "argv": [str(a) for a in argv],
                         "cwd": str(cwd), "stdout": str(cwd / "stdout"), "stderr": str(cwd / "stderr"),
                         "marks": str(cwd / "marks")})["pid"]

    def code(self, pid: int) -> int | None:
        with self.changed:
            return self.codes.get(pid)

    def wait_all(self, tag: str, timeout: float = WAIT_S) -> bool:
        """Until every process of `tag` (the command, a pool's workers) has ended."""
        with self.changed:
            return self.changed.wait_for(lambda: not self.live[tag], timeout)

    def seen(self, path: Path) -> Path:
        """`path` as this process sees it (a tmpfs in the server's mount namespace: through /proc)."""
        return Path(f"/proc/{self.pid}/root") / str(path).lstrip("/")

    def close(self) -> None:
        """The server holds nothing to save: killed, not left to unload torch."""
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class RayCluster:
    """One local Ray cluster for every Ray moment: `ray start --head` in a session of its own (so
    stopping it kills what it started, and nothing of anyone else's Ray on this machine)."""

    def __init__(self, root: Path, cpus: int = 4):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.temp = Path(f"/tmp/ray-faults-{os.getpid()}")  # short: Ray's socket paths have a limit
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        env = dict(os.environ, **RAY_ENV, OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.log = open(root / "ray.log", "w")
        self.proc = subprocess.Popen([ray, "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}",
                                      "--num-gpus=0", f"--temp-dir={self.temp}", "--include-dashboard=false",
                                      "--object-store-memory=1000000000", "--node-ip-address=127.0.0.1"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start failed: {(root / 'ray.log').read_text()[-2000:]}")
                time.sleep(0.2)

    def close(self) -> None:
        """Everything it started, at once (a SIGTERM would drain the node for 30 s): its session, and
        the workers whose command line names its temp folder."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(self.temp) in (proc / "cmdline").read_text():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def handler_installed(pid: int) -> bool:
    """Whether `pid` catches SIGTERM (SigCgt in /proc/PID/status): its command's first statement ran."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


# ---- a moment ---------------------------------------------------------------------------------------

@dataclass
class Outcome:
    moment: Moment
    fired: bool = False
    code: int | None = None
    problems: list = field(default_factory=list)


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
        if m.signum in (signal.SIGINT, signal.SIGTERM) and out.code in (0, 130):  # it closed its store
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


def fresh(argv: list, logs: Path) -> subprocess.Popen:
    """A real `python -m fastseed.scan`: the interpreter, the imports, the data read and checked."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("FASTSEED_DATA", None)
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "fastseed.scan", *map(str, argv)], cwd=logs, env=env,
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)


def marked(m: Moment, pid: int, logs: Path) -> bool:
    """Whether the run has reached the moment's phase."""
    if m.phase == "start-up":
        return handler_installed(pid) if m.fresh else True  # a forked run starts with the signals held
    if m.phase in ("commit", "copying"):
        marks = (logs / "marks").read_text() if (logs / "marks").exists() else ""
        if m.command == "merge" and m.phase == "commit":  # its one transaction's commit, after its inserts
            return marks.rfind(" commit") > marks.rfind(" insert") >= 0
        return marks.count(" insert") >= (m.nth if m.phase == "commit" else 1)
    printed = (logs / "stdout").read_text()
    if m.phase == "shutdown":
        return (" records added from " if m.command == "merge" else " seeds in ") in printed
    return {"training": {"ray": "[actor 0] pid ", "workers": "] on cpu: strategy"}.get(m.mode, " seeds to train"),
            "workers starting": " workers: cpu#0",
            "actors starting": "Ray actor(s)"}[m.phase] in printed


# ---- the invariants -----------------------------------------------------------------------------

def victim_problems(m: Moment, out: Outcome, logs: Path) -> list:
    stdout, stderr = (logs / "stdout").read_text(), (logs / "stderr").read_text()
    problems = []
    if "Traceback" in stdout + stderr:
        problems.append(f"a traceback: {(stdout + stderr)[-1500:]}")
    if not out.fired:
        return problems  # the run ended before the moment: it ran as any run
    if m.signum is None:
        expected = {0, 2}
    elif m.signum == signal.SIGKILL:
        expected = {-signal.SIGKILL}
    else:
        expected = {0, 130}
    if out.code not in expected:
        problems.append(f"exit {out.code}, not one of {sorted(expected)}: {stderr[-800:]}")
    lines = stderr.strip().splitlines()
    if out.code == 130 and not (lines and STOP_LINES.fullmatch(lines[-1])):
        problems.append(f"stopped without its stop line: {stderr[-800:]}")
    if out.code == 2 and not (len(lines) == 1 and re.match(r"fastseed\.(scan|merge): error: ", lines[0])):
        problems.append(f"a full disk is not one line: {stderr[-800:]}")
    if m.mode == "workers" and m.signum in (signal.SIGINT, signal.SIGTERM) and (
            "killed by" in stdout or "failed" in stdout + stderr):
        problems.append(f"a stopped pool reported its workers as failed: {stdout[-800:]}")
    return problems


def records_of(path: Path) -> dict:
    """seed → what identifies its run (provenance, wall time, predictions) of a store's records."""
    if not path.exists():
        return {}
    with Store.open(path) as store:
        return {r.seed: (json.dumps(r.provenance, sort_keys=True), r.wall_time_s, r.predictions)
                for r in store.iter_records()}


def readable(path: Path, scratch: Path) -> Path:
    """`path`, or a copy of it with its side files where SQLite cannot open it: a tmpfs in another
    mount namespace, seen through /proc/PID/root (SQLite resolves that link to this namespace's /)."""
    if not str(path).startswith("/proc/") or not path.exists():
        return path
    scratch.mkdir(exist_ok=True)
    for side in path.parent.iterdir():
        if side.name.startswith(path.name):
            shutil.copyfile(side, scratch / side.name)
    return scratch / path.name


def store_problems(path: Path, seeds: set, before: dict, allowed: set, scratch: Path) -> list:
    problems = []
    left = sorted(p.name for p in path.parent.iterdir() if p.name not in allowed)
    if left:
        problems.append(f"left beside the store: {left}")
    if not path.exists():
        return problems + [f"no store at {path}"]
    path = readable(path, scratch)
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        if (check := conn.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"integrity_check: {check}")
        stored = [s for (s,) in conn.execute("SELECT seed FROM records")]
        if (claims := conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]) != 0:
            problems.append(f"{claims} claim(s) left")
    finally:
        conn.close()
    if sorted(stored) != sorted(seeds):
        problems.append(f"stored seeds {sorted(stored)}, not each of {sorted(seeds)} once")
    after = records_of(path)
    changed = [s for s, run in before.items() if after.get(s) != run]
    if changed:
        problems.append(f"records stored before the rerun changed or were lost: seeds {changed}")
    return problems


# ---- a merge's stores -------------------------------------------------------------------------------

def merge_inputs(folder: Path) -> list[Path]:
    """Two IN stores of the tiny recipe's protocol, seeds 0… even and odd, 10,000-byte predictions."""
    folder.mkdir(parents=True)
    labels = np.arange(10_000) % 10
    paths = []
    for parity in (0, 1):
        path = folder / f"in{parity}.sqlite"
        with Store(path, TINY.name, TINY.hash, TINY.to_json()) as store:
            store.set_test_labels(labels)
            with store.transaction("filling"):
                for seed in range(parity, 2 * MERGE_IN, 2):
                    store.add(record(seed))
        paths.append(path)
    return paths


def record(seed: int) -> Record:
    rng = np.random.default_rng(seed + 1)
    return Record(protocol=TINY.name, protocol_hash=TINY.hash, seed=seed, status="ok", test_acc=0.1 + rng.random() / 10,
                  test_loss=2.3, headline_epoch=1, eval_curve=[[0, 0.1, 2.3], [1, 0.1, 2.3]],
                  train_curve=[[0, 2.3, 0.1], [1, 2.3, 0.1]],
                  predictions=rng.integers(0, 10, 10_000, dtype=np.uint8).tobytes(), wall_time_s=0.4,
                  pack={"strategy": "fused", "size": 1, "slot": 0, "seeds": [seed]}, provenance={"host": "in"})


def prefill_out(path: Path, inputs: list[Path]) -> None:
    """An existing OUT: a fifth of the INs' seeds (the same records) and one of its own, seed -1."""
    with Store(path, TINY.name, TINY.hash, TINY.to_json()) as store:
        store.set_test_labels(np.arange(10_000) % 10)
        with store.transaction("filling"):
            for seed in [-1, *range(0, 2 * MERGE_IN, 5)]:
                store.add(dataclasses.replace(record(max(seed, 0)), seed=seed))
