"""Collapsed runs: seeds whose accuracy lies far below the others (a high-lr recipe that sometimes fails
to ~10 %, chance on CIFAR-10), found as the runs come in, and how often they happen.

Why it matters: a collapse is a finished run, so it counts in the mean, but a normal distribution of
accuracies does not produce it. The t-mixture confidence sequence (confseq.NormalCS) assumes normal
accuracies and settles on the other runs' mean before a rare collapse shows up: with 0.5–2 % of runs
collapsing it misses the mean in most simulated studies. No method can do better from a few dozen seeds:
at a 0.5 % rate, 30 seeds hold no collapse 86 % of the time (confseq.BoundedCS's docstring gives the
information floor). So the stopping rules (sequential.py) answer in two parts, each a confidence sequence
of its own: the runs that did not collapse (the t-mixture on them, while no run has collapsed: fast, and
conditional on collapses staying unseen), and the mean of all runs (`MixtureCS`: the runs that did not
collapse normal, the collapses anything below them, their rate measured by `rate_interval`); the
collapses are named.

What counts as a collapse: a run that a normal distribution fitted to the runs kept so far would put
that far below them with a small probability, the levels summing to FALSE_FLAGS over a whole scan, so a
study of normal accuracies flags a run with probability ≤ FALSE_FLAGS (union bound; tested):
  * the first FIRST finished runs together, by the generalized extreme Studentized deviate test
    (B. Rosner, "Percentage points for a generalized ESD many-outlier procedure", Technometrics
    25(2):165–172, 1983), one-sided (low), up to MOST_AT_FIRST of them: Grubbs's test (F. E. Grubbs,
    "Procedures for detecting outlying observations in samples", Technometrics 11(1):1–21, 1969) applied
    in turn, so two collapses among ten do not mask each other; at level FALSE_FLAGS / 2;
  * every later run i on its own, by the exact prediction-interval t-test against the n runs kept before
    it: (x̄ − x_i) / (s·sqrt(1 + 1/n)) follows Student's t with n − 1 degrees of freedom for a normal
    run (e.g. S. Geisser, Predictive Inference, 1993, §2.1), at level FALSE_FLAGS/2 · FIRST/(i(i − 1)),
    which sums to FALSE_FLAGS/2 over i > FIRST. The fence is then 9.4 standard deviations below the
    kept mean at the 11th run, 5.8 at the 100th, 6.8 at the 10,000th; a collapse to chance accuracy is
    hundreds of them below. FALSE_FLAGS = 1e-4 keeps real histograms' tails in: a skew-normal with
    Picard's mild left skew (−0.45) flags a run in 0.3 % of 1,000-seed studies, 0.15 % by their 100th
    seed (measured; 1e-3 would flag 1.1 % and 0.7 %).
The test only ever looks down: a run far above the others is a lucky seed, not a collapse. A run above the
fence counts as the bulk's tail, however low. Diverged runs (NaN) are neither: they are counted apart.

`MixtureCS` is vectorised over independent studies like the other confidence sequences; `find_collapses`
classifies a whole sequence at once (the report, the stop messages) with the same test and the same result.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from fastseed.stats.confseq import ALPHA, BoundedCS, ConfidenceSequence, NormalCS

FIRST = 10            # the first finished runs, screened together (the t-mixture is infinite until 8 anyway)
MOST_AT_FIRST = 4     # at most this many of the first FIRST runs are collapses (a collapse is rarer than not)
FALSE_FLAGS = 1e-4    # P(a run of normal accuracies is ever flagged), over a whole scan
LEAST_SPREAD = 1e-4   # the least standard deviation, as a fraction of the range (identical accuracies)


def _grubbs_critical(n, level):
    """Grubbs's one-sided critical value of (x̄ − x_min)/s for n normal values at `level` (his Eq. 2)."""
    t = -special.stdtrit(n - 2, level / n)
    return (n - 1) * t / np.sqrt((n - 2 + t * t) * n)


