"""Everything around training, per seed, with a store that already holds many seeds (issue 19: at the
0.86 s a seed a fast GPU reaches, claim + commit + progress + the parent's and the driver's reads must
stay ≤ 10 ms a seed, ≤ 1 %). The training is a stand-in that returns its records at once
(bench/instant_job.py), so what is timed is the orchestration alone:

    python -m pytest bench/test_orchestration_bench.py                                  # 10^4 seeds stored
    FASTSEED_ORCH_SEEDS=100000 python -m pytest bench/test_orchestration_bench.py -s    # 10^5

- one process (`scan_here`), packs of 1 and of 32;
- a pool of 8 worker processes (`--workers 8`), the parent polling the store every second;
- the Ray driver with 2 actors on a local cluster (slow: Ray's start).

Each record is picard-short's shape (10 kB of predictions, 22-epoch curves), committed with fsync. The
time a seed costs is read from the records' own finish stamps (first to last new seed), so start-up
(opening the store, following its stored prefix once, starting processes) is not counted; with 8
workers, each worker's share is 8 × the pool's time per seed. The stored seeds are written directly
(one transaction), not timed. On a 2-core machine 8 workers share 2 cores: their figure is an upper
bound of what each would cost on a node with a core per worker.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import instant_job  # noqa: E402

from fastseed.jobs import Options  # noqa: E402
from fastseed.recipe.presets import get_preset  # noqa: E402
from fastseed.store import Store  # noqa: E402
from fastseed.store.record import ROW_COLUMNS  # noqa: E402
from fastseed.workers.local import StopFlag, scan_here  # noqa: E402

PROTOCOL = get_preset("picard-short")
NEW = 256  # seeds trained by each measurement


@pytest.fixture(scope="module")
def stored(quick) -> int:
    return int(os.environ.get("FASTSEED_ORCH_SEEDS") or (10_000 if quick else 100_000))


@pytest.fixture(scope="module")
def template(tmp_path_factory, stored) -> Path:
    """A store holding seeds 0 … stored−1, each a full-size record; copied for each measurement."""
    path = tmp_path_factory.mktemp("orchestration") / "template.sqlite"
    with Store(path, PROTOCOL.name, PROTOCOL.hash, PROTOCOL.to_json()) as store:
        store.set_test_labels(np.zeros(instant_job.TEST_IMAGES, dtype=np.uint8))
    conn = sqlite3.connect(path)
    sql = f"INSERT INTO records ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join(':' + c for c in ROW_COLUMNS)})"
    with conn:
        conn.executemany(sql, (instant_job.record(PROTOCOL, s, PROTOCOL.hash).to_row() for s in range(stored)))
    conn.close()
    return path


def store_copy(template: Path, folder: Path) -> Path:
    out = folder / "scan.sqlite"
    out.write_bytes(template.read_bytes())
    return out


def per_seed(out: Path, stored: int) -> float:
    """Seconds per seed between the first and the last new record's finish stamps."""
    with Store.open(out) as store:
        stamps = sorted(datetime.fromisoformat(r.provenance["finished_at"]).timestamp()
                        for r in store.iter_records(blobs=False) if r.seed >= stored)
    assert len(stamps) == NEW, f"{len(stamps)} new records, {NEW} expected"
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def report(benchmark, what: str, stored: int, seconds: float, **extra):
    benchmark.extra_info.update(stored=stored, new=NEW, ms_per_seed=round(1e3 * seconds, 3), **extra)
    print(f"\norchestration, {what}, {stored} seeds stored: {1e3 * seconds:.2f} ms a seed"
          + "".join(f", {k} {v}" for k, v in extra.items()))


@pytest.mark.slow  # a store of 10^4 seeds to build first (tests/workers/test_polling.py is the quick tier's)
@pytest.mark.parametrize("pack", [1, 32])
def test_one_process(benchmark, template, stored, tmp_path, pack):
    out = store_copy(template, tmp_path)
    job = instant_job.InstantJob(PROTOCOL, Options(device="cpu", pack=pack))
    outcome = benchmark.pedantic(scan_here, args=(job, out, 0, stored + NEW),
                                 kwargs=dict(stop_flag=StopFlag(), log=lambda line: None), rounds=1, iterations=1)
    assert outcome.complete and outcome.stored == stored + NEW
    report(benchmark, f"one process, packs of {pack}", stored, per_seed(out, stored))


@pytest.mark.slow
def test_a_pool_of_8_workers(benchmark, template, stored, tmp_path, monkeypatch):
    from fastseed.workers import pool
    from fastseed.workers.pool import scan_pool
    # the cap of CPU workers at one per core is for workers that train; these train nothing, and stand
    # for 8 GPU workers (one per GPU of a node), so 8 start on any machine
    monkeypatch.setattr(pool, "cores", lambda: 8)
    out = store_copy(template, tmp_path)
    monkeypatch.setenv("PYTHONPATH", instant_job.install(tmp_path / "site"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    job = instant_job.InstantJob(PROTOCOL, Options(device="cpu", pack=32))
    cpu0, t0 = time.process_time(), time.perf_counter()
    outcome = benchmark.pedantic(scan_pool, args=(job, out, 0, stored + NEW, ["cpu"] * 8),
                                 kwargs=dict(stop_flag=StopFlag(), log=lambda line: None), rounds=1, iterations=1)
    parent_cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0)
    assert outcome.complete and outcome.failed == 0
    seconds = per_seed(out, stored)
    report(benchmark, "8 worker processes (each worker's share)", stored, 8 * seconds,
           pool_ms_per_seed=round(1e3 * seconds, 3), parent_cpu_share=round(parent_cpu, 3))


@pytest.mark.slow
def test_the_ray_driver(benchmark, template, stored, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from fastseed.workers.ray import scan_ray
    out = store_copy(template, tmp_path)
    monkeypatch.setenv("PYTHONPATH", instant_job.install(tmp_path / "site"))  # before Ray starts its workers
    term = signal.getsignal(signal.SIGTERM)
    if ray.is_initialized():  # a scan run in this process (scan.main --ray, in tests/) keeps its connection
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # as tests/workers/test_ray.py starts it
    signal.signal(signal.SIGTERM, term)
    try:
        job = instant_job.InstantJob(PROTOCOL, Options(device="cpu", pack=32))
        outcome = benchmark.pedantic(scan_ray, args=(job, out, 0, stored + NEW),
                                     kwargs=dict(address="local", device="cpu", workers=2, stop_flag=StopFlag(),
                                                 log=lambda line: None), rounds=1, iterations=1)
    finally:
        ray.shutdown()
    assert outcome.complete
    report(benchmark, "Ray driver, 2 actors", stored, per_seed(out, stored))
