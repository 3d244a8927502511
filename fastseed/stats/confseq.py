"""Confidence sequences for a mean accuracy: intervals valid at every number of seeds at once.

A scan that looks at its interval after every seed and stops when it is narrow enough needs a
*confidence sequence* (CS): P(the mean ever leaves the interval, at any n) ≤ α. A t-interval recomputed
after each seed is not one: by the law of the iterated logarithm it leaves the mean with probability → 1
as the looks go on (tests/stats/test_confseq.py shows it failing within 1,500 looks).

Two methods, one question each about the data:
  normal   `NormalCS`, the t-mixture: exact if seed accuracies are i.i.d. normal, mean and spread
           unknown. Stops at about twice a fixed-n t-interval's seeds (±0.1 pp at Picard's spread:
           ~45 seeds against the t-interval's 23, which is valid at one look only). The default.
  bounded  `BoundedCS`, empirical Bernstein: needs nothing but accuracies in [0, 100]; a rare collapsed
           run cannot fool it, and for that very reason it needs thousands of seeds (~2,150 for ±0.1 pp).
Which holds is a property of the recipe: Picard's 10^4-seed histograms are close to normal (a mild left
tail), and diverged runs (NaN) are left out before either method sees them; a recipe whose runs
sometimes collapse to a low but finite accuracy is not normal, and there only `bounded` keeps its promise
(the tests measure both cases). The stopping rules (sequential.py) therefore run the t-mixture on the runs
that did not collapse (collapses.py) and `bounded` on all of them, and say which answer is which.

Seed order: a CS is valid for any order of the seeds fixed independently of their accuracies. Feed
accuracies in seed order — the longest committed prefix of the scan's seed list — not in commit order:
with several workers, commit order follows run time, and run time can depend on the run (a diverged
run stops early). Objects hold no state worth saving: after a restart, a fresh object fed the stored
accuracies in seed order reaches the same numbers (same values, same order, same arithmetic).

Everything is vectorised over independent studies (`shape`), so tests and benchmarks run hundreds of
simulated scans at once through the same code the scan calls for one. The reported bounds are the
running intersection of the intervals so far (valid: a miss at any n is in the same event), also
clipped to the accuracies' bounds, which hold the mean.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from fastseed import FastseedError

ALPHA = 0.05


def check_number(value, what: str, least: float, strict: bool) -> float:
    """`value` as a finite float above `least` (or at least `least`), else one clear error."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = np.nan
    if not (np.isfinite(x) and (x > least if strict else x >= least)):
        raise FastseedError(f"{what} must be a number {'>' if strict else '≥'} {least:g}, got {value!r}")
    return x


def _check_bounds(bounds) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise FastseedError(f"bounds must be two numbers (lowest, highest accuracy), got {bounds!r}")
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise FastseedError(f"bounds must be finite with lowest < highest, got {bounds!r}")
    return lo, hi


def check_alpha(alpha) -> float:
    if not check_number(alpha, "alpha", 0, strict=True) < 1:
        raise FastseedError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


class ConfidenceSequence(ABC):
    """Anytime-valid (1 − α) interval for the mean of i.i.d. values in `bounds`, after every value.

    `shape` holds that many independent streams (a study each); `add(x, where)` adds one value to the
    streams where `where` is true. A NaN is a diverged run: counted in `diverged`, left out of the mean.
    `lower`, `upper`, `mean`, `n` (values taken), `diverged` have that shape. A method subclasses it
    with `_update(x, take)` (x: NaN-free values, take: where they count) and its words for the stop
    message (`label`) and the report (`citation`, `assumption`)."""
    method = label = citation = assumption = ""

    def __init__(self, bounds=(0.0, 100.0), alpha: float = ALPHA, shape=()):
        self.bounds = _check_bounds(bounds)
        self.alpha = check_alpha(alpha)
        self.shape = np.broadcast_shapes(shape)
        self.n = np.zeros(self.shape, dtype=np.int64)
        self.diverged = np.zeros(self.shape, dtype=np.int64)
        self._sum = np.zeros(self.shape)
        self._lower, self._upper = np.full(self.shape, self.bounds[0]), np.full(self.shape, self.bounds[1])

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
        self._update(np.where(take, x, lo), take)

    @abstractmethod
    def _update(self, x, take) -> None:
        """Take the values `x` where `take` is true into the running sums and narrow the interval."""

    def _narrow(self, lower, upper) -> None:
        """Intersect the interval so far with [lower, upper] (running intersection)."""
        np.maximum(self._lower, lower, out=self._lower)
        np.minimum(self._upper, upper, out=self._upper)

    @property
    def mean(self):
        return np.where(self.n > 0, self._sum, np.nan) / np.maximum(self.n, 1)

    @property
    def lower(self):
        return self._lower.copy()

    @property
    def upper(self):
        return self._upper.copy()

    @property
    def half_width(self):
        """Half the interval's width (0 if the bounds crossed: a miss, or values drifting over time)."""
        return np.maximum(self.upper - self.lower, 0) / 2


