"""`--pack auto`: how many seeds to train at once on this GPU.

The memory of one seed is measured (peak of a real training step at K = 1), K is capped so the pack
fits in 80 % of the free memory, and the candidate pack sizes up to that cap are timed for a few
steps; the fastest per seed wins. What is timed is what the scan will run: the same strategy, the same
compile mode, the same graph setting (a graphed pack is timed on replays of its captured step). An
out-of-memory error while timing, a capture's included, ends the search instead of the run. All of it
runs under the device's own context. On a CPU there is nothing to gain from packing: K = 1.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import torch

from fastseed.engine.graphs import is_oom, on_device
from fastseed.engine.pack import get_strategy
from fastseed.engine.step import GraphedStep
from fastseed.engine.train import build, make_step, subset
from fastseed.seeds import Seed

CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
MEMORY_SHARE = 0.8


def pick_pack(per_seed_bytes: int, free_bytes: int, seconds_per_seed: Callable[[int], float],
              candidates=CANDIDATES, log=print) -> int:
    """The candidate K (fitting in MEMORY_SHARE of free memory) with the lowest measured seconds per
    seed; a candidate that runs out of memory stops the search."""
    cap = max(1, int(MEMORY_SHARE * free_bytes // max(per_seed_bytes, 1)))
    best, best_time = 1, float("inf")
    for k in (c for c in candidates if c <= cap):
        try:
            t = seconds_per_seed(k)
        except RuntimeError as e:
            if not is_oom(e):
                raise
            log(f"pack auto: K={k} ran out of memory; stopping the search")
            break
        log(f"pack auto: K={k}: {1000 * t:.2f} ms per seed-step")
        if t < best_time:
            best, best_time = k, t
    return best


def time_pack(protocol, data, device, dtype, strategy, k, graphs, steps=6, warmup=None, compile=None) -> float:
    """Seconds per seed per training step for a pack of k (fresh seeds; the result is discarded). The
    warm-up (default: GraphedStep's eager steps and its capture with `graphs` or a compile mode's first
    steps, else one step) is not timed, so a graphed pack's timed steps are replays."""
    warmup = (GraphedStep.WARMUP + 1 if graphs or compile else 1) if warmup is None else warmup
    train_x, train_y, _, _ = subset(protocol, data)
    pack, opt = build(protocol, [Seed(i) for i in range(k)], device, dtype, strategy, compile, images=train_x,
                      graphs=graphs)
    step = make_step(protocol, pack, opt, train_x, train_y, dtype, torch.cuda if graphs else None)
    idx, params = random_batch(protocol, train_x.shape[0], k, device)
    sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step(idx, params)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(idx, params)
    sync()
    del pack, opt, step
    return (time.perf_counter() - t0) / steps / k


def random_batch(protocol, images: int, k: int, device, seed: int = 0) -> tuple:
    """A training step's input for a pack of k with nothing of a seed in it: (K, B) image indices and
    their augmentation parameters (crop offsets, flips, cutout centres), drawn from `seed`."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape = (k, protocol.batch_size)
    idx = torch.randint(0, images, shape, generator=g)
    params = [torch.randint(0, 2 * protocol.crop_pad + 1, shape, generator=g) for _ in range(2)]
    params += [torch.randint(0, 2, shape, generator=g).bool(), torch.randint(0, 32, shape, generator=g),
               torch.randint(0, 32, shape, generator=g)]
    return idx.to(device), [p.to(device) for p in params]


def choose_pack(protocol, data, device, dtype, strategy, graphs, log=print, compile=None) -> int:
    """The pack size for `--pack auto`: measured as the scan will train (strategy, graphs, compile)."""
    device = torch.device(device)
    if device.type != "cuda":
        log("pack auto: no GPU, training one seed at a time")
        return 1
    if not get_strategy(strategy).together:
        return 1
    with on_device(device):
        return _measure(protocol, data, device, dtype, strategy, graphs, log, compile)


def _measure(protocol, data, device, dtype, strategy, graphs, log, compile) -> int:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    time_pack(protocol, data, device, dtype, strategy, 1, graphs, steps=1, compile=compile)
    per_seed = torch.cuda.max_memory_allocated(device) - base
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    log(f"pack auto: {per_seed / 2**20:.0f} MiB per seed, {free / 2**30:.1f} GiB free")

    def measure(k):
        try:
            return time_pack(protocol, data, device, dtype, strategy, k, graphs, compile=compile)
        finally:
            torch.cuda.empty_cache()

    return pick_pack(per_seed, free, measure, log=log)


# ---- an explicit --pack on a CPU: capped by memory, not measured ------------------------------------
# (Nothing on a CPU reports a peak like torch.cuda.max_memory_allocated; the estimate below costs no
# memory and no compute, so it also works for a preset that would take minutes for one real step.)

def seed_bytes(protocol, dtype: torch.dtype) -> int:
    """Memory one seed of a pack needs for a training step: twice the activations autograd saves for
    the backward pass at the protocol's batch size (the backward allocates their gradients), plus
    weights, gradients and optimiser state (4 copies of the parameters). Counted on the meta device:
    shapes only, nothing allocated, nothing computed. The peak resident memory of two real CPU steps
    (SGD) came out at 1.04× this for smoke, 0.68× for picard-short and 0.64× for resnet18-exp1: a
    slightly generous estimate, as a cap should be."""
    from fastseed.models import create_model, set_dtype
    saved = 0

    def keep(t):
        nonlocal saved
        if id(t) not in weights_ids:  # a layer saves its weight for the backward: counted below
            saved += t.numel() * t.element_size()
        return t

    with torch.device("meta"):
        model = set_dtype(create_model(protocol), dtype)
        x = torch.empty(protocol.batch_size, 3, 32, 32, dtype=dtype)
    weights_ids = {id(p) for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(x)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 2 * saved + 4 * weights


def available_memory() -> int:
    """Bytes the OS can give without swapping: MemAvailable on Linux, free pages elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_pack_cap(protocol, dtype: torch.dtype) -> tuple[int, int, int]:
    """(the largest pack that fits in MEMORY_SHARE of the available memory, bytes a seed needs, bytes
    available)."""
    per_seed, available = seed_bytes(protocol, dtype), available_memory()
    return max(1, int(MEMORY_SHARE * available // max(per_seed, 1))), per_seed, available
