"""The full report of a big store: 10^4 seeds in quick mode (CI), 10^5 with --full or
FASTSEED_REPORT_SEEDS=100000 (issue #14: Picard's wish, ≤ 30 s and ≤ 4 GB peak on a 2-core CPU).

    python -m pytest bench/test_report_bench.py
    FASTSEED_REPORT_SEEDS=100000 python -m pytest bench/test_report_bench.py -s

The store is synthetic (fastseed.stats.synthetic): Picard-short's shape, 22-epoch curves, 10,000
predictions per run, a few diverged seeds. Building it is not timed. The report runs as the user
runs it, `python -m fastseed.report` in a process of its own (imports included), so its peak memory
— the child's ru_maxrss, from os.wait4 — is the command's, not that of pytest or of the build. Its
CPU time is recorded too: on a shared machine the wall time is the CPU time plus the wait for a core.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastseed.stats.synthetic import synthetic_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def n_seeds(quick) -> int:
    return int(os.environ.get("FASTSEED_REPORT_SEEDS") or (10_000 if quick else 100_000))


@pytest.fixture(scope="module")
def store(tmp_path_factory, n_seeds):
    return synthetic_store(tmp_path_factory.mktemp("bench") / "picard-like.sqlite", n_seeds, diverged=5)


def report_process(store: Path, out: Path) -> tuple[int, float, float]:
    """Exit code, peak resident memory (MiB) and CPU seconds of `python -m fastseed.report STORE
    --out OUT`."""
    with open(out.with_suffix(".log"), "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "fastseed.report", str(store), "--out", str(out)],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return child.returncode, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # Linux: KiB


@pytest.mark.slow
def test_report_of_many_seeds(benchmark, store, n_seeds, tmp_path):
    out = tmp_path / "report"
    code, peak_mib, cpu_s = benchmark.pedantic(report_process, args=(store, out), rounds=1, iterations=1)
    assert code == 0, out.with_suffix(".log").read_text()
    assert (out / "report.html").exists() and (out / "images.csv").exists()
    benchmark.extra_info.update(seeds=n_seeds, cpus=os.cpu_count(), peak_rss_mib=round(peak_mib),
                                cpu_s=round(cpu_s, 1),
                                store_mb=round(store.stat().st_size / 2 ** 20),
                                html_mb=round((out / "report.html").stat().st_size / 2 ** 20, 2))