def _first_flags(x, scale_floor):
    """(rows × FIRST) → which values the one-sided generalized ESD flags as collapses (Rosner 1983): remove
    the lowest value MOST_AT_FIRST times in turn; the outliers are the first `found` removed, `found` the
    last step whose Grubbs statistic exceeds its critical value."""
    rows = np.arange(x.shape[0])
    left = np.ones(x.shape, dtype=bool)
    removed = np.zeros((x.shape[0], MOST_AT_FIRST), dtype=np.int64)
    found = np.zeros(x.shape[0], dtype=np.int64)
    for i in range(1, MOST_AT_FIRST + 1):
        n = FIRST - i + 1
        mean = np.where(left, x, 0).sum(axis=1) / n
        sd = np.sqrt(np.where(left, (x - mean[:, None]) ** 2, 0).sum(axis=1) / (n - 1))
        low = np.argmin(np.where(left, x, np.inf), axis=1)
        r = (mean - x[rows, low]) / np.maximum(sd, scale_floor)
        found = np.where(r > _grubbs_critical(n, FALSE_FLAGS / 2), i, found)
        removed[:, i - 1] = low
        left[rows, low] = False
    flags = np.zeros(x.shape, dtype=bool)
    for i in range(MOST_AT_FIRST):
        flags[rows, removed[:, i]] |= i < found
    return flags


def _level(i):
    """The false-flag level of the i-th finished run (i > FIRST): sums to FALSE_FLAGS/2 over all i."""
    return FALSE_FLAGS / 2 * FIRST / (i * (i - 1.0))


def _far_below(x, n, mean, q, level, scale_floor):
    """Whether x is a collapse: below the kept runs (n of them, mean, Σ squared deviations q) by more than
    the prediction-interval t-test allows at `level`."""
    sd = np.maximum(np.sqrt(np.maximum(q, 0) / np.maximum(n - 1, 1)), scale_floor)
    t = np.asarray((mean - x) / (sd * np.sqrt(1 + 1 / np.maximum(n, 1))))
    # Student's quantiles lie beyond the normal's: only runs past the normal's fence need Student's
    far = np.asarray(t > -special.ndtri(np.max(level)))
    if far.any():
        df, level = (np.broadcast_to(v, t.shape) for v in (np.maximum(n - 1, 1), level))
        far[far] = t[far] > -special.stdtrit(df[far], level[far])
    return far


