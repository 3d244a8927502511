"""A scan's job whose training returns at once: what is left of a scan is its orchestration (claims,
commits of 10 kB of predictions with fsync, the bar, the pool parent's and the Ray driver's reads).
bench/test_orchestration_bench.py times it; `install()` makes it the job of every process a scan starts
(pool children, Ray actors), through a sitecustomize module on their PYTHONPATH.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

TEST_IMAGES = 10_000  # CIFAR-10's test set: a record's predictions are 10 kB


class InstantJob:
    """What the workers need of a CIFAR job (fastseed.jobs.CifarJob), with records made up at once."""

    together, long_seeds, stops_mid_seed, on_stop = True, False, False, "finishing the seeds in flight"

    def __init__(self, protocol, options, log=print):
        import torch
        self.protocol, self.options = protocol, options
        self.device = torch.device("cpu")
        self.k = int(options.pack) if options.pack != "auto" else 32

    def read(self):
        return None

    def load(self, data=None):
        return np.zeros(TEST_IMAGES, dtype=np.uint8)

    def pack_size(self, remaining: int, log) -> int:
        return min(self.k, max(1, remaining))

    def worker_bytes(self) -> int:
        return 0  # no data set, no training step: a worker is its runtime alone

    def describe(self, pack: int) -> str:
        return f"instant stand-in, pack {pack}"

    def train(self, seeds, commit, stop_flag, on_progress=None):
        digest = self.protocol.hash  # once a pack, as the engine does
        for seed in seeds:
            if on_progress is not None:
                on_progress(1, 1)
            commit(record(self.protocol, seed, digest))


def record(protocol, seed: int, digest: str | None = None):
    """A picard-short-shaped record: 22 epochs of curves, 6 evaluations, 10,000 predictions; its
    provenance's finished_at to the microsecond (the benchmark's clock)."""
    from fastseed.store.record import Record
    acc = 0.9 + 0.001 * (seed % 7)
    now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return Record(protocol=protocol.name, protocol_hash=digest or protocol.hash, seed=int(seed), status="ok",
                  test_acc=acc,
                  test_loss=0.3, headline_epoch=21, eval_curve=[[e, acc, 0.3] for e in (0, 1, 6, 11, 16, 21)],
                  train_curve=[[e, 0.5, 0.8] for e in range(22)], predictions=bytes(TEST_IMAGES), wall_time_s=0.0,
                  pack={"strategy": "fused", "size": 32, "slot": 0, "seeds": [int(seed)]},
                  provenance={"fastseed": "bench", "started_at": now, "finished_at": now})


def make_job(protocol, options, log=print):
    return InstantJob(protocol, options, log)


# Patches fastseed.jobs when (and only if) a process imports it: Ray's own Python helpers, which run
# this too, must not pay for importing torch.
SITECUSTOMIZE = """
import importlib.abc, importlib.util, sys


class InstantJobs(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "fastseed.jobs":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            sys.path.insert(0, {here!r})
            import instant_job
            module.make_job = instant_job.make_job

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, InstantJobs())
"""


def install(folder: Path) -> str:
    """Write a sitecustomize into `folder` that makes every Python process started with `folder` on its
    PYTHONPATH build InstantJobs; returns the PYTHONPATH to give them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(here=str(Path(__file__).parent)))
    return os.pathsep.join(filter(None, [str(folder), str(Path(__file__).resolve().parents[1]),
                                         os.environ.get("PYTHONPATH")]))
