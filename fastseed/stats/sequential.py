"""Scans that stop when the question is answered: confidence sequences for the mean accuracy.

A scan that looks at its interval after every seed and stops when it is narrow enough (or when two
recipes are told apart) needs an interval valid at every number of seeds at once — a *confidence
sequence* (CS): P(the mean ever leaves the interval, at any n) ≤ α. A t-interval recomputed after each
seed is not one: by the law of the iterated logarithm it leaves the mean with probability → 1 as the
looks go on (tests/stats/test_sequential.py shows it failing within 1,500 looks).

The method: the predictable-plug-in empirical-Bernstein CS ("PrPl-EB") of
    I. Waudby-Smith & A. Ramdas, "Estimating means of bounded random variables by betting",
    J. R. Stat. Soc. B 86(1):1–27, 2024 (arXiv:2010.09686), Theorem 2,
which needs nothing but bounded accuracies (in [0, 100], or [0, 1]) — no normality: a skewed or
two-point distribution, or a rare collapsed run, keeps its guarantee. Its supermartingale, for the
lower bound at a candidate mean m, with bets λ_i ∈ [0, 1) and a centre μ̂_{i-1} fixed before seed i:

    M_t(m) = Π_{i≤t} exp( λ_i (Y_i − m)/s_i − ψ(λ_i) ξ_i² ),   ξ_i = (Y_i − μ̂_{i-1})/s_i,
    ψ(λ) = −log(1 − λ) − λ,

and the lower bound is where log M_t(m) crosses log(2/α); it is linear in m, so the bound is closed
form (`ConfidenceSequence._bet`). Why it holds: Fan, Grama & Liu (2015, Electron. J. Probab. 20, Lemma 4.1) give
exp(λξ − ψ(λ)ξ²) ≤ 1 + λξ for ξ ≥ −1, 0 ≤ λ < 1; if E[Y_i | past] ≤ μ then E[factor at m = μ | past]
≤ (1 + z)e^{−z} ≤ 1 with z = λ_i(μ − μ̂_{i-1})/s_i, so M_t(μ) is a nonnegative supermartingale and
Ville's inequality bounds P(∃t: M_t(μ) ≥ 2/α) by α/2. The upper bound is the same on −X.

What differs from WSR's Theorem 2, each step inside the proof above:
  * scale: WSR rescale to [0, 1] (s_i = range). The proof needs only ξ_i ≥ −1, i.e. s_i ≥ μ̂_{i-1} − lo,
    so each bound uses the room between the running mean and the bound it must guard: 90 points below
    a 90 % mean, 10 above. Seed accuracies have a tiny spread (±0.23 pp in Picard's study) against a
    100-point range, so both bounds are dominated by the range term log(2/α)·s/(c·n): using the room
    instead of the range halves the seeds an `UntilWidth` needs and nearly halves a `Versus`.
  * clipping: Y_i = min(X_i, μ̂_{i-1} + s_i) lowers what the lower bound bets on (E[Y_i] ≤ μ still
    holds) and keeps |ξ_i| ≤ 1, so one collapsed run costs the upper bound at most ψ(c), not (90/10)²ψ.
  * bets: λ_i = min(c, sqrt(2 log(2/α) / (σ̂²_{i-1}/s_i² · i log(1 + i)))), WSR's plug-in on the scaled
    variable, with c = 0.9 (WSR suggest 1/2 or 3/4; in the range-dominated regime the width is ∝ 1/c:
    ±0.1 pp at Picard's spread takes ~2,150 seeds at c = 0.9, ~2,520 at 3/4, ~3,730 at 1/2, against
    ~20 % wider intervals for widely spread accuracies); σ̂² holds one pseudo-observation of variance
    (range/10)² (WSR's (range/2)² keeps the 10-point side from betting for ~10^4 seeds); the first
    seed is not bet on, it only places the centre (μ̂ is the plain running mean).
  * running intersection: the reported bounds are the best so far, so intervals only narrow (valid:
    a miss at any n is in the same event).
None of these choices can break validity (any predictable bets, centres and scales are allowed); they
only decide how fast the interval narrows.

Why thousands of seeds, whatever the method: a CS valid for every distribution on [0, 100] cannot rule
out rare collapsed runs. Mix the data's distribution P with a point at 0 of weight p = d/μ: the mean
drops by d, and the first n draws look like P with probability (1 − p)^n. A CS valid under the mixture
can have its lower end above μ − d at seed n with probability β under P only if (1 − p)^n β ≤ α, so
n ≥ log(β/α)·μ/d: in the median study (β = 1/2) ~1,200 seeds before the lower end is within 0.17 pp
of a 90 % mean. This CS gets there at ~2,150 seeds (its upper end then 0.03 pp above the mean: the
interval is lopsided, as it must be), stopping `UntilWidth(0.1)`; a t-interval would say ±0.1 pp at 23
seeds, assuming normal accuracies and a single look.

Seed order: the CS is valid for any order of the seeds fixed independently of their accuracies. Feed
accuracies in seed order — the longest committed prefix of the scan's seed list — not in commit order:
with several workers, commit order follows run time, and run time can depend on the run (a diverged
run stops early). Objects hold no state worth saving: after a restart, a fresh object fed the stored
accuracies in seed order reaches the same numbers (same values, same order, same arithmetic).
Diverged runs (NaN) are counted and left out, as in the report: the mean is that of finished runs.

Everything is vectorised over independent studies (`shape`), so tests and benchmarks run hundreds of
simulated scans at once through the same code the scan calls for one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastseed import FastseedError

ALPHA = 0.05
CAP = 0.9            # c: the largest bet, as a fraction of the room between the running mean and a bound
PRIOR_SPREAD = 0.1   # σ̂² starts from one pseudo-observation of variance (PRIOR_SPREAD · range)²
FLOOR = 1e-3         # the least room, as a fraction of the range (a running mean sitting on a bound)
MIN_SEEDS = 10

CITATION = ("the predictable-plug-in empirical-Bernstein confidence sequence of Waudby-Smith & Ramdas "
            "(2024, J. R. Stat. Soc. B 86:1–27, Theorem 2; arXiv:2010.09686)")


def _psi(lam):
    return -np.log1p(-lam) - lam


def _check_bounds(bounds) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise FastseedError(f"bounds must be two numbers (lowest, highest accuracy), got {bounds!r}")
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise FastseedError(f"bounds must be finite with lowest < highest, got {bounds!r}")
    return lo, hi


def _number(value, what: str, least: float, strict: bool) -> float:
    """`value` as a finite float above `least` (or at least `least`), else one clear error."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = np.nan
    if not (np.isfinite(x) and (x > least if strict else x >= least)):
        raise FastseedError(f"{what} must be a number {'>' if strict else '≥'} {least:g}, got {value!r}")
    return x


