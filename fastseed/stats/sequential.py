"""Scans that stop when the question is answered: stopping rules on confidence sequences.

A scan calls a rule after every committed seed (in seed order, see fastseed/stats/confseq.py):
  UntilWidth(W)       train until the 95 % confidence sequence of the mean accuracy is at most ±W;
  Versus(M)           train until mean(A) − mean(B) is decided: better, worse, or within ±M.
Each looks after every seed, so each stands on confidence sequences (CS), intervals valid at every number
of seeds at once — never a t-interval recomputed after each seed (confseq.py says why).

Each side of a rule is an `Arm` whose finished runs (diverged ones, NaN, are counted and left out, as in
the report) answer twice, each answer a (1 − α) statement of its own:
  * for the mean of all finished runs: verdicts "width", "better", "worse", "within". Method "normal"
    (the default) assumes the runs that did not collapse are normal and nothing of the collapses
    (collapses.MixtureCS); method "bounded" assumes nothing but the bounds (confseq.BoundedCS);
  * method "normal" only, while no run has collapsed: the same question for the runs that did not
    collapse, by the t-mixture on them (confseq.NormalCS): verdicts "width if no collapse", "better if no
    collapse", …, each naming the collapse rates it cannot rule out and the interval that holds whatever
    they are. Once a run collapses, this answer is withheld (its assumption is visibly broken; a verdict
    "if no collapse" already given is withdrawn, though a scan has stopped at it) and the rule trains on
    for the first, until it decides or the seeds run out.
Why two: a collapse (collapses.py: a run far below the others, which no normal distribution produces)
moves the mean by its rate times ~80 pp, and a few dozen seeds cannot rule out a rate that reverses a
0.3 pp difference — at 0.5 %, 30 seeds hold no collapse 86 % of the time. No rule can decide the mean there
in ~60 seeds; the normal rule says what it can (the second answer, at about twice a fixed-n t-interval's
seeds) and what it assumes, and never gives the mean a verdict its interval does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastseed import FastseedError
from fastseed.stats.collapses import FALSE_FLAGS, FIRST, MixtureCS, find_collapses, rate_interval
from fastseed.stats.confseq import ALPHA, BoundedCS, NormalCS, check_alpha, check_number

METHODS = ("normal", "bounded")
MIN_SEEDS = 10
IF = " if no collapse"   # the verdicts of the runs that did not collapse (method normal, none seen)


def _check_min_seeds(min_seeds) -> int:
    n = check_number(min_seeds, "min_seeds (the first seed only places the centre)", 2, strict=False)
    if not n.is_integer():
        raise FastseedError(f"min_seeds must be a whole number, got {min_seeds!r}")
    return int(n)


@dataclass(frozen=True)
class Decision:
    """Why a scan stopped. `estimate`, `lower`, `upper`: the mean of all finished runs (UntilWidth) or the
    difference of means A − B (Versus) and its interval (the method's answer for all runs, whatever the
    verdict); `if_no_collapse`: (estimate, lower, upper) of the same for the runs that did not collapse
    (method normal); `seeds`: (n,) or (n_A, n_B) finished runs; `collapsed`: per side, the seeds
    treated as collapses."""
    verdict: str          # "width" | "better" | "worse" | "within", each possibly + IF
    estimate: float
    lower: float
    upper: float
    seeds: tuple[int, ...]
    reason: str           # one line for the scan to print
    collapsed: tuple[tuple[int, ...], ...] = ()
    if_no_collapse: tuple[float, float, float] | None = None

    @property
    def conditional(self) -> bool:
        """Whether the verdict holds only if no run collapses (none had when it was given)."""
        return self.verdict.endswith(IF)


def _unit(bounds) -> str:
    return " pp" if bounds == (0.0, 100.0) else ""


def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g} %"


def _pct(rate: float) -> str:
    return f"{100 * rate:.2g} %"


EMPTY = "the bounds crossed, a 1-in-20 miss or accuracies that drift"


def _interval(cs, signed: bool = False, unit: str = "", empty: bool = True) -> str:
    f = "+.3f" if signed else ".3f"
    return f"[{cs[0]:{f}}, {cs[1]:{f}}]{unit}" + (f" (empty: {EMPTY})" if empty and cs[1] < cs[0] else "")


def _empty_sides(labels) -> str:
    """A Versus verdict read from a side whose own interval is empty says so: the difference's interval
    can stay wide while one side's crossed."""
    return f" (empty for {' and '.join(labels)}: {EMPTY})" if labels else ""


