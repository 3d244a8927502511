"""What must hold after a moment (harness.py), and the stores a merge moment reads and writes."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import sqlite3
from pathlib import Path

import numpy as np

from fastseed.store import Store
from fastseed.store.record import Record
from moments import MERGE_IN, TINY, Moment, Outcome

STOP_LINES = re.compile(r"(stopped early: rerun the same command to resume"
                        r"|fastseed\.scan: SIG(INT|TERM) during start-up: stopped before training any seed"
                        r"|fastseed\.scan: stopped at once: rerun the same command to resume"
                        r"|fastseed\.merge: SIG(INT|TERM): stopped; OUT is as it was, .*)")


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
