"""A scan that stops when its question is answered: a stopping rule (fastseed.stats.sequential) fed the
committed accuracies of its range in seed order, read back from the stores.

    stopping = Stopping.until_width(out, start, end, half_width=0.1)          # --until-ci 0.1
    stopping = Stopping.versus(out, other, start, end, margin=0.05, labels=…) # --versus OTHER --margin 0.05
    stopping.turn()       # feeds what is stored; "A" or "B": the side to train next; None: decided or used up
    stopping.decision     # fastseed.stats.sequential.Decision once the rule has decided

A confidence sequence is valid for any order of the seeds fixed in advance, never for commit order (with
several workers, commit order follows run time, and run time can depend on the run), so each side is read
as the longest committed prefix of the range [start, end), value by value (`SeedOrder`), and the rule is
asked after each value: a rerun of the same command feeds the same values in the same order and reaches
the same decision at the same seed. With two sides the rule's `needs()` picks the side whose next value
it takes, whether that value is stored already (fed at once) or must be trained first (`turn`), and the
other side once one is used up (its whole range fed), as `simulate_versus` does.

The stores are read through their own read-only connections (`Store.open`), so the same object serves a
scan in this process and a pool's parent, which trains nothing and polls the store.

What is fed is the records' headline as shown: test accuracy in percent for the built-in recipes, a
training function's own metric as it returns it (fastseed.store.record.Metric). The rule is made when
the first value is read, with that metric's bounds (both methods need them: a metric without bounds is
refused in one line) and direction (a
lower-is-better metric is fed negated: `--versus` calls the side with the lower mean the better, and a
collapse is a run far above the others).
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from pathlib import Path

import numpy as np

from fastseed import FastseedError

READ = 256  # seeds asked of a store at a time


class SeedOrder:
    """The accuracies (percent; NaN for a diverged seed) of the longest committed prefix of a store's
    seeds [start, end), read incrementally; the store may not exist yet."""

    def __init__(self, path, start: int, end: int):
        self.path, self.next, self.end = Path(path), start, end  # next: the first seed not read yet
        self.store, self.values, self.metric = None, deque(), None  # metric: the records', once one is read

    def pending(self) -> bool:
        """Whether the next value of the prefix is stored (read now if needed)."""
        if not self.values and self.next < self.end:
            self._read()
        return bool(self.values)

    def pop(self) -> float:
        return self.values.popleft()

    @property
    def used_up(self) -> bool:
        """Every seed of the range was read: nothing more will come."""
        return self.next >= self.end and not self.values

    def _read(self) -> None:
        from fastseed.store import Store
        if self.store is None:
            if not self.path.exists():
                return
            self.store = Store.open(self.path)
        while self.next < self.end:
            wanted = range(self.next, min(self.next + READ, self.end))
            rows = [row for batch in self.store.iter_columns(("seed", "status", "test_acc"), seeds=wanted)
                    for row in batch]
            if rows and self.metric is None:
                self.metric = self.store.metric()
            for seed, status, acc in rows:
                if seed != self.next:
                    return  # a gap: that seed is in flight, or free
                ok = status == "ok" and isinstance(acc, (int, float))
                self.values.append(self.metric.scale * float(acc) if ok else np.nan)
                self.next += 1
            if len(rows) < len(wanted):
                return

    def close(self) -> None:
        """Close the reader (a later read opens it again): a store's last connection to close cleans up
        its -wal file, which a reader left open would keep beside it."""
        if self.store is not None:
            self.store.close()
            self.store = None


class Stopping:
    """A rule and the stores it reads: side A is the scan's store; Versus has a side B. `make(bounds)`
    makes the rule once the records' metric is known (the first value read). A lower-is-better metric
    (a loss) is fed negated, so that "better", "worse" and a collapse (a run far below the others) mean
    for it what they mean for an accuracy; the decision says so."""

    def __init__(self, make, sides: dict, flags: str, method: str = "normal"):
        self.make, self.sides, self.flags, self.method = make, sides, flags, method
        self.rule, self.metric, self.sign = None, None, 1
        self.decision, self.fed = None, dict.fromkeys(sides, 0)

    @classmethod
    def until_width(cls, out, start: int, end: int, half_width: float, method: str = "normal") -> Stopping:
        from fastseed.stats.sequential import UntilWidth
        make = lambda bounds: UntilWidth(half_width, method=method, bounds=bounds, start=start)
        return cls(make, {"A": SeedOrder(out, start, end)}, f"--until-ci {half_width:g} --ci-method {method}", method)

    @classmethod
    def versus(cls, out, other, start: int, end: int, margin: float, labels, method: str = "normal") -> Stopping:
        from fastseed.stats.sequential import Versus
        make = lambda bounds: Versus(margin, labels=labels, method=method, bounds=bounds, start=start)
        return cls(make, {"A": SeedOrder(out, start, end), "B": SeedOrder(other, start, end)},
                   f"--versus {other} --margin {margin:g} --ci-method {method}", method)

    def _ready(self, metric) -> None:
        """The rule, made for the records' metric (its bounds, its direction); both sides must share it."""
        from fastseed.store.record import ACCURACY
        metric = metric or ACCURACY
        if self.metric is not None:
            if (metric.name, metric.higher_is_better, metric.bounds) != (self.metric.name, self.metric.higher_is_better,
                                                                          self.metric.bounds):
                raise FastseedError(f"{self.flags}: the two stores measure different metrics ({self.metric.label}, "
                                    f"{metric.label}): nothing to compare")
            return
        if metric.bounds is None:  # both methods bound what a collapse (or any run) can cost the mean
            raise FastseedError(f"{self.flags.split(' --ci-method')[0]}: the stopping rules need the bounds of the "
                                f"metric ({metric.label}), which its records do not give: return bounds=(low, high) "
                                f"with it")
        self.metric, self.sign = metric, 1 if metric.higher_is_better else -1
        low, high = metric.bounds
        self.rule = self.make((low, high) if self.sign > 0 else (-high, -low))

    def _feed(self, side: str, value: float) -> None:
        self._ready(self.sides[side].metric)
        self.fed[side] += 1
        if "B" in self.sides:
            self.rule.add(side, self.sign * value)
        else:
            self.rule.add(self.sign * value)
        self.decision = self.rule.decision
        if self.decision is not None and self.sign < 0:
            name = self.metric.name
            self.decision = dataclasses.replace(self.decision, reason=f"{self.decision.reason} ({name} is lower-is-"
                                                f"better: the rule reads −{name}, and every number here is of it)")

    def _needs(self) -> str:
        return self.rule.needs() if "B" in self.sides and self.rule is not None else "A"

    def turn(self) -> str | None:
        """Feed the rule every stored value it asks for; then the side whose next seed must be trained
        ("A" or "B"), or None once the rule has decided or every side's range is used up."""
        while self.decision is None:
            wanted = self._needs()
            for side in (wanted, *(s for s in self.sides if s != wanted)):  # the other once one is used up
                order = self.sides[side]
                if order.pending():
                    self._feed(side, order.pop())
                    break
                if not order.used_up:
                    return side
            else:
                return None
        return None

    def decided(self) -> bool:
        """Whether the rule has decided, with what is stored now."""
        self.turn()
        return self.decision is not None

    def describe(self) -> str:
        from fastseed.stats.sequential import describe_rule
        if self.rule is None:  # nothing was read: the rule as it would have been for test accuracy
            self._ready(None)
        return describe_rule(self.rule)

    def meta(self) -> str:
        """The store's note of the rule (Store.stopping_note): fastseed.report states it. Undecided, the
        note says where the rule stood (`standing`: its intervals and the runs treated as collapses)."""
        decided = self.decision is not None
        return json.dumps({"rule": self.describe(), "flags": self.flags,
                           "decision": self.decision.reason if decided else None,
                           "verdict": self.decision.verdict if decided else None,
                           "collapsed": dict(zip(self.sides, self.decision.collapsed)) if decided else None,
                           "standing": None if decided else self.rule.standing(),
                           "seeds_fed": self.fed})

    def record(self, protocol, out) -> None:
        """The rule and its decision in the meta of the scan's store (`protocol`'s), for the report."""
        from fastseed.store import STOPPING_NOTE, Store
        if Path(out).exists():
            with Store(out, protocol.name, protocol.hash, protocol.to_json()) as store:
                store.set_meta(STOPPING_NOTE, self.meta())

    def close(self) -> None:
        for order in self.sides.values():
            order.close()


