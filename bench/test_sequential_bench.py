"""Seeds a stopping rule uses: simulated scans at Picard's spread (90.02 ± 0.23 %, CIFAR-10 short runs),
for both methods: "normal" (the t-mixture, the default) and "bounded" (empirical Bernstein).

    python -m pytest bench/test_sequential_bench.py --benchmark-json=out.json

The numbers are in each benchmark's extra_info (mean, median and 90th percentile of the seeds used, how
often each verdict came), beside what a fixed-n design would need — a t-interval of the asked width, or
a two-sample Welch t-test with 80 % power at the true difference — which assumes normal accuracies and
one look, so it is a reference, not a competitor. `test_seeds_when_runs_collapse` plays issue 20's cases:
A's runs that do not collapse 0.3 pp above B's (90 ± 0.25 %), A collapsing to 10 % in 0.5–2 % of its runs.
The time is the simulation's, for the record only. Quick mode (CI, no GPU) simulates 100 studies a case,
full mode 1,000 (README's figures: FASTSEED_SEQUENTIAL_STUDIES=1000 sets it in any mode).
"""

import os


import numpy as np
import pytest
from scipy import stats

from fastseed.stats.compare import seeds_for_power
from fastseed.stats.sequential import VERDICTS, simulate_until_width, simulate_versus

MEAN, STD = 90.02, 0.23
SEEDS = {"normal": 600, "bounded": 4000}  # seeds simulated per study: enough for (nearly) every one to stop


def studies_of(quick: bool) -> int:
    return int(os.environ.get("FASTSEED_SEQUENTIAL_STUDIES", 100 if quick else 1000))


def rates(verdict) -> dict:
    return {f"rate_{v or 'undecided'}": float((verdict == v).mean()) for v in VERDICTS}


def draw(rng, mean, shape):
    return np.clip(rng.normal(mean, STD, shape), 0, 100)


def seeds_used(n) -> dict:
    n = np.asarray(n)
    return {"mean_seeds": float(n.mean()), "median_seeds": float(np.median(n)),
            "p90_seeds": float(np.quantile(n, 0.9))}


def t_interval_seeds(half_width: float) -> int:
    """Seeds at which a fixed-n 95 % t-interval at Picard's spread is ±half_width (normality, one look)."""
    n = 2
    while stats.t.ppf(0.975, n - 1) * STD / np.sqrt(n) > half_width:
        n += 1
    return n


@pytest.mark.parametrize("method", ["normal", "bounded"])
@pytest.mark.parametrize("half_width", [0.2, 0.1])
def test_seeds_until_the_interval_is_narrow(benchmark, quick, half_width, method):
    studies = studies_of(quick)
    x = draw(np.random.default_rng(0), MEAN, (studies, SEEDS[method]))
    rule = benchmark.pedantic(simulate_until_width, args=(x, half_width), kwargs={"method": method},
                              rounds=1, iterations=1)
    assert rule.stopped.all()
    cs = rule.arm.all if rule.arm.kept is None else rule.arm.kept   # the interval the verdict read
    benchmark.extra_info.update(method=method, studies=studies, half_width_pp=half_width,
                                **seeds_used(rule.arm.n), **rates(rule.verdict),
                                covered=float(np.mean((cs.lower <= MEAN) & (MEAN <= cs.upper))),
                                t_interval_seeds=t_interval_seeds(half_width))


@pytest.mark.parametrize("method", ["normal", "bounded"])
@pytest.mark.parametrize("difference, margin", [(0.3, 0.1), (0.0, 0.5)])
def test_seeds_until_two_recipes_are_told_apart(benchmark, quick, difference, margin, method):
    studies = studies_of(quick)
    rng = np.random.default_rng(1)
    cap = SEEDS[method] * 3 // 4
    xa, xb = draw(rng, MEAN + difference, (studies, cap)), draw(rng, MEAN, (studies, cap))
    rule = benchmark.pedantic(simulate_versus, args=(xa, xb, margin), kwargs={"method": method},
                              rounds=1, iterations=1)
    verdict = rule.verdict
    fixed = {"welch_80pct_power_seeds": 2 * seeds_for_power(difference, STD, STD)} if difference else {}
    benchmark.extra_info.update(
        method=method, studies=studies, difference_pp=difference, margin_pp=margin,
        **seeds_used(rule.a.n + rule.b.n), seeds_a=float(rule.a.n.mean()), seeds_b=float(rule.b.n.mean()),
        **rates(verdict), **fixed)
    assert (verdict != "").mean() >= 0.9


@pytest.mark.parametrize("rate", [0.005, 0.01, 0.02])
def test_seeds_when_runs_collapse(benchmark, quick, rate):
    studies, cap, healthy = studies_of(quick), 300, 90.0
    rng = np.random.default_rng(2)
    collapse = lambda x: np.where(rng.random(x.shape) < rate, 10.0, x)
    xa = collapse(np.clip(rng.normal(healthy + 0.3, 0.25, (studies, cap)), 0, 100))
    xb = np.clip(rng.normal(healthy, 0.25, (studies, cap)), 0, 100)
    rule = benchmark.pedantic(simulate_versus, args=(xa, xb, 0.1), rounds=1, iterations=1)
    truth = (1 - rate) * (healthy + 0.3) + rate * 10.0 - healthy
    lower, upper = rule.interval()
    benchmark.extra_info.update(
        method="normal", studies=studies, collapse_rate=rate, mean_difference_pp=truth, cap_per_side=cap,
        **seeds_used(rule.a.n + rule.b.n), **rates(rule.verdict),
        covered=float(np.mean((lower <= truth) & (truth <= upper))))
    assert (rule.verdict == "better").mean() <= 0.05