class Arm:
    """One side's runs. `all`: the CS of the mean of every finished run — MixtureCS (method "normal": the
    runs that did not collapse normal, collapses of any rate) or BoundedCS ("bounded": any distribution in
    the bounds); `kept` (method normal): the t-mixture of the runs that did not collapse at the same α,
    fed by `all`, for the answer "if no collapse". For one study (a scan) it keeps the values, to name
    the collapses (collapses.find_collapses: the same test) in what it says."""

    def __init__(self, method: str, bounds, alpha: float, shape, start: int = 0):
        if method not in METHODS:
            raise FastseedError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
        self.method, self.alpha, self.start = method, alpha, start
        self.kept = NormalCS(bounds, alpha, shape) if method == "normal" else None
        self.all = (BoundedCS(bounds, alpha, shape) if self.kept is None else
                    MixtureCS(bounds, alpha, shape, also=(self.kept,)))
        self.values = [] if self.all.shape == () else None

    def add(self, x, where=True) -> None:
        self.all.add(x, where)
        if self.values is not None and where:
            self.values.append(float(x))

    @property
    def n(self):
        return self.all.n

    @property
    def open(self):
        """Where the answer for the runs that did not collapse is given: method normal, no collapse yet."""
        return np.zeros(self.all.shape, dtype=bool) if self.kept is None else self.all.count == 0

    @property
    def holds(self) -> str:
        """Under what the interval of all runs holds."""
        return "whatever the distribution" if self.kept is None else "with collapses of any rate"

    def collapsed(self) -> tuple[int, ...]:
        """The seeds treated as collapses (one study), found again only when values came."""
        if getattr(self, "_found", (None,))[0] != len(self.values):
            found = np.flatnonzero(find_collapses(self.values, self.all.bounds))
            self._found = (len(self.values), tuple(self.start + int(i) for i in found))
        return self._found[1]

    def collapses(self, name: str = "") -> tuple[int, str]:
        """How many runs collapsed and, in words, which (seeds, and their rate's interval) or, with none,
        the rate not ruled out (one study); `name` the side's, for two sides."""
        seeds = self.collapsed()
        low, high = (float(v) for v in rate_interval(len(seeds), int(self.n), self.alpha))
        if not seeds:
            return 0, f"up to {_pct(high)}{f' for {name}' if name else ''}"
        listed = ", ".join(f"{s} at {self.values[s - self.start]:.2f}" for s in seeds[:10])
        more = f" and {len(seeds) - 10:,} more" if len(seeds) > 10 else ""
        runs = "1 run" if len(seeds) == 1 else f"{len(seeds):,} runs"
        return len(seeds), (f"{runs}{f' of {name}' if name else ''} treated as "
                            f"{'a collapse' if len(seeds) == 1 else 'collapses'}, counted in the mean "
                            f"(seed{'s' if len(seeds) > 1 else ''} {listed}{more}; rate {_pct(low)}–{_pct(high)})")

    def words(self) -> str:
        return f"method {self.method} ({self.all.label})"


def _collapse_words(arms, names=("",)) -> str:
    """The arms' collapses: the seeds treated as collapses, or, where none, the rates not ruled out."""
    said = [arm.collapses(name) for arm, name in zip(arms, names)]
    if not any(k for k, _ in said):
        rates = " and ".join(words for _, words in said)
        return f"no run collapsed ({'a collapse rate' if len(arms) == 1 else 'collapse rates'} {rates} not ruled out)"
    return "; ".join(words if k else f"no run of {name} collapsed (a rate {words.split(' for ')[0]} not ruled out)"
                     for (k, words), name in zip(said, names))


