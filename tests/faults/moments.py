"""What a fault-injection moment is (harness.py runs them): a mode, a phase of the run, a signal (or a
disk that fills), a delay after the phase's mark, and variations; drawn from a seeded RNG. The mark of
a phase is something the run shows: a line it prints, a record its trace callback announces inside the
commit's transaction (zygote.py: `mark`), its handler in place (/proc/PID/status)."""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass, field
from pathlib import Path

from fastseed.recipe.overrides import resolve_protocol

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


@dataclass
class Outcome:
    moment: Moment
    fired: bool = False
    code: int | None = None
    problems: list = field(default_factory=list)


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


def handler_installed(pid: int) -> bool:
    """Whether `pid` catches SIGTERM (SigCgt in /proc/PID/status): its command's first statement ran."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)
