"""Black swans: the best and worst seeds, and what searching over n seeds buys.

The expected best of n seeds comes from the observed runs exactly, with no Monte Carlo noise: among N
runs sorted ascending, the best of a random n-subset (n of these very seeds, drawn without
replacement) is the i-th smallest with probability C(i−1, n−1) / C(N, n). So E[best of n] = Σ w_i x_(i)
is the mean over all C(N, n) subsets; at n = 1 it is the sample mean, at n = N the observed max. This
U-statistic is the unbiased estimator of Tang et al. 2020 ("Showing Your Work Doesn't Always Work",
ACL, §3). The estimator of Dodge et al. 2019 ("Show Your Work", EMNLP, §3.1) plugs the empirical CDF
into P(max of n ≤ v) = P(V ≤ v)^n, i.e. draws the n seeds *with replacement*: it is biased low (at
n = N it is below the observed max, which is the unbiased estimate of E[max of N]). Both are in the
table; `estimator_bias` shows the bias on normal samples whose true E[max] is known. The normal-theory
curve beside them is μ + σ·E[max of n standard normals], integrated numerically.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats


def extremes(seeds, acc, k: int = 5) -> pd.DataFrame:
    """The k best and k worst runs (finite `acc` only): z-score, the one-tail normal probability of such a
    z for one seed chosen in advance (`normal_tail`), and the chance that the rank-th most extreme of all N
    seeds is at least that extreme (`tail_of_n`, see `tail_of_n`): the best of 10^4 normal seeds always
    looks like a 1-in-10^4 event by the first, and is unremarkable by the second."""
    seeds, acc = np.asarray(seeds), np.asarray(acc, dtype=float)
    keep = np.isfinite(acc)
    seeds, acc = seeds[keep], acc[keep]
    k = min(k, max(1, len(acc) // 2))  # best and worst lists do not overlap
    mean, std = acc.mean() if len(acc) else np.nan, acc.std(ddof=1) if len(acc) > 1 else np.nan
    order = np.argsort(acc, kind="stable")
    rows = []
    for side, picked in (("best", order[::-1][:k]), ("worst", order[:k])):
        for rank, i in enumerate(picked, 1):
            z = (acc[i] - mean) / std if std > 0 else np.nan
            tails = (stats.norm.sf(abs(z)), float(tail_of_n(z, len(acc), rank))) if np.isfinite(z) else (np.nan,) * 2
            rows.append({"side": side, "rank": rank, "seed": int(seeds[i]), "acc": acc[i], "z": z,
                         "normal_tail": tails[0], "tail_of_n": tails[1]})
    return pd.DataFrame(rows, columns=["side", "rank", "seed", "acc", "z", "normal_tail", "tail_of_n"])


def tail_of_n(z, n: int, rank=1):
    """P(at least `rank` of n normal seeds lie |z| or more standard deviations out on one side), z being a
    seed's deviation from the mean in sample standard deviations of the same n seeds (arrays).

    One seed chosen in advance: its internally studentized residual r = z gives t = r·sqrt(n(n − 2) /
    ((n − 1)² − n r²)), exactly Student's t with n − 2 degrees of freedom under normality (the statistic
    of Grubbs's test: F. E. Grubbs, Technometrics 11(1):1–21, 1969, Eq. 2; |r| ≤ (n − 1)/√n), so the mean
    and spread estimated from the seeds themselves are accounted for. Looking at all n: the chance that at
    least `rank` of them are that far out, P(Binomial(n, p₁) ≥ rank) — for the most extreme, 1 − (1 − p₁)^n
    (Z. Šidák, J. Am. Stat. Assoc. 62:626–633, 1967), which is Grubbs's test's p-value to first order
    (n·p₁). It is below 0.05 in 5 % of studies of normal seeds for the most extreme, at n = 10 as at 10^4
    (tested); for rank > 1 the residuals' dependence makes it conservative at small n."""
    z, n = np.abs(np.asarray(z, dtype=float)), int(n)
    if n < 3:
        return np.full(z.shape, np.nan)[()]
    room = (n - 1) ** 2 - n * z * z
    t = np.where(room > 0, z * np.sqrt(n * (n - 2) / np.where(room > 0, room, 1.0)), np.inf)
    return stats.binom.sf(np.asarray(rank) - 1, n, stats.t.sf(t, n - 2))[()]


def max_weights(N: int, ns) -> np.ndarray:
    """(len(ns), N): the probability that the i-th smallest of N values is the max of a random
    n-subset, C(i−1, n−1) / C(N, n), in log space so N = 10^5 does not overflow; the log-factorials
    come from one table of N + 2 values, so 200 values of n × 10^5 runs cost gathers, not gammaln."""
    lf = special.gammaln(np.arange(N + 2, dtype=float))  # lf[k] = log (k − 1)!
    ns = np.asarray(ns, dtype=np.int64)
    out = np.zeros((len(ns), N))
    for row, n in zip(out, ns):  # row by row: no (len(ns) × N) temporaries beside the result
        if 1 <= n <= N:  # ranks i = n … N: log C(i − 1, n − 1) − log C(N, n)
            row[n - 1:] = np.exp(np.minimum(lf[n:N + 1] - lf[n] - lf[1:N - n + 2]
                                            - lf[N + 1] + lf[n + 1] + lf[N - n + 1], 0.0))
    return out