def stopping_rule(job, out, start: int, end: int, *, until_ci=None, versus=None, margin=None, method=None,
                  strategy=None, log=print):
    """The scan's stopping rule (None without --until-ci or --versus) and, for --versus, side B's
    (job, store) to train in turn: the other store's protocol under the scan's options (`strategy`
    as asked, not as decided for A), or None when that store holds the whole range already. Refused in
    one line when the other store is missing, is this one, or holds this protocol."""
    from fastseed.jobs import make_job
    from fastseed.recipe.protocol import protocol_from_json
    from fastseed.store import Store
    method = method or "normal"
    if until_ci is not None:
        return Stopping.until_width(out, start, end, until_ci, method), None
    if versus is None:
        return None, None
    other, out = Path(versus), Path(out)
    if not other.exists():
        raise FastseedError(f"--versus {other}: no store there (scan the other protocol into it first)")
    if out.exists() and other.resolve() == out.resolve():
        raise FastseedError(f"--versus {other} is this scan's own store")
    with Store.open(other) as store:
        theirs = protocol_from_json(store.protocol_json)
        if theirs.hash != store.protocol_hash:
            raise FastseedError(f"--versus {other}: its protocol JSON does not hash to its protocol hash")
        complete = store.progress(start, end)[0] >= end - start
    if theirs.hash == job.protocol.hash:
        raise FastseedError(f"--versus {other} holds this scan's protocol ({theirs.name}): nothing to compare")
    labels = (job.protocol.name, theirs.name) if theirs.name != job.protocol.name else ("A", "B")
    rule = Stopping.versus(out, other, start, end, 0.0 if margin is None else margin, labels, method)
    if complete:
        return rule, None
    options = dataclasses.replace(job.options, strategy=strategy, checkpoints=str(other))
    return rule, (make_job(theirs, options, log=log), other)


def check_rule_flags(until_ci, versus, margin, method) -> None:
    """The stopping flags' one-line refusals (their values; the stores are checked when opened)."""
    if until_ci is not None and versus is not None:
        raise FastseedError("--until-ci and --versus: give one (--versus stops on the difference of two "
                            "protocols' means, --until-ci on the width of this one's)")
    if until_ci is not None and not (np.isfinite(until_ci) and until_ci > 0):
        raise FastseedError(f"--until-ci must be a positive number of percentage points (the interval's "
                            f"half-width), got {until_ci:g}")
    if margin is not None and versus is None:
        raise FastseedError("--margin: only with --versus STORE (the difference called negligible)")
    if margin is not None and not (np.isfinite(margin) and margin >= 0):
        raise FastseedError(f"--margin must be a number of percentage points >= 0, got {margin:g}")
    if method is not None and until_ci is None and versus is None:
        raise FastseedError("--ci-method: only with --until-ci or --versus")
