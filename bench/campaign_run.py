"""The machinery of bench/gpu_campaign.py, apart from what it measures: a wall-clock budget shared by
phases (a phase that overruns is cut by SIGALRM, one that raises is logged and the next goes on), output
written as it is measured (one fsynced JSON line per measurement, a log, a summary rewritten after
every phase), and the data on the device (the real CIFAR-10, or generated CIFAR-shaped images while the
real one is still on its way).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable


class PhaseCut(BaseException):
    """Raised by SIGALRM when a phase overruns its share. A BaseException, so the engine's own
    `except RuntimeError` (graph capture, out-of-memory retries) cannot swallow it."""


class Alarm:
    """The SIGALRM handler: it cuts the phase (raises PhaseCut) when its time is up, and again every
    second after (in case library code turned the first cut into an error it swallows), except while
    `held` (a line or a phase's summary is being written), when the cut waits for the end of it.
    Masking the signal would not do: it may hit any of torch's threads, while Python runs its handler in
    the main one."""

    def __init__(self):
        self.armed, self.holding, self.pending = False, 0, False

    def __call__(self, signum, frame):
        if not self.armed:
            return
        if self.holding:
            self.pending = True
        else:
            raise PhaseCut()

    def arm(self, seconds: float):
        self.armed, self.pending = True, False
        signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)

    def disarm(self):
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.pending = False

    @contextlib.contextmanager
    def held(self):
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
            if not self.holding and self.pending:
                self.pending = False
                raise PhaseCut()


ALARM = Alarm()


class Tee:
    """A text stream that writes through to `primary` and also to `copy` (the log, or a buffer)."""

    def __init__(self, primary, copy):
        self.primary, self.copy = primary, copy

    def write(self, text):
        self.primary.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self):
        self.primary.flush()
        self.copy.flush()

    def __getattr__(self, name):  # fileno, isatty, encoding… of the real stream
        return getattr(self.primary, name)


def finite(value):
    """JSON without NaN/inf (strict parsers refuse them): non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class Campaign:
    """One run: its budget (counted from `started`, the process's start) and phase deadlines, its output
    files, the lines written so far, the facts later phases build on (peak, copy bandwidth), and the
    data on the device: the real CIFAR-10 from `data_dir`, or with `synthetic` (train, test) images
    generated in its shape (fastseed.data.synthetic)."""

    def __init__(self, out: Path, budget_s: float, scale, data_dir, device, started: float, synthetic=None,
                 table: Callable[[list], str] = lambda lines: ""):
        self.out, self.budget_s, self.scale, self.data_dir, self.device = out, budget_s, scale, data_dir, device
        self.started, self.synthetic, self.table = started, synthetic, table
        self.lines, self.facts, self.phase, self.deadline = [], {}, None, math.inf
        self.jsonl = open(out / "campaign.jsonl", "a", encoding="utf-8")
        self.log = open(out / "campaign.log", "a", encoding="utf-8")
        self._data = None

    # --- time ----------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def budget_left(self) -> float:
        return self.budget_s - self.elapsed()

    def left(self) -> float:
        """Seconds until the current phase's deadline."""
        return min(self.deadline, self.budget_s) - self.elapsed()

    def fits(self, seconds: float) -> bool:
        return seconds <= self.left()

    # --- output --------------------------------------------------------------------------------
    def say(self, text: str):
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def emit(self, kind: str, **fields) -> dict:
        line = {"t": round(self.elapsed(), 3), "phase": self.phase, "kind": kind, **finite(fields)}
        text = json.dumps(line, separators=(",", ":"))
        with ALARM.held():  # a cut never leaves half a line, nor a line on disk that the table lacks
            self.jsonl.write(text + "\n")
            self.jsonl.flush()
            os.fsync(self.jsonl.fileno())
            self.lines.append(line)
        return line

    def write_table(self) -> str:
        text = self.table(self.lines)
        tmp = self.out / "summary.md.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, self.out / "summary.md")
        return text

    def of_kind(self, kind: str, phase: str | None = None) -> list[dict]:
        return [x for x in self.lines if x["kind"] == kind and (phase is None or x["phase"] == phase)]

    # --- the device and the data -----------------------------------------------------------------
    @property
    def real_data(self) -> bool:
        return self.synthetic is None

    def data(self):
        """The data set on the device, loaded by the first phase that needs it (its time counts there)."""
        if self._data is None:
            from fastseed.data.cifar import load_cifar10, to_tensors
            from fastseed.data.synthetic import make_cifar_like
            t0 = time.perf_counter()
            raw = load_cifar10(self.data_dir) if self.real_data else make_cifar_like(*self.synthetic, seed=0)
            self._data = to_tensors(raw, self.device)
            self.emit("data", source=raw.source, train=int(raw.train_x.shape[0]), test=int(raw.test_x.shape[0]),
                      load_s=time.perf_counter() - t0)
        return self._data

    def sync(self):
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def release_memory(self):
        gc.collect()
        if self.device.type == "cuda":
            import torch
            with contextlib.suppress(Exception):
                torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()


def seconds_per_call(fn, reps: int, device) -> float:
    """fn() once to warm up (compilation, autotuning), then `reps` calls timed with one sync at the
    end, so launch latency overlaps as it does in training (CUDA events on a GPU)."""
    import torch
    fn()
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def run_phases(run: Campaign, phases: dict, selected: str, shares: dict, titles: dict, need: Callable,
               fail_phase: str | None = None):
    """Each selected phase in order, with share × (time left) / (shares of the selected phases left):
    what a phase leaves unused flows on. A phase is skipped when that is less than `need(run, key)` (its
    first unit of work), or when it cannot run here (`phases[key]` returns a reason before starting:
    see `blocked`); cut (SIGALRM) when it overruns; logged with its traceback when it raises."""
    order = [k for k in phases if k in selected]
    for key in phases:
        run.phase, run.deadline = key, math.inf
        if key not in selected:
            run.emit("phase", status="skipped", title=titles[key], reason="not selected (--phases)")
            continue
        later = order[order.index(key):]
        left = run.budget_left() - 1.0  # a second kept for the final table
        allotted = left if len(later) == 1 else left * shares[key] / sum(shares[k] for k in later)
        needed, blocked = need(run, key)
        reason = blocked or (f"not enough time: {max(allotted, 0.0):.1f} s left for it, needs ~{needed:.1f} s"
                             if allotted < needed else None)
        if reason:
            run.say(f"{key}: {titles[key]}: skipped, {reason}")
            run.emit("phase", status="skipped", title=titles[key], allotted_s=max(allotted, 0.0), reason=reason)
            continue
        run.say(f"{key}: {titles[key]} ({allotted:.0f} s)")
        t0, status, reason, error = run.elapsed(), "done", None, None
        run.deadline = t0 + allotted
        try:
            try:
                ALARM.arm(allotted)
                if fail_phase == key:
                    raise RuntimeError(f"injected failure in phase {key} (--fail-phase)")
                phases[key](run)
            finally:  # disarmed before any handler runs, so a late alarm cannot escape from one
                ALARM.disarm()
        except PhaseCut:
            ALARM.disarm()  # again: an alarm may have cut the `finally` above before it disarmed
            status, reason = "cut", f"overran its {allotted:.0f} s"
        except Exception as e:  # noqa: BLE001 - one phase's failure must not end the campaign
            ALARM.disarm()
            status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            sys.stderr.write(f"phase {key} failed:\n{traceback.format_exc()}")
            sys.stderr.flush()
        run.release_memory()
        used = run.elapsed() - t0
        run.emit("phase", status=status, title=titles[key], allotted_s=allotted, used_s=used, reason=reason,
                 error=error)
        run.say(f"{key}: {status} in {used:.1f} s" + (f" ({reason or error})" if reason or error else ""))
        run.write_table()
    run.phase = None


def read_lines(path: Path) -> list[dict]:
    """A campaign.jsonl's lines; a last line cut short by a kill is left out."""
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            lines.append(json.loads(text))
    return lines