def expected_best(x, ns) -> np.ndarray:
    """E[max of a random n-subset of x] for each n in ns (all n <= len(x))."""
    x = np.sort(np.asarray(x, dtype=float))
    return max_weights(len(x), ns) @ x


def dodge_weights(N: int, ns) -> np.ndarray:
    """(len(ns), N): the probability that the i-th smallest of N values is the max of n draws with
    replacement, (i/N)^n − ((i−1)/N)^n (Dodge et al. 2019, §3.1: the empirical CDF to the power n;
    tied values telescope into P̂(V ≤ v)^n − P̂(V < v)^n)."""
    with np.errstate(divide="ignore"):
        log_cdf = np.log(np.arange(N + 1) / max(N, 1))  # −inf at 0: exp gives 0 for n ≥ 1
    ns = np.asarray(ns, dtype=float)
    out = np.empty((len(ns), N))
    for row, n in zip(out, ns):
        power = np.exp(n * log_cdf)
        np.subtract(power[1:], power[:-1], out=row)
    return out


def dodge_expected_best(x, ns) -> np.ndarray:
    """Dodge et al.'s estimate of E[best of n]: the best of n draws with replacement from the runs."""
    x = np.sort(np.asarray(x, dtype=float))
    return dodge_weights(len(x), ns) @ x


def estimator_bias(n_runs: int, ns, replications: int = 4000, rng=None) -> pd.DataFrame:
    """Mean error of both estimators of E[best of n] over `replications` samples of `n_runs`
    standard normals, whose true E[max of n] is normal_expected_max(n); in units of the std."""
    rng = np.random.default_rng(0) if rng is None else rng
    ns = np.asarray(ns, dtype=np.int64)
    samples = np.sort(rng.standard_normal((replications, n_runs)), axis=1)
    unbiased = samples @ max_weights(n_runs, ns).T
    dodge = samples @ dodge_weights(n_runs, ns).T
    truth = normal_expected_max(ns)
    se = lambda e: e.std(axis=0, ddof=1) / np.sqrt(replications)
    return pd.DataFrame({"n": ns, "true": truth, "unbiased_bias": unbiased.mean(axis=0) - truth,
                         "unbiased_se": se(unbiased), "dodge_bias": dodge.mean(axis=0) - truth,
                         "dodge_se": se(dodge)})


def expected_worst(x, ns) -> np.ndarray:
    return -expected_best(-np.asarray(x, dtype=float), ns)


def normal_expected_max(ns) -> np.ndarray:
    """E[max of n iid standard normals] = ∫ x · n φ(x) Φ(x)^(n−1) dx, on a grid fine enough for
    n up to 10^7 (the density of the max narrows like 1/sqrt(2 log n))."""
    x = np.linspace(-12.0, 12.0, 12001)
    n = np.asarray(ns, dtype=float)[:, None]
    density = np.exp(np.log(n) + stats.norm.logpdf(x) + (n - 1) * special.log_ndtr(x))
    return np.trapezoid(x * density, x, axis=1)


def n_grid(N: int, points: int = 200) -> np.ndarray:
    """About `points` values of n from 1 to N, log-spaced (a curve over n = 1 … N)."""
    return np.unique(np.round(np.geomspace(1, N, points)).astype(np.int64)) if N > 0 else np.array([], int)


def decades(N: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … up to N, and N itself: the rows of the best-of-n table."""
    ns = [m * 10 ** e for e in range(12) for m in (1, 2, 5) if m * 10 ** e < N]
    return ns + [N] if N > 0 else []


def best_of_n(x, ns) -> pd.DataFrame:
    """Expected best, worst and spread (best − worst) of n seeds, from the runs (unbiased) and from
    a normal with their mean and std; `gain` is what the best of n adds over one seed (the mean);
    `dodge_best` is Dodge et al.'s with-replacement estimate of the best."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    ns = np.asarray(ns, dtype=np.int64)
    w, ascending = max_weights(len(x), ns), np.sort(x)
    best, worst = w @ ascending, w @ ascending[::-1]  # the worst of n is the best of the negated runs
    mean, std = x.mean(), x.std(ddof=1) if len(x) > 1 else np.nan
    z = normal_expected_max(ns)
    return pd.DataFrame({"n": ns, "best": best, "worst": worst, "spread": best - worst,
                         "gain": best - mean, "dodge_best": dodge_expected_best(x, ns),
                         "normal_best": mean + std * z,
                         "normal_worst": mean - std * z, "normal_spread": 2 * std * z,
                         "normal_gain": std * z})
