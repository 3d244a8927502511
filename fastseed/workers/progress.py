"""What a scan shows while it runs: one bar for the whole range, and the pace of the pack in flight.

`Progress` is drawn from the store's counts, so it is the same bar whether this process trains (it
is told after each commit) or N worker processes do (the parent polls the store): seeds stored of the
range, seeds per minute, ETA, and the running accuracy mean ± std, min and max.

`Pace` times the training steps of the pack in flight. It answers, before the first seed ends, what
a seed and the whole range will take here (on a CPU a GPU preset takes hours a seed: the user hears
it in seconds, not after the first seed), and, on Ctrl-C, how long the pack in flight still needs.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np

from fastseed.store.record import ACCURACY, Metric

SLOW_SEED_S = 300  # on a CPU, a preset projected slower than this a seed is one meant for a GPU


def duration(seconds: float) -> str:
    """A human reading of a duration: 45 s, 12 min, 3.2 h, 4.1 days, 2.3 years."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 730 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365.25 * 86400):.1f} years"


def number(value: float, metric: Metric = ACCURACY) -> str:
    """A stored headline value as shown: accuracy in percent to 2 decimals, a user's metric to 4 digits."""
    return f"{100 * value:.2f}" if metric == ACCURACY else f"{value:.4g}"


def shown(record) -> str:
    """A record's headline as a seed's line says it: "acc 93.92%", "log loss 0.1234"."""
    metric = record.metric
    if metric == ACCURACY:
        return f"acc {number(record.test_acc)}%"
    return f"{metric.name} {number(record.test_acc, metric)}{metric.unit}"


def summary(accs, metric: Metric = ACCURACY) -> str:
    """Running headline of the stored seeds (NaN = diverged, left out): test accuracy in percent, or a
    training function's metric as it returns it."""
    accs = np.asarray(accs, dtype=float)
    accs = accs[np.isfinite(accs)]
    name, unit = ("acc", "%") if metric == ACCURACY else (metric.name, metric.unit)
    if accs.size == 0:
        return f"{name} n/a"
    std = accs.std(ddof=1) if accs.size > 1 else 0.0
    return (f"{name} {number(accs.mean(), metric)}±{number(std, metric)}{unit} min {number(accs.min(), metric)} "
            f"max {number(accs.max(), metric)} (n={accs.size})")


class Progress:
    """One tqdm bar over the seeds of a range, from the store's count of stored seeds."""

    def __init__(self, total: int, stored: int, accs, quiet: bool):
        from tqdm import tqdm
        self.total, self.quiet, self.metric = total, quiet, ACCURACY  # a function's metric: its first record's
        self.stored0, self.stored, self.accs = stored, stored, list(accs)
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=total, initial=stored, unit="seed", dynamic_ncols=True, disable=quiet,
                        smoothing=0.1)
        self.seed_bar = None  # the steps of a long seed in flight (seed_steps)
        self.show()

    def seed_steps(self, done: int, total: int) -> None:
        """A second bar under the first, for a seed that trains for hours: its steps, from the step it
        resumed at (the bar's rate and ETA count only the steps trained here, so they are right after
        a minute, not after the seed). A count that goes back is the next seed."""
        if self.quiet:
            return
        from tqdm import tqdm
        bar = self.seed_bar
        if bar is None or bar.total != total or done <= bar.n:
            self._close_seed_bar()
            bar = self.seed_bar = tqdm(total=total, initial=done - 1, unit="step", desc="seed in flight",
                                       dynamic_ncols=True, position=1, leave=False, smoothing=0.05)
        bar.update(done - bar.n)

    def _close_seed_bar(self) -> None:
        if self.seed_bar is not None:
            self.seed_bar.close()
            self.seed_bar = None

    def show(self) -> None:
        rate = 60 * (self.stored - self.stored0) / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{rate:.1f} seeds/min, {self.summary()}")

    def set(self, stored: int, accs, metric: Metric | None = None) -> None:
        """The store's counts now (several workers: polled), and its records' metric when known."""
        self.accs = list(accs)
        self.metric = metric or self.metric
        if stored != self.stored:
            self.bar.update(stored - self.stored)
            self.stored = stored
        self.show()

    def add(self, record) -> None:
        """A record this process just committed."""
        self.accs.append(record.test_acc)
        self.metric = record.metric
        if self.quiet:
            print(f"seed {record.seed}: {record.status} {shown(record)} ({record.wall_time_s:.1f}s)", flush=True)
        self.stored += 1
        self.bar.update(1)
        self.show()

    def write(self, line: str) -> None:
        """A line above the bar (print would tear it)."""
        if self.quiet:
            print(line, flush=True)
        else:
            self.bar.write(line, file=sys.stdout)

    def summary(self) -> str:
        return summary(self.accs, self.metric)

    def close(self) -> None:
        self._close_seed_bar()
        self.bar.close()


class Pace:
    """Seconds per training step of the pack in flight, from `step(done, total)` calls.

    The first step of a pack is left out of the timing (graph capture, compilation, allocation); the
    projection is printed once, after a few steps or two seconds of them, before the first seed ends."""

    def __init__(self, device: str, seeds_left: int, workers: int = 1, log: Callable[[str], None] = print,
                 on_progress: Callable[[int, int], None] | None = None):
        self.device, self.seeds_left, self.workers, self.log = device, seeds_left, workers, log
        self.on_progress = on_progress  # also told of every step (a bar of a long seed's steps)
        self.together = 1  # seeds training at once in the pack in flight
        self.t_first = self.done = self.total = None
        self.told = False

    def start(self, together: int) -> None:
        """A new pack: `together` seeds train at once (1 when they train one after another)."""
        self.together, self.t_first, self.done = together, None, None

    def step(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)
        now = time.perf_counter()
        if done == 1 or self.t_first is None:
            self.t_first, self.t_first_done = now, done
        self.t_last, self.done, self.total = now, done, total
        timed = done - self.t_first_done
        if not self.told and timed >= 2 and (now - self.t_first >= 2.0 or timed >= 20):
            self.told = True
            self.log(self.projection())

    def seconds_per_step(self) -> float | None:
        if self.t_first is None or self.done is None or self.done <= self.t_first_done:
            return None
        return (self.t_last - self.t_first) / (self.done - self.t_first_done)

    def projection(self) -> str:
        per_step = self.seconds_per_step()
        per_seed = per_step * self.total / self.together
        range_s = per_seed * self.seeds_left / self.workers
        on = f"{self.workers} workers" if self.workers > 1 else str(self.device)
        line = (f"pace: {per_step:.3g} s per training step on {self.device}: about {duration(per_seed)} a seed "
                f"({self.total} steps{f', {self.together} seeds at once' if self.together > 1 else ''}), "
                f"about {duration(range_s)} for the {self.seeds_left} seeds to train on {on}")
        if str(self.device).startswith("cpu") and per_seed > SLOW_SEED_S:
            line += ("\nthis protocol is meant for a GPU and none is in use: a seed takes "
                     f"{duration(per_seed)} on this CPU. For a demo on the CPU try --preset smoke")
        return line

    def in_flight(self) -> str | None:
        """What the pack in flight still needs, e.g. "about 12 min more", or None before it is timed."""
        per_step = self.seconds_per_step()
        if per_step is None:
            return None
        return f"about {duration(per_step * (self.total - self.done))} more"
