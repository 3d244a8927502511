"""Training throughput per strategy and pack size, and end-to-end seconds per seed.

Quick mode (CPU, CI): the smoke protocol, packs of 1–2, so the suite never rots. Full mode (GPU):
picard-short, packs of 1, 4, 8, 16, 32; and fast94 (airbench94's recipe) end to end in fused packs of
1, 8, 16, 32 (quick mode: a toy fast94, one pack of 2). The side-by-side with the airbench package is
bench/fast94_vs_airbench.py (a script: it needs the package and many seeds). Each result carries
seconds per seed-step, images/s and the fraction of the device's measured matmul peak in `extra_info`
(saved with --benchmark-json).
"""

from __future__ import annotations

import pytest
import torch

from fastseed.engine.autopack import time_pack
from fastseed.engine.flops import seed_flops
from fastseed.engine.pack import STRATEGIES, get_strategy
from fastseed.engine.train import compute_dtype, train_pack
from fastseed.recipe.presets import get_preset

FULL_PACKS, QUICK_PACKS = (1, 4, 8, 16, 32), (1, 2)
E2E_FULL = [("sequential", 1), ("fused", 1), ("fused", 16), ("streams", 16), ("fused", 32)]
E2E_QUICK = [("sequential", 1), ("fused", 2), ("streams", 2)]
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead")
FAST94_FULL, FAST94_QUICK = (1, 8, 16, 32), (2,)


def pytest_generate_tests(metafunc):
    """The cases depend on the mode: quick mode does not even generate the GPU-sized packs, nor the
    compile modes that mean nothing on a CPU."""
    quick = metafunc.config.getoption("--quick") or not (
        metafunc.config.getoption("--full") or torch.cuda.is_available())
    if "mode" in metafunc.fixturenames:
        metafunc.parametrize("mode", ("default",) if quick else COMPILE_MODES)
    if "fast94_k" in metafunc.fixturenames:
        metafunc.parametrize("fast94_k", FAST94_QUICK if quick else FAST94_FULL)
    if {"strategy", "k"} <= set(metafunc.fixturenames):
        if metafunc.function.__name__ == "test_seconds_per_seed":
            params = E2E_QUICK if quick else E2E_FULL
        else:
            params = cases(QUICK_PACKS if quick else FULL_PACKS)
        metafunc.parametrize("strategy,k", params, ids=[f"{s}-{k}" for s, k in params])


def protocol_for(quick: bool):
    return get_preset("smoke") if quick else get_preset("picard-short")


def cases(packs):
    """Every registered strategy; one that trains its seeds one after another, at pack 1 only."""
    return [(s, k) for s in STRATEGIES for k in packs if get_strategy(s).together or k == 1]


def test_train_step(benchmark, quick, device, cifar, peak_flops, strategy, k):
    protocol = protocol_for(quick)
    dtype = compute_dtype(protocol, device)
    graphs = device.type == "cuda" and get_strategy(strategy).graphs
    per_seed_step = benchmark.pedantic(time_pack, args=(protocol, cifar, device, dtype, strategy, k, graphs),
                                       kwargs=dict(steps=2 if quick else 20, warmup=1 if quick else 5),
                                       rounds=1 if quick else 3, iterations=1)
    flops = seed_flops(protocol).train_step
    benchmark.extra_info.update(
        device=str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"), dtype=str(dtype),
        protocol=protocol.name, strategy=strategy, pack=k, seconds_per_seed_step=per_seed_step,
        images_per_s=protocol.batch_size / per_seed_step, flops_per_step=flops,
        peak_flops=peak_flops, fraction_of_peak=flops / per_seed_step / peak_flops)


def test_seconds_per_seed(benchmark, quick, device, cifar, peak_flops, strategy, k):
    """A whole pack trained end to end (training + evaluations); the time is amortised per seed."""
    protocol = protocol_for(quick)
    if quick:
        protocol = protocol.variant(epochs=2, train_size=1000, test_size=1000, lr_decay_end=2)
    records = benchmark.pedantic(train_pack, args=(protocol, list(range(k)), cifar, device),
                                 kwargs=dict(strategy=strategy), rounds=1, iterations=1)
    per_seed = benchmark.stats.stats.mean / k
    flops = seed_flops(protocol).total
    accs = [r.test_acc for r in records]
    benchmark.extra_info.update(
        protocol=protocol.name, strategy=strategy, pack=k, seconds_per_seed=per_seed,
        seed_pflops=flops / 1e15, fraction_of_peak=flops / per_seed / peak_flops,
        mean_acc=sum(accs) / len(accs), accs=accs)
    assert all(r.status == "ok" for r in records)



@pytest.mark.slow
def test_train_step_compiled(benchmark, quick, device, cifar, peak_flops, mode):
    """The fused training step with its forward under torch.compile (our own CUDA graphs off: the
    modes are compared as torch offers them). Quick mode compiles only the default mode, on the CPU."""
    protocol = protocol_for(quick)
    k = 2 if quick else 16
    dtype = compute_dtype(protocol, device)
    per_seed_step = benchmark.pedantic(time_pack, args=(protocol, cifar, device, dtype, "fused", k, False),
                                       kwargs=dict(steps=2 if quick else 20, warmup=2 if quick else 10,
                                                   compile=mode), rounds=1, iterations=1)
    flops = seed_flops(protocol).train_step
    benchmark.extra_info.update(protocol=protocol.name, strategy="fused", pack=k, compile=mode,
                                seconds_per_seed_step=per_seed_step,
                                fraction_of_peak=flops / per_seed_step / peak_flops)


def test_fast94_seconds_per_seed(benchmark, quick, device, cifar, peak_flops, fast94_k):
    """fast94 trained end to end in a fused pack (per-step lr, lookahead, TTA evaluation included); the
    time is amortised per seed. Quick mode: 1/8 width, 1,000 images, 1.5 epochs."""
    protocol = get_preset("fast94")
    if quick:
        protocol = protocol.variant(train_size=1000, test_size=500, batch_size=250, eval_batch_size=500,
                                    width=0.125, epochs=2, train_epochs=1.5, whiten_bias_epochs=1)
    records = benchmark.pedantic(train_pack, args=(protocol, list(range(fast94_k)), cifar, device),
                                 kwargs=dict(strategy="fused"), rounds=1, iterations=1)
    per_seed = benchmark.stats.stats.mean / fast94_k
    flops = seed_flops(protocol).total
    accs = [r.test_acc for r in records]
    benchmark.extra_info.update(
        protocol=protocol.name, strategy="fused", pack=fast94_k, seconds_per_seed=per_seed,
        runs_per_hour=3600 / per_seed, seed_pflops=flops / 1e15, fraction_of_peak=flops / per_seed / peak_flops,
        mean_acc=sum(accs) / len(accs), accs=accs)
    assert all(r.status == "ok" for r in records)