PRIOR_PRECISION = 5.0  # c²: the mixture's prior on the effect δ = (μ − m)/σ is N(0, 1/c²); see NormalCS


class NormalCS(ConfidenceSequence):
    """The t-mixture CS: exact at every n at once for i.i.d. N(μ, σ²) values, μ and σ unknown.

    The construction is Lai's (T. L. Lai, "On confidence sequences", Ann. Statist. 4(2):265–280, 1976):
    a mixture of likelihood ratios of the scale-invariant part of the data, so the unknown σ drops out.
    Lai mixed over the effect with a flat (improper) prior, which gives a non-integrable martingale and
    needs an extended Ville inequality; H. Wang & A. Ramdas ("Anytime-valid t-tests and confidence
    sequences for Gaussian means with unknown variance", arXiv:2310.03722, 2023) replace it with a
    Gaussian mixture, which is a test martingale in the reduced (scale-invariant) filtration. That is the
    one here, derived in full (the tests check the closed form against numerical integration):

    For a candidate mean m let Y_i = X_i − m, S_n = Σ Y_i, V_n = Σ Y_i².
    1. Scale invariance. Multiplying every Y_i by the same k > 0 changes σ but not whether m = μ. The
       ratios U_n = (Y_1, …, Y_n)/|Y_1| are invariant; under m = μ their law does not depend on σ, and
       U_{n−1} is a function of U_n (a filtration). Under the alternative N(m + δσ, σ²) (δ: the effect in
       standard deviations), the likelihood ratio of U_n to the null is an integral over the scale group
       with its Haar measure dσ/σ (Wijsman 1967, Proc. 5th Berkeley Symp. 1:389–400; φ_σ: N(0, σ²) density):
           L_n(δ) = ∫ Π φ_σ(Y_i − δσ) dσ/σ  /  ∫ Π φ_σ(Y_i) dσ/σ.
       A likelihood ratio of nested observations is a nonnegative martingale of mean 1 under the null.
    2. Mix over δ ~ N(0, 1/c²): by Fubini still a martingale of mean 1. Both integrals are closed form,
           ∫ exp(δS/σ − nδ²/2) N(δ; 0, 1/c²) dδ = sqrt(c²/(n + c²)) · exp(S²/(2σ²(n + c²))),
           ∫_0^∞ σ^(−n−1) exp(−A/(2σ²)) dσ = Γ(n/2) 2^(n/2 − 1) A^(−n/2),
       and the common factors cancel:
           G_n(m) = sqrt(c²/(n + c²)) · (1 − S_n²/((n + c²) V_n))^(−n/2).
    3. Ville's inequality: P(∃n: G_n(μ) ≥ 1/α) ≤ α, so {m : G_n(m) < 1/α} is a (1 − α) CS, two-sided
       (the prior is symmetric). With d = X̄_n − m and Q_n = Σ (X_i − X̄_n)², S_n = n·d and
       V_n = Q_n + n·d², and the condition is quadratic in d:
           G_n(m) < 1/α  ⟺  n d² (β_n − c²/(n + c²)) < (1 − β_n) Q_n,   β_n = (α² c²/(n + c²))^(1/n),
       so the CS is X̄_n ± sqrt(Q_n/n · (1 − β_n)/(β_n − c²/(n + c²))) when β_n > c²/(n + c²), and every m
       otherwise: always at n = 1 (one value says nothing of the spread), and with c² = 5 up to n = 7 at
       α = 5 % (n = 8 at 2.5 %, each side of a `Versus`) — the price of valid looks at tiny n. In
       t-statistic terms (t_n = √n·d/s_n, s_n² = Q_n/(n − 1)) the CS is
           |t_n| < sqrt((n − 1)(1 − β_n)/(β_n − c²/(n + c²))),
       a critical value that falls from 10.8 at n = 8 to 3.14 at n ≈ 80 (the fixed-n one: 1.99), then
       grows like sqrt(log(n/c²) + 2 log(1/α)): 3.4 at 1,000 seeds, 3.6 at 5,000.
    The guarantee is about the whole sequence, so it holds at whatever seed the scan stops, however the
    stop was chosen; it is exact (not asymptotic) under the model.

    c² (PRIOR_PRECISION = 5) decides where the interval is tightest: the width at n is smallest near
    c² ≈ n/9, and c² = 5 aims at ~50 seeds, the budgets this serves; its width is within 4 % of the best
    c²'s at 20 seeds and 16 % at 3,000 (a choice fixed before the data, as validity needs).

    The model is the assumption: normal seed accuracies. Measured over 1,500 looks (2,000 studies):
    skew-normal accuracies with skewness −0.45 miss in 4 % of studies, −0.78 in 5 %, −0.93 in 6 %;
    Student-t tails (3–10 degrees of freedom) stay under 4 %; but runs that collapse to 10 % with
    probability 0.1–2 % make it miss in 86–95 % of them (the interval settles on the other runs' mean
    before a collapse shows up). `BoundedCS` holds there; the stopping rules give this one the runs that
    did not collapse (collapses.py) and say so."""
    method = "normal"
    label = "t-mixture, assumes normal accuracies"
    citation = ("the t-mixture confidence sequence (Lai 1976, Ann. Statist. 4:265–280, with the Gaussian "
                "mixture of Wang & Ramdas 2023, arXiv:2310.03722)")
    assumption = ("it is exact if the accuracies are independent draws from one normal distribution, mean "
                  "and spread unknown (Picard's 10^4-seed histograms are close to normal; skewed or heavy-tailed "
                  "accuracies were measured to stay within its nominal rate), not if some runs collapse to a low "
                  "but finite accuracy, which a normal distribution does not produce")

    def __init__(self, bounds=(0.0, 100.0), alpha: float = ALPHA, shape=()):
        super().__init__(bounds, alpha, shape)
        self._q = np.zeros(self.shape)                         # Q_n = Σ (X_i − X̄_n)², by Welford

    def _update(self, x, take) -> None:
        before = self.mean
        self.n += take
        self._sum += np.where(take, x, 0.0)
        self._q += np.where(take & (self.n > 1), (x - before) * (x - self.mean), 0.0)
        n, c2 = np.maximum(self.n, 1).astype(float), PRIOR_PRECISION
        log_beta = (2 * np.log(self.alpha) + np.log(c2 / (n + c2))) / n
        room = np.exp(log_beta) - c2 / (n + c2)                # > 0: the interval is finite
        finite = take & (room > 0)
        r2 = np.maximum(self._q, 0) / n * -np.expm1(log_beta) / np.where(finite, room, 1.0)
        r = np.where(finite, np.sqrt(r2), np.inf)
        self._narrow(np.where(take, self.mean - r, -np.inf), np.where(take, self.mean + r, np.inf))