class UntilWidth:
    """Train until the (1 − α) CS of the mean accuracy is at most ±`half_width` (half its width): of all
    finished runs ("width"), or, with method "normal" and no collapse yet, of the runs that did not
    collapse ("width if no collapse"). `start`: the seed of the first value (to name collapses).

        rule = UntilWidth(0.1)
        for acc in accuracies_in_seed_order:      # NaN for a diverged run
            if (decision := rule.update(acc)):
                print(decision.reason); break
    """

    def __init__(self, half_width: float, alpha: float = ALPHA, bounds=(0.0, 100.0),
                 min_seeds: int = MIN_SEEDS, method: str = "normal", shape=(), start: int = 0):
        self.half_width = check_number(half_width, "the interval's half-width", 0, strict=True)
        self.alpha = check_alpha(alpha)
        self.min_seeds = _check_min_seeds(min_seeds)
        self.arm = Arm(method, bounds, alpha, shape, start)

    def add(self, acc, where=True) -> None:
        """One accuracy (NaN: a diverged run) per study where `where` holds."""
        self.arm.add(acc, where)

    @property
    def verdict(self):
        """"width", "width if no collapse", or "" while undecided (per study)."""
        arm = self.arm
        enough = arm.n >= self.min_seeds
        whole = enough & (arm.all.half_width <= self.half_width)
        kept = enough & arm.open & (False if arm.kept is None else arm.kept.half_width <= self.half_width)
        verdict = np.array(["", "width", "width" + IF])[np.select([whole, kept], [1, 2], 0)]
        return str(verdict) if arm.all.shape == () else verdict

    @property
    def stopped(self):
        return np.asarray(self.verdict) != ""

    @property
    def decision(self) -> Decision | None:
        if self.arm.all.shape != ():
            raise ValueError("a decision is read for one study; use .verdict over many")
        verdict = self.verdict
        if not verdict:
            return None
        arm, unit, level, n = self.arm, _unit(self.arm.all.bounds), _level(self.alpha), int(self.arm.n)
        whole = (float(arm.all.lower), float(arm.all.upper))
        kept = None if arm.kept is None else (float(arm.kept.mean), float(arm.kept.lower), float(arm.kept.upper))
        cs, said = (arm.all, "") if verdict == "width" else (arm.kept, "if no run collapses, ")
        said += (f"the {level} confidence sequence of the mean is ±{float(cs.half_width):.3f}{unit} after {n:,} "
                 f"seeds (≤ ±{self.half_width:g}{unit}): mean {float(cs.mean):.3f}, interval "
                 f"{_interval((float(cs.lower), float(cs.upper)))}; {_collapse_words([arm])}")
        said += (f", and {arm.holds} the mean is in {_interval(whole)}" if verdict != "width" else
                 f"; it holds {arm.holds}")
        return Decision(verdict, float(arm.all.mean), *whole, (n,), f"{said}; {arm.words()}",
                        (arm.collapsed(),), kept)

    def update(self, acc) -> Decision | None:
        self.add(acc)
        return self.decision

    def standing(self) -> str:
        """Where the rule stands while undecided, in words (one study)."""
        arm, unit = self.arm, _unit(self.arm.all.bounds)
        text = (f"after {int(arm.n):,} seeds the mean is {float(arm.all.mean):.3f}, in "
                f"{_interval((float(arm.all.lower), float(arm.all.upper)))} {arm.holds} "
                f"(±{float(arm.all.half_width):.3f}{unit})")
        if arm.kept is not None and not arm.open:
            text += (f"; a run collapsed, so the answer for the runs that did not collapse "
                     f"(±{float(arm.kept.half_width):.3f}{unit}) is withheld")
        return f"{text}; {_collapse_words([arm])}"


def _code(lower, upper, margin):
    """1 better, 2 worse, 3 within ±margin, 0 undecided: better/worse win when both hold."""
    return np.select([lower > 0, upper < 0, (lower >= -margin) & (upper <= margin)], [1, 2, 3], 0)


VERDICTS = np.array(["", "better", "worse", "within"] + [v + IF for v in ("better", "worse", "within")])


