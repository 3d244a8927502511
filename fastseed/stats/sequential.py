"""Scans that stop when the question is answered: stopping rules on confidence sequences.

A scan calls a rule after every committed seed (in seed order, see fastseed/stats/confseq.py):
  UntilWidth(W)       train until the 95 % confidence sequence of the mean accuracy is at most ±W;
  Versus(M)           train until mean(A) − mean(B) is decided: better, worse, or within ±M.
Each looks after every seed, so each stands on a confidence sequence (CS), an interval valid at every
number of seeds at once — never a t-interval recomputed after each seed (confseq.py says why). Both
take `method`: "normal" (the default: the t-mixture CS, exact for normal seed accuracies, stops at
about twice a fixed-n t-interval's seeds) or "bounded" (empirical Bernstein: no assumption but the
range, thousands of seeds). The stop message and the report's text name the method and its assumption.

Diverged runs (NaN) are counted and left out, as in the report: the mean is that of finished runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastseed import FastseedError
from fastseed.stats.confseq import ALPHA, check_alpha, check_number, confidence_sequence

MIN_SEEDS = 10


def _check_min_seeds(min_seeds) -> int:
    n = check_number(min_seeds, "min_seeds (the first seed only places the centre)", 2, strict=False)
    if not n.is_integer():
        raise FastseedError(f"min_seeds must be a whole number, got {min_seeds!r}")
    return int(n)


@dataclass(frozen=True)
class Decision:
    """Why a scan stopped. `estimate`, `lower`, `upper`: the mean (UntilWidth) or the difference of
    means A − B (Versus) and its interval; `seeds`: (n,) or (n_A, n_B), diverged runs not counted."""
    verdict: str          # "width" | "better" | "worse" | "within"
    estimate: float
    lower: float
    upper: float
    seeds: tuple[int, ...]
    reason: str           # one line for the scan to print


def _unit(bounds) -> str:
    return " pp" if bounds == (0.0, 100.0) else ""


def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g} %"


class UntilWidth:
    """Train until the (1 − α) CS of the mean accuracy is at most ±`half_width` (half its width).
    `method`: "normal" (t-mixture) or "bounded" (empirical Bernstein), see confseq.py.

        rule = UntilWidth(0.1)
        for acc in accuracies_in_seed_order:      # NaN for a diverged run
            if (decision := rule.update(acc)):
                print(decision.reason); break
    """

    def __init__(self, half_width: float, alpha: float = ALPHA, bounds=(0.0, 100.0),
                 min_seeds: int = MIN_SEEDS, method: str = "normal", shape=()):
        self.half_width = check_number(half_width, "the interval's half-width", 0, strict=True)
        self.min_seeds = _check_min_seeds(min_seeds)
        self.cs = confidence_sequence(method, bounds, alpha, shape)

    def add(self, acc, where=True) -> None:
        """One accuracy (NaN: a diverged run) per study where `where` holds."""
        self.cs.add(acc, where)

    @property
    def stopped(self):
        return (self.cs.n >= self.min_seeds) & (self.cs.half_width <= self.half_width)

    @property
    def decision(self) -> Decision | None:
        if self.cs.shape != ():
            raise ValueError("a decision is read for one study; use .stopped over many")
        if not self.stopped:
            return None
        cs, unit, n = self.cs, _unit(self.cs.bounds), int(self.cs.n)
        crossed = (" (empty: the bounds crossed, a 1-in-20 miss or accuracies that drift)"
                   if cs.upper < cs.lower else "")
        reason = (f"the {_level(cs.alpha)} confidence sequence of the mean is "
                  f"±{float(cs.half_width):.3f}{unit} after {n:,} seeds (≤ ±{self.half_width:g}{unit}): "
                  f"mean {float(cs.mean):.3f}, "
                  f"interval [{float(cs.lower):.3f}, {float(cs.upper):.3f}]{crossed}; "
                  f"method {cs.method} ({cs.label})")
        return Decision("width", float(cs.mean), float(cs.lower), float(cs.upper), (n,), reason)

    def update(self, acc) -> Decision | None:
        self.add(acc)
        return self.decision


VERDICTS = np.array(["", "better", "worse", "within"])


class Versus:
    """Train until mean(A) − mean(B) is decided: better (its CS above 0), worse (below 0) or within
    ±`margin` (inside [−margin, +margin]); better/worse win when both hold, the interval says the rest.

    The CS of the difference is [lower_A − upper_B, upper_A − lower_B], each side a CS at α/2 (a union
    bound): valid for any numbers of seeds on either side, chosen as the scan likes (`needs`), with
    different distributions on the two sides, and without pairing seeds (seed s of A and seed s of B
    are not matched: two protocols' runs are independent, pairing would only discard unmatched seeds).
    Every verdict is true whenever both CSs cover their means, so P(any wrong verdict) ≤ α.
    With margin 0 and equal means no verdict ever comes: cap the scan's seeds.
    `method` ("normal" or "bounded", confseq.py) is that of both sides' CSs; with "normal" each side may
    have its own spread (no equal-variance assumption: the two CSs are separate).
    """

    def __init__(self, margin: float, alpha: float = ALPHA, bounds=(0.0, 100.0),
                 min_seeds: int = MIN_SEEDS, labels=("A", "B"), method: str = "normal", shape=(),
                 higher_is_better: bool = True):
        self.margin = check_number(margin, "the margin", 0, strict=False)
        self.higher_is_better = bool(higher_is_better)  # False (a loss): A is better when its mean is lower
        self.alpha = check_alpha(alpha)
        self.min_seeds = _check_min_seeds(min_seeds)
        self.labels = tuple(labels)
        self.a = confidence_sequence(method, bounds, alpha / 2, shape)
        self.b = confidence_sequence(method, bounds, alpha / 2, shape)

    @property
    def shape(self):
        return self.a.shape

    def add(self, side: str, acc, where=True) -> None:
        """One accuracy (NaN: a diverged run) for side "A" or "B", per study where `where` holds."""
        if side not in ("A", "B"):
            raise ValueError(f"side must be 'A' or 'B', got {side!r}")
        (self.a if side == "A" else self.b).add(acc, where)

    def needs(self):
        """The side to train next: the one with the wider CS (fewer seeds on a tie, then A)."""
        a, b = self.a, self.b
        wa, wb = a.upper - a.lower, b.upper - b.lower
        side = np.where((wa > wb) | ((wa == wb) & (a.n <= b.n)), "A", "B")
        return str(side) if self.shape == () else side

    @property
    def interval(self):
        """(lower, upper) of the (1 − α) CS of mean(A) − mean(B)."""
        return self.a.lower - self.b.upper, self.a.upper - self.b.lower

    @property
    def verdict(self):
        """"better" | "worse" | "within", or "" while undecided (per study)."""
        lower, upper = self.interval
        enough = (self.a.n >= self.min_seeds) & (self.b.n >= self.min_seeds)
        inside = (lower >= -self.margin) & (upper <= self.margin)
        better, worse = (lower > 0, upper < 0) if self.higher_is_better else (upper < 0, lower > 0)
        code = np.select([better, worse, inside], [1, 2, 3], 0)
        verdict = VERDICTS[np.where(enough, code, 0)]
        return str(verdict) if self.shape == () else verdict

    @property
    def decision(self) -> Decision | None:
        if self.shape != ():
            raise ValueError("a decision is read for one study; use .verdict over many")
        verdict = self.verdict
        if not verdict:
            return None
        (la, lb), unit = self.labels, _unit(self.a.bounds)
        lower, upper = (float(v) for v in self.interval)
        diff = float(self.a.mean - self.b.mean)
        n = (int(self.a.n), int(self.b.n))
        above, below = ("above", "below") if self.higher_is_better else ("below", "above")
        lower_note = "" if self.higher_is_better else " (lower is better)"
        what = {"better": f"{la} is better than {lb}{lower_note}: the whole interval is {above} 0",
                "worse": f"{la} is worse than {lb}{lower_note}: the whole interval is {below} 0",
                "within": f"{la} and {lb} are within ±{self.margin:g}{unit}: the whole interval is inside "
                          f"[−{self.margin:g}, +{self.margin:g}]"}[verdict]
        if verdict != "within" and -self.margin <= lower and upper <= self.margin:
            what += f" (and inside ±{self.margin:g})"
        reason = (f"{what}; the {_level(self.alpha)} confidence sequence of mean({la}) − mean({lb}) is "
                  f"[{lower:+.3f}, {upper:+.3f}]{unit} (difference {diff:+.3f}) "
                  f"after {n[0]:,} + {n[1]:,} seeds; method {self.a.method} ({self.a.label})")
        return Decision(verdict, diff, lower, upper, n, reason)

    def update(self, side: str, acc) -> Decision | None:
        self.add(side, acc)
        return self.decision


def describe_rule(rule: UntilWidth | Versus) -> str:
    """The stopping rule and its method, in words, for the report."""
    if isinstance(rule, UntilWidth):
        cs, unit = rule.cs, _unit(rule.cs.bounds)
        what = (f"Seeds were trained until the {_level(cs.alpha)} confidence sequence of the mean accuracy "
                f"was at most ±{rule.half_width:g}{unit} (half its width), at least {rule.min_seeds} seeds")
        level = _level(cs.alpha)
    else:
        la, lb = rule.labels
        unit = _unit(rule.a.bounds)
        up, down = ("better", "worse") if rule.higher_is_better else ("worse", "better")
        what = (f"Seeds were trained until the {_level(rule.alpha)} confidence sequence of mean({la}) − "
                f"mean({lb}) lay entirely above 0 ({la} {up}), below 0 ({la} {down}) or inside "
                f"±{rule.margin:g}{unit} (within the margin), at least {rule.min_seeds} seeds a side; it "
                f"joins one confidence sequence per side at {_level(rule.alpha / 2)} (a union bound, seeds "
                f"not paired), and the side with the wider one trained next")
        level = _level(rule.alpha)
        cs = rule.a
    return (f"{what}, checked after every seed in seed order. The interval (method \"{cs.method}\") "
            f"is {cs.citation}: it holds at every number of seeds at once with probability ≥ {level}, so "
            f"looking after every seed does not inflate the error rate as a t-interval recomputed after each "
            f"seed would; {cs.assumption}. Diverged runs are left out.")


def simulate_until_width(x, half_width: float, **kw) -> UntilWidth:
    """UntilWidth run on every row of `x` (studies × seeds, in seed order) until it stops or the row ends:
    the rule's behaviour by simulation (seeds used: `.cs.n`), for tests, benchmarks and planning."""
    x = np.asarray(x, dtype=float)
    rule = UntilWidth(half_width, shape=x.shape[0], **kw)
    for t in range(x.shape[1]):
        going = ~rule.stopped
        if not going.any():
            break
        rule.add(x[:, t], where=going)
    return rule


def simulate_versus(xa, xb, margin: float, **kw) -> Versus:
    """Versus run on every pair of rows of `xa`, `xb` (studies × seeds), each study training the side it
    `needs` (the other while one is used up) until decided or out of seeds: verdicts and seeds used."""
    xa, xb = np.asarray(xa, dtype=float), np.asarray(xb, dtype=float)
    (studies, cap_a), cap_b = xa.shape, xb.shape[1]
    rule, rows = Versus(margin, shape=studies, **kw), np.arange(studies)
    while True:
        used_a, used_b = rule.a.n + rule.a.diverged, rule.b.n + rule.b.diverged
        undecided = rule.verdict == ""
        go_a = undecided & (used_a < cap_a) & ((rule.needs() == "A") | (used_b >= cap_b))
        go_b = undecided & (used_b < cap_b) & ~go_a
        if not (go_a | go_b).any():
            return rule
        rule.add("A", xa[rows, np.minimum(used_a, cap_a - 1)], where=go_a)
        rule.add("B", xb[rows, np.minimum(used_b, cap_b - 1)], where=go_b)