CAP = 0.9            # c: the largest bet, as a fraction of the room between the running mean and a bound
PRIOR_SPREAD = 0.1   # σ̂² starts from one pseudo-observation of variance (PRIOR_SPREAD · range)²
FLOOR = 1e-3         # the least room, as a fraction of the range (a running mean sitting on a bound)


def _psi(lam):
    return -np.log1p(-lam) - lam


class BoundedCS(ConfidenceSequence):
    """A variant of the predictable-plug-in empirical-Bernstein CS ("PrPl-EB") of I. Waudby-Smith & A. Ramdas,
    "Estimating means of bounded random variables by betting", J. R. Stat. Soc. B 86(1):1–27, 2024
    (arXiv:2010.09686), Theorem 2: valid for any distribution on `bounds` — no normality: a skewed or
    two-point distribution, or a rare collapsed run, keeps its guarantee. Its supermartingale, for the
    lower bound at a candidate mean m, with bets λ_i ∈ [0, 1) and a centre μ̂_{i-1} fixed before seed i:

        M_t(m) = Π_{i≤t} exp( λ_i (Y_i − m)/s_i − ψ(λ_i) ξ_i² ),   ξ_i = (Y_i − μ̂_{i-1})/s_i,
        ψ(λ) = −log(1 − λ) − λ,

    and the lower bound is where log M_t(m) crosses log(2/α); it is linear in m, so the bound is closed
    form (`_bet`). Why it holds: Fan, Grama & Liu (2015, Electron. J. Probab. 20, Lemma 4.1) give
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
    None of these choices can break validity (any predictable bets, centres and scales are allowed); they
    only decide how fast the interval narrows.

    Why thousands of seeds, whatever the method: a CS valid for every distribution on [0, 100] cannot rule
    out rare collapsed runs. Mix the data's distribution P with a point at 0 of weight p = d/μ: the mean
    drops by d, and the first n draws look like P with probability (1 − p)^n. A CS valid under the mixture
    can have its lower end above μ − d at seed n with probability β under P only if (1 − p)^n β ≤ α, so
    n ≥ log(β/α)·μ/d: in the median study (β = 1/2) ~1,200 seeds before the lower end is within 0.17 pp
    of a 90 % mean. This CS gets there at ~2,150 seeds (its upper end then 0.03 pp above the mean: the
    interval is lopsided, as it must be), stopping `UntilWidth(0.1)`; `NormalCS` at ~45, by assuming
    the collapse away.

    Both bounds are computed as lower bounds, stacked on a leading axis of 2: the lower bound of X, and
    the lower bound of −X (minus the upper bound). Per side it keeps Σγ_i, Σγ_i·Y_i and Σψ(λ_i)ξ_i²
    (γ_i = λ_i/s_i), so log M_t(m) = ΣγY − m·Σγ − Σψξ², which crosses log(2/α) at the bound."""
    method = "bounded"
    label = "empirical-Bernstein, assumes only accuracies within their bounds"
    citation = ("a variant of the predictable-plug-in empirical-Bernstein confidence sequence of Waudby-Smith & "
                "Ramdas (2024, J. R. Stat. Soc. B 86:1–27, Theorem 2; arXiv:2010.09686): each bound scaled to the "
                "room between the running mean and the accuracy bound it guards, the values clipped to that room, "
                "bets capped at 0.9")

    def __init__(self, bounds=(0.0, 100.0), alpha: float = ALPHA, shape=()):
        super().__init__(bounds, alpha, shape)
        lo, hi = self.bounds
        self._dev2 = np.zeros(self.shape)
        sides = (2,) + (1,) * len(self.shape)
        self._guard = np.array([lo, -hi]).reshape(sides)       # the bound each side must stay above
        self._sign = np.array([1.0, -1.0]).reshape(sides)
        self._log_level = np.log(2 / self.alpha)               # α/2 a side
        self._gamma, self._gamma_y, self._penalty = (np.zeros((2,) + self.shape) for _ in range(3))

    @property
    def assumption(self) -> str:
        lo, hi = self.bounds
        return (f"scaled to the room between the running mean and [{lo:g}, {hi:g}], it holds for any "
                f"distribution of accuracies in [{lo:g}, {hi:g}] (no normality assumed); it reaches further "
                f"below a mean than above it when the mean is near the top of the range: a rare collapsed "
                f"run could pull the mean down, and only many seeds rule that out")

    def _update(self, x, take) -> None:
        lo, hi = self.bounds
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
        bound = np.where(self._gamma > 0, bound, -np.inf)
        self._narrow(bound[0], -bound[1])