class Versus:
    """Train until mean(A) − mean(B) is decided: better (its CS above 0), worse (below 0) or within
    ±`margin` (inside [−margin, +margin]); better/worse win when both hold, the interval says the rest.

    The CS of the difference is [lower_A − upper_B, upper_A − lower_B], each side a CS at α/2 (a union
    bound): valid for any numbers of seeds on either side, chosen as the scan likes (`needs`), with
    different distributions on the two sides, and without pairing seeds (seed s of A and seed s of B
    are not matched: two protocols' runs are independent, pairing would only discard unmatched seeds).
    Every verdict is true whenever both CSs cover their means, so P(any wrong verdict) ≤ α: about the
    means of all runs (under the method's assumption), or, for an "if no collapse" verdict, of the runs
    that did not collapse if they are normal (each side may have its own spread).
    With margin 0 and equal means no verdict ever comes: cap the scan's seeds.
    """

    def __init__(self, margin: float, alpha: float = ALPHA, bounds=(0.0, 100.0),
                 min_seeds: int = MIN_SEEDS, labels=("A", "B"), method: str = "normal", shape=(),
                 start: int = 0):
        self.margin = check_number(margin, "the margin", 0, strict=False)
        self.alpha = check_alpha(alpha)
        self.min_seeds = _check_min_seeds(min_seeds)
        self.labels = tuple(labels)
        self.a = Arm(method, bounds, alpha / 2, shape, start)
        self.b = Arm(method, bounds, alpha / 2, shape, start)

    @property
    def shape(self):
        return self.a.all.shape

    def add(self, side: str, acc, where=True) -> None:
        """One accuracy (NaN: a diverged run) for side "A" or "B", per study where `where` holds."""
        if side not in ("A", "B"):
            raise ValueError(f"side must be 'A' or 'B', got {side!r}")
        (self.a if side == "A" else self.b).add(acc, where)

    @property
    def open(self):
        """Where the answer for the runs that did not collapse is given: neither side has a collapse."""
        return self.a.open & self.b.open

    def needs(self):
        """The side to train next: the one with the wider CS — of the runs kept while that answer is
        open, else of all runs (fewer seeds on a tie, then A)."""
        a, b, kept = self.a, self.b, self.open

        def width(arm):
            whole = arm.all.upper - arm.all.lower
            return whole if arm.kept is None else np.where(kept, arm.kept.upper - arm.kept.lower, whole)

        wa, wb = width(a), width(b)
        side = np.where((wa > wb) | ((wa == wb) & (a.n <= b.n)), "A", "B")
        return str(side) if self.shape == () else side

    def interval(self, kept: bool = False):
        """(lower, upper) of the (1 − α) CS of mean(A) − mean(B): of all runs, or of the runs kept."""
        a, b = (self.a.kept, self.b.kept) if kept else (self.a.all, self.b.all)
        return a.lower - b.upper, a.upper - b.lower

    @property
    def verdict(self):
        """"better" | "worse" | "within", the same + " if no collapse", or "" while undecided (per study)."""
        enough = (self.a.n >= self.min_seeds) & (self.b.n >= self.min_seeds)
        whole = _code(*self.interval(), self.margin)
        kept = 0 if self.a.kept is None else _code(*self.interval(kept=True), self.margin)
        code = np.where(whole > 0, whole, np.where(self.open & (kept > 0), kept + 3, 0))
        verdict = VERDICTS[np.where(enough, code, 0)]
        return str(verdict) if self.shape == () else verdict

    @property
    def decision(self) -> Decision | None:
        if self.shape != ():
            raise ValueError("a decision is read for one study; use .verdict over many")
        verdict = self.verdict
        if not verdict:
            return None
        conditional, kind = verdict.endswith(IF), verdict.removesuffix(IF)
        (la, lb), unit, m = self.labels, _unit(self.a.all.bounds), self.margin
        lower, upper = (float(v) for v in self.interval(kept=conditional))
        what = {"better": f"{la} is better than {lb}: the whole interval is above 0",
                "worse": f"{la} is worse than {lb}: the whole interval is below 0",
                "within": f"{la} and {lb} are within ±{m:g}{unit}: the whole interval is inside "
                          f"[−{m:g}, +{m:g}]"}[kind]
        if kind != "within" and -m <= lower and upper <= m:
            what += f" (and inside ±{m:g})"
        side = (self.a.kept, self.b.kept) if conditional else (self.a.all, self.b.all)
        diff, n = float(side[0].mean - side[1].mean), (int(self.a.n), int(self.b.n))
        whole = tuple(float(v) for v in self.interval())
        empty = [label for label, cs in zip(self.labels, side) if float(cs.upper) < float(cs.lower)]
        said = (f"{'if neither collapses, ' if conditional else ''}{what}; the {_level(self.alpha)} confidence "
                f"sequence of mean({la}) − mean({lb}){' of the runs that did not collapse' if conditional else ''} "
                f"is {_interval((lower, upper), True, unit, empty=False)}{_empty_sides(empty)} (difference "
                f"{diff:+.3f}) after {n[0]:,} + {n[1]:,} seeds; {self._collapse_words()}")
        said += (f"; {self._reversal(kind, lower, upper)}, and {self.a.holds} the difference is in "
                 f"{_interval(whole, signed=True)}" if conditional else f"; it holds {self.a.holds}")
        kept = None if self.a.kept is None else (
            float(self.a.kept.mean - self.b.kept.mean), *(float(v) for v in self.interval(kept=True)))
        return Decision(verdict, float(self.a.all.mean - self.b.all.mean), *whole, n,
                        f"{said}; {self.a.words()}", (self.a.collapsed(), self.b.collapsed()), kept)

    def _collapse_words(self) -> str:
        la, lb = self.labels
        return _collapse_words([self.a, self.b], (la, lb))

    def _reversal(self, kind: str, lower: float, upper: float) -> str:
        """What collapse rate could undo an "if no collapse" verdict: a collapse to the lowest accuracy
        costs a side its kept mean minus that, so a gap in rates of the interval's room over that cost."""
        (la, lb), lo = self.labels, self.a.all.bounds[0]
        floor = f"{lo:g}{' %' if _unit(self.a.all.bounds) else ''}"
        cost_a, cost_b = (float(arm.kept.mean) - lo for arm in (self.a, self.b))
        if kind == "better":
            return f"{la} collapsing (to {floor}) in {_pct(lower / cost_a)} more of its runs than {lb} could reverse it"
        if kind == "worse":
            return f"{lb} collapsing (to {floor}) in {_pct(-upper / cost_b)} more of its runs than {la} could reverse it"
        room = min(self.margin - upper, lower + self.margin) / max(cost_a, cost_b)
        return f"a collapse rate {_pct(room)} higher on either side could take it outside ±{self.margin:g}"

    def update(self, side: str, acc) -> Decision | None:
        self.add(side, acc)
        return self.decision

    def standing(self) -> str:
        """Where the rule stands while undecided, in words (one study)."""
        (la, lb), unit = self.labels, _unit(self.a.all.bounds)
        text = (f"after {int(self.a.n):,} + {int(self.b.n):,} seeds mean({la}) − mean({lb}) is in "
                f"{_interval(tuple(float(v) for v in self.interval()), True, unit)} {self.a.holds}")
        if self.a.kept is not None and not self.open:
            text += (f"; a run collapsed, so the answer for the runs that did not collapse ("
                     f"{_interval(tuple(float(v) for v in self.interval(kept=True)), signed=True)}) is withheld")
        return f"{text}; {self._collapse_words()}"