class MixtureCS(ConfidenceSequence):
    """The (1 − α) CS of the mean of all finished runs when the runs that did not collapse are normal (any
    mean, any spread) and the collapses anything below them (any rate, any accuracy): method normal's
    answer for the mean. With h the mean of the runs that do not collapse, p the collapse rate and c the
    mean of a collapsed run, the mean is

        μ = (1 − p)·h + p·c,

    and each part has its own confidence sequence: h the t-mixture of the runs kept (NormalCS, α/2), p
    `rate_interval` (α/4), c the empirical-Bernstein CS of the collapsed runs (BoundedCS, α/4). When all
    three cover — probability ≥ 1 − α at every n at once (a union bound) — μ lies between the least and the
    largest (1 − p)h + pc over the box they span (c ≤ h: a collapse lies below the runs kept), found at its
    corners (it is linear in each part). With no collapse yet, c is only known to lie in [lowest accuracy,
    h], so the lower end sits the rate's upper end times (h − lowest) below h, the upper end at h's. Exact
    when the fence separates collapses from the rest (a collapse to chance accuracy lies hundreds of
    standard deviations below; a partial collapse near the fence is classified by it).

    What it buys over BoundedCS: collapses seen are measured (their rate and accuracy), not guarded against
    blind, so a recipe that collapses in 10 % of its runs is told from one 1.3 pp better in tens of seeds
    instead of thousands. What it cannot buy: with no collapse seen in n runs, rates up to ~(log(4/α) +
    ½ log(πn))/n remain possible, each costing (h − lowest accuracy) of the mean: the information floor
    of BoundedCS's docstring, which no method escapes.

    It also feeds the runs it keeps, in order, to the CSs `also` (the stopping rules' t-mixture at the full
    α, for their answer "if no collapse"). `count`: collapses so far."""
    method = "normal"
    label = "t-mixture on the runs that did not collapse, assumes them normal; collapses of any rate"
    citation = ("(1 − p)·h + p·c over three confidence sequences joined by a union bound: the t-mixture of "
                "the runs that did not collapse (h; Lai 1976, Wang & Ramdas 2023), Robbins's Beta-mixture (1970) "
                "of the collapse rate (p) and the empirical-Bernstein one of the collapsed runs' accuracy (c)")
    assumption = ("it assumes the runs that did not collapse are independent draws from one normal "
                  "distribution and nothing of the collapses (rate or accuracy); with no collapse seen, it "
                  "cannot rule out a rate of a few per n runs, and its lower end stays that far below")

    def __init__(self, bounds=(0.0, 100.0), alpha: float = ALPHA, shape=(), also=()):
        super().__init__(bounds, alpha, shape)
        self.kept = NormalCS(bounds, alpha / 2, shape)
        self.low = BoundedCS(bounds, alpha / 4, shape)
        self.also = tuple(also)
        self._floor = LEAST_SPREAD * (self.bounds[1] - self.bounds[0])
        self.count = np.zeros(self.shape, dtype=np.int64)
        self._rate = np.stack([np.zeros(self.shape), np.ones(self.shape)])  # its (lower, upper) so far
        self._first = np.zeros(self.shape + (FIRST,))

    def _update(self, x, take) -> None:
        early = take & (self.n < FIRST)
        if early.any():
            slot = np.minimum(self.n, FIRST - 1)[..., None]
            np.put_along_axis(self._first, slot, np.where(early, x, 0.0)[..., None], axis=-1)
        self.n += take
        self._sum += np.where(take, x, 0.0)
        if (early & (self.n == FIRST)).any():
            self._screen_first(early & (self.n == FIRST))
        late = take & ~early
        if late.any():
            kept, far = self.kept, np.zeros(self.shape, dtype=bool)
            far[late] = _far_below(x[late], kept.n[late], kept.mean[late], kept._q[late], _level(self.n[late]),
                                   self._floor)
            self._sort(x, late & ~far, far)
        if take.any():  # the rate's interval moves only where a run came
            self._rate[:, take] = rate_interval(self.count[take], self.n[take], self.alpha / 4)
        h = (self.kept.lower, self.kept.upper)  # a collapse lies below the runs kept: c ≤ h
        self._narrow(*mixture_bounds(h, self._rate, (self.low.lower, np.minimum(self.low.upper, h[1]))))

    def _screen_first(self, ready) -> None:
        """The first FIRST runs of the studies `ready`: flag by ESD, then take them in order."""
        flags = np.zeros(self.shape + (FIRST,), dtype=bool)
        flags[ready] = _first_flags(self._first[ready].reshape(-1, FIRST), self._floor)
        for j in range(FIRST):
            self._sort(self._first[..., j], ready & ~flags[..., j], ready & flags[..., j])

    def _sort(self, x, kept, far) -> None:
        """x to the runs kept where `kept`, to the collapses where `far`."""
        for cs in (self.kept, *self.also):
            cs.add(np.where(kept, x, self.bounds[0]), kept)
        self.low.add(np.where(far, x, self.bounds[0]), far)
        self.count += far


def mixture_bounds(h, p, c):
    """(lower, upper) of (1 − p)·h + p·c over h, p, c in their (lower, upper) intervals (arrays)."""
    (h_lo, h_hi), (p_lo, p_hi), (c_lo, c_hi) = h, p, c
    at = lambda rate, mean, low: (1 - rate) * mean + rate * low
    return (np.minimum(at(p_lo, h_lo, c_lo), at(p_hi, h_lo, c_lo)),
            np.maximum(at(p_lo, h_hi, c_hi), at(p_hi, h_hi, c_hi)))


