"""The full report of a 10^4-seed store (issue #4 asks for under 15 s on a 2-core CPU).

    python -m pytest bench/test_report_bench.py

The store is synthetic (fastseed.stats.synthetic): Picard-short's shape, 22-epoch curves, 10,000
predictions per run, a few diverged seeds. Building it is not timed; reading it is, as the user's
command reads it.
"""

import os

import pytest

from fastseed.report import main
from fastseed.stats.synthetic import synthetic_store

N_SEEDS = 10_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("bench") / "picard-like.sqlite", N_SEEDS, diverged=5)


def test_report_of_ten_thousand_seeds(benchmark, store, tmp_path):
    out = tmp_path / "report"
    code = benchmark.pedantic(main, args=([str(store), "--out", str(out)],), rounds=1, iterations=1)
    assert code == 0 and (out / "report.html").exists()
    benchmark.extra_info.update(seeds=N_SEEDS, cpus=os.cpu_count(),
                                html_mb=round((out / "report.html").stat().st_size / 2 ** 20, 2))