def describe_rule(rule: UntilWidth | Versus) -> str:
    """The stopping rule and its method, in words, for the report."""
    if isinstance(rule, UntilWidth):
        arm, unit, level = rule.arm, _unit(rule.arm.all.bounds), _level(rule.alpha)
        what = (f"Seeds were trained until the {level} confidence sequence of the mean accuracy was at most "
                f"±{rule.half_width:g}{unit} (half its width), at least {rule.min_seeds} seeds")
    else:
        (la, lb), arm, unit, level = rule.labels, rule.a, _unit(rule.a.all.bounds), _level(rule.alpha)
        what = (f"Seeds were trained until the {level} confidence sequence of mean({la}) − mean({lb}) lay "
                f"entirely above 0 ({la} better), below 0 ({la} worse) or inside ±{rule.margin:g}{unit} "
                f"(within the margin), at least {rule.min_seeds} seeds a side; it joins one confidence "
                f"sequence per side at {_level(rule.alpha / 2)} (a union bound, seeds not paired), and the "
                f"side with the wider one trained next")
    text = (f"{what}, checked after every seed in seed order: each interval holds with probability ≥ {level} "
            f"at every number of seeds at once, so looking after every seed does not inflate the error rate as "
            f"a t-interval recomputed after each seed would. Diverged runs are left out. The interval of the "
            f"mean of all runs (method \"{arm.method}\") is {arm.all.citation}; {arm.all.assumption}.")
    if arm.kept is not None:
        text += (f" While no run has collapsed, the rule also answers for the runs that did not collapse (a "
                 f"verdict \"… if no collapse\"), by {arm.kept.citation} on them: {arm.kept.assumption}; that "
                 f"verdict names the collapse rates it cannot rule out. A run is treated as a collapse when a "
                 f"normal distribution fitted to the runs kept would put it that far below them with a "
                 f"probability whose sum over a scan is 1 in {1 / FALSE_FLAGS:,.0f} (Rosner's generalized ESD "
                 f"test on the first {FIRST} runs, a prediction-interval t-test on each later one); once one "
                 f"has, the answer for the "
                 f"runs that did not collapse is withheld and the rule trains on for the mean of all runs.")
    return text


def simulate_until_width(x, half_width: float, **kw) -> UntilWidth:
    """UntilWidth run on every row of `x` (studies × seeds, in seed order) until it stops or the row ends:
    the rule's behaviour by simulation (seeds used: `.arm.n`), for tests, benchmarks and planning."""
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
        used_a, used_b = rule.a.n + rule.a.all.diverged, rule.b.n + rule.b.all.diverged
        undecided = rule.verdict == ""
        go_a = undecided & (used_a < cap_a) & ((rule.needs() == "A") | (used_b >= cap_b))
        go_b = undecided & (used_b < cap_b) & ~go_a
        if not (go_a | go_b).any():
            return rule
        rule.add("A", xa[rows, np.minimum(used_a, cap_a - 1)], where=go_a)
        rule.add("B", xb[rows, np.minimum(used_b, cap_b - 1)], where=go_b)