def find_collapses(x, bounds=(0.0, 100.0)) -> np.ndarray:
    """Which of the accuracies `x` (in the order they came: seed order; NaN: diverged, never a collapse)
    `Collapses` flags, computed at once: the kept runs' running sums between two collapses are cumulative
    sums, so a scan of 10^5 seeds costs one pass per collapse instead of one step per seed."""
    x = np.asarray(x, dtype=float)
    floor = LEAST_SPREAD * (bounds[1] - bounds[0])
    at = np.flatnonzero(~np.isnan(x))                           # finished runs, in order
    v = x[at]
    flags = np.zeros(len(v), dtype=bool)
    if len(v) >= FIRST:
        flags[:FIRST] = _first_flags(v[None, :FIRST], floor)[0]
    start = FIRST
    while start < len(v):
        kept = np.flatnonzero(~flags[:start])
        shift = v[kept[0]]                                       # sums of x − shift: no cancellation
        n0, s0 = len(kept), (v[kept] - shift).sum()
        q0 = ((v[kept] - v[kept].mean()) ** 2).sum()
        rest = v[start:] - shift
        n = n0 + np.arange(len(rest))                            # kept before run start + j, none flagged since
        s = s0 + np.concatenate([[0.0], np.cumsum(rest)[:-1]])
        ss = q0 + s0 * s0 / n0 + np.concatenate([[0.0], np.cumsum(rest * rest)[:-1]])
        far = _far_below(rest, n, s / n, ss - s * s / n, _level(start + 1 + np.arange(len(rest))), floor)
        if not far.any():
            break
        start += int(np.argmax(far))
        flags[start] = True
        start += 1
    out = np.zeros(len(x), dtype=bool)
    out[at] = flags
    return out


JEFFREYS = 0.5  # the mixture's Beta(a, a) prior on the rate
NEWTON = 60     # Newton steps at most for each end of the rate's interval (from its start, ~10 reach 1e-12)


def rate_interval(k, n, alpha: float = ALPHA):
    """A (1 − α) confidence sequence for a rate: k collapses in n runs, valid at every n at once (arrays).

    Robbins's method of mixtures (H. Robbins, "Statistical methods related to the law of the iterated
    logarithm", Ann. Math. Statist. 41(5):1397–1409, 1970; Lai 1976, §2): the likelihood ratio of the
    indicators under a rate q to that under p, mixed over q ~ Beta(½, ½) (Jeffreys), is a nonnegative
    martingale of mean 1 under p, M_n(p) = B(k + ½, n − k + ½) / B(½, ½) / (p^k (1 − p)^(n − k)); by Ville's
    inequality {p : M_n(p) < 1/α} misses the true rate at any n with probability ≤ α. In log-odds θ the
    condition is g(θ) = kθ − n·log(1 + e^θ) − log(α·B(k + ½, n − k + ½)/B(½, ½)) > 0, g concave with its
    top at θ = logit(k/n): one interval, each end found by Newton's method from outside it, where g < 0
    (a concave function's Newton steps from there never cross the root: the ends are never too narrow).
    With k = 0 it is [0, 1 − (α·B(½, n + ½)/B(½, ½))^(1/n)], about (log(1/α) + ½ log(πn))/n: 12 % at 45."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(n, dtype=float))
    level = np.log(alpha) + special.betaln(k + JEFFREYS, n - k + JEFFREYS) - special.betaln(JEFFREYS, JEFFREYS)
    safe = np.maximum(n, 1)
    lower = np.where(k == n, np.exp(level / safe), 0.0)          # no collapse, or only collapses:
    upper = np.where(k == 0, -np.expm1(level / safe), 1.0)       # closed form
    lower, upper = np.where(n == 0, 0.0, lower), np.where(n == 0, 1.0, upper)
    inner = (k > 0) & (k < n)                                    # the rest: Newton, where needed only
    if inner.any():
        k, n, level = k[inner], n[inner], level[inner]
        top = special.logit(k / n)
        for theta, out in ((np.minimum(top, level / k) - 1, lower),        # g < 0 left of the top
                           (np.maximum(top, -level / (n - k)) + 1, upper)):  # and right of it
            for _ in range(NEWTON):
                step = (k * theta - n * np.logaddexp(0, theta) - level) / (k - n * special.expit(theta))
                theta = theta - step
                if np.abs(step).max() < 1e-12:
                    break
            out[inner] = special.expit(theta)
    return lower, upper