def _check_alpha(alpha) -> float:
    if not _number(alpha, "alpha", 0, strict=True) < 1:
        raise FastseedError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_min_seeds(min_seeds) -> int:
    n = _number(min_seeds, "min_seeds (the first seed only places the centre)", 2, strict=False)
    if not n.is_integer():
        raise FastseedError(f"min_seeds must be a whole number, got {min_seeds!r}")
    return int(n)


class ConfidenceSequence:
    """Anytime-valid (1 − α) interval for the mean of i.i.d. values in `bounds`, after every value.

    `shape` holds that many independent streams (a study each); `add(x, where)` adds one value to the
    streams where `where` is true. A NaN is a diverged run: counted in `diverged`, left out of the mean.
    `lower`, `upper`, `mean`, `n` (values taken), `diverged` have that shape.

    Both bounds are computed as lower bounds, stacked on a leading axis of 2: the lower bound of X, and
    the lower bound of −X (minus the upper bound). Per side it keeps Σγ_i, Σγ_i·Y_i and Σψ(λ_i)ξ_i²
    (γ_i = λ_i/s_i), so log M_t(m) = ΣγY − m·Σγ − Σψξ², which crosses log(2/α) at the bound."""

    def __init__(self, bounds=(0.0, 100.0), alpha: float = ALPHA, shape=()):
        self.bounds = _check_bounds(bounds)
        self.alpha = _check_alpha(alpha)
        lo, hi = self.bounds
        self.shape = np.broadcast_shapes(shape)
        self.n = np.zeros(self.shape, dtype=np.int64)
        self.diverged = np.zeros(self.shape, dtype=np.int64)
        self._sum, self._dev2 = np.zeros(self.shape), np.zeros(self.shape)
        sides = (2,) + (1,) * len(self.shape)
        self._guard = np.array([lo, -hi]).reshape(sides)       # the bound each side must stay above
        self._sign = np.array([1.0, -1.0]).reshape(sides)
        self._log_level = np.log(2 / alpha)                    # α/2 a side
        self._gamma, self._gamma_y, self._penalty = (np.zeros((2,) + self.shape) for _ in range(3))
        self._best = np.broadcast_to(self._guard, (2,) + self.shape).copy()

    def add(self, x, where=True) -> None:
        x, where = np.asarray(x, dtype=float), np.asarray(where, dtype=bool)
        if x.shape != self.shape or where.shape != self.shape:
            x, where = np.broadcast_to(x, self.shape), np.broadcast_to(where, self.shape)
        lo, hi = self.bounds
        bad = where & ((x < lo) | (x > hi))                    # NaN (a diverged run) is neither
        if bad.any():
            raise FastseedError(f"accuracy {x[bad].flat[0]:g} is outside the bounds [{lo:g}, {hi:g}] of "
                                f"this confidence sequence (percent and fractions mixed up?)")
        nan = np.isnan(x)
        self.diverged += where & nan
        take = where & ~nan
        x = np.where(take, x, lo)
        t = self.n + 1
        centre = np.where(self.n > 0, self._sum, (lo + hi) / 2) / np.maximum(self.n, 1)
        var = ((PRIOR_SPREAD * (hi - lo)) ** 2 + self._dev2) / t
        bet = take & (t > 1)                                   # the first value only places the centre
        self._bet(self._sign * x, self._sign * centre, var, t, bet)
        self.n += take
        self._sum += np.where(take, x, 0.0)
        self._dev2 += np.where(take, (x - self._sum / np.maximum(self.n, 1)) ** 2, 0.0)

    def _bet(self, x, centre, var, t, bet):
        """Both sides' bets on x (2 × shape), centred and scaled from the t − 1 values before it."""
        s = np.maximum(centre - self._guard, FLOOR * (self.bounds[1] - self.bounds[0]))  # room: ξ ≥ −1
        y = np.minimum(x, centre + s)                          # clip the favourable side: |ξ| ≤ 1
        xi = (y - centre) / s
        lam = np.minimum(CAP, np.sqrt(2 * self._log_level * s * s / (var * t * np.log1p(t)))) * bet
        gamma = lam / s
        self._gamma += gamma
        self._gamma_y += gamma * y
        self._penalty += _psi(lam) * xi * xi
        bound = (self._gamma_y - self._penalty - self._log_level) / np.maximum(self._gamma, 1e-300)
        np.maximum(self._best, np.where(self._gamma > 0, bound, -np.inf), out=self._best)  # running ∩

    @property
    def mean(self):
        return np.where(self.n > 0, self._sum, np.nan) / np.maximum(self.n, 1)

    @property
    def lower(self):
        return self._best[0].copy()

    @property
    def upper(self):
        return -self._best[1]

    @property
    def half_width(self):
        """Half the interval's width (0 if the bounds crossed: a miss, or values drifting over time)."""
        return np.maximum(self.upper - self.lower, 0) / 2


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

        rule = UntilWidth(0.1)
        for acc in accuracies_in_seed_order:      # NaN for a diverged run
            if (decision := rule.update(acc)):
                print(decision.reason); break
    """

    def __init__(self, half_width: float, alpha: float = ALPHA, bounds=(0.0, 100.0),
                 min_seeds: int = MIN_SEEDS, shape=()):
        self.half_width = _number(half_width, "the interval's half-width", 0, strict=True)
        self.min_seeds = _check_min_seeds(min_seeds)
        self.cs = ConfidenceSequence(bounds, alpha, shape)

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
                  f"interval [{float(cs.lower):.3f}, {float(cs.upper):.3f}]{crossed}")
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
    """

    def __init__(self, margin: float, alpha: float = ALPHA, bounds=(0.0, 100.0),
                 min_seeds: int = MIN_SEEDS, labels=("A", "B"), shape=()):
        self.margin = _number(margin, "the margin", 0, strict=False)
        self.alpha = _check_alpha(alpha)
        self.min_seeds = _check_min_seeds(min_seeds)
        self.labels = tuple(labels)
        self.a = ConfidenceSequence(bounds, alpha / 2, shape)
        self.b = ConfidenceSequence(bounds, alpha / 2, shape)

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
        code = np.select([lower > 0, upper < 0, inside], [1, 2, 3], 0)
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
        what = {"better": f"{la} is better than {lb}: the whole interval is above 0",
                "worse": f"{la} is worse than {lb}: the whole interval is below 0",
                "within": f"{la} and {lb} are within ±{self.margin:g}{unit}: the whole interval is inside "
                          f"[−{self.margin:g}, +{self.margin:g}]"}[verdict]
        if verdict != "within" and -self.margin <= lower and upper <= self.margin:
            what += f" (and inside ±{self.margin:g})"
        reason = (f"{what}; the {_level(self.alpha)} confidence sequence of mean({la}) − mean({lb}) is "
                  f"[{lower:+.3f}, {upper:+.3f}]{unit} (difference {diff:+.3f}) "
                  f"after {n[0]:,} + {n[1]:,} seeds")
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
        what = (f"Seeds were trained until the {_level(rule.alpha)} confidence sequence of mean({la}) − "
                f"mean({lb}) lay entirely above 0 ({la} better), below 0 ({la} worse) or inside "
                f"±{rule.margin:g}{unit} (within the margin), at least {rule.min_seeds} seeds a side; it "
                f"joins one confidence sequence per side at {_level(rule.alpha / 2)} (a union bound, seeds "
                f"not paired), and the side with the wider one trained next")
        level = _level(rule.alpha)
        cs = rule.a
    lo, hi = cs.bounds
    return (f"{what}, checked after every seed in seed order. The interval is {CITATION}, with each bound "
            f"scaled to the room between the running mean and [{lo:g}, {hi:g}]: it holds at every number of "
            f"seeds at once with probability ≥ {level} for any distribution of accuracies in [{lo:g}, "
            f"{hi:g}] (no normality assumed), so looking after every seed does not inflate the error rate "
            f"as a t-interval recomputed after each seed would. It reaches further below a mean than above "
            f"it when the mean is near the top of the range: a rare collapsed run could pull the mean "
            f"down, and only many seeds rule that out. Diverged runs are left out.")


def simulate_until_width(x, half_width: float, **kw) -> UntilWidth:
    """UntilWidth run on every row of `x` (studies × seeds, in seed order) until it stops or the row ends:
    the rule's behaviour by simulation (seeds used: `.cs.n`), for tests, benchmarks and planning."""
    x = np.asarray(x, dtype=float)
    rule = UntilWidth(half_width, shape=x.shape[0], **kw)
    for t in range(x.shape[1]):
        rule.add(x[:, t], where=~rule.stopped)
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
