"""The Triton kernels against their PyTorch references, and augment against a plain device copy.

Full mode (GPU): Picard's shapes — the loss forward+backward of a pack of K=16 seeds (B=500, C=10,
fp16 logits); gather+augment of M=16·500 images from the 50,000 uint8 training images to fp16; and a
device copy of the same output bytes, the bandwidth augment is held to (≥ 70 % of it). Quick mode
(CPU, CI): the references at small sizes and the kernels under triton's interpreter at tiny ones, so
the suite never rots; those timings mean nothing.

Each timed call runs `reps` launches and synchronises once, so launch latency overlaps as it does in
training; extra_info holds seconds per launch and, for the memory-bound kernels, GB/s.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

from fastseed.kernels.augment import augment
from fastseed.kernels.lsce import protocol_loss_packed

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
HAS_TRITON = importlib.util.find_spec("triton") is not None

# Without a GPU the kernels run interpreted, and triton fixes that choice for its own library when it
# is first imported: import it now, at collection, before anything else imports it compiled.
if HAS_TRITON and not torch.cuda.is_available() and "triton" not in sys.modules:
    _saved = os.environ.pop("TRITON_INTERPRET", None)
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    finally:
        os.environ.pop("TRITON_INTERPRET")
        if _saved is not None:
            os.environ["TRITON_INTERPRET"] = _saved


def prepare(impl, device, monkeypatch):
    """Skip what cannot run here; on the CPU, run triton interpreted for this benchmark only."""
    if impl == "triton":
        if not HAS_TRITON:
            pytest.skip("triton is not installed")
        if device.type == "cpu":
            monkeypatch.setenv("TRITON_INTERPRET", "1")
            import triton.language as tl
            from triton.runtime.interpreter import InterpretedFunction
            if not isinstance(tl.sum, InterpretedFunction):
                pytest.fail("triton was imported compiled before the root conftest.py could import it interpreted")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(benchmark, fn, device, quick, reps):
    """Benchmark `reps` calls of fn per round; returns seconds per call (median)."""
    def run():
        for _ in range(reps):
            fn()
        sync(device)
    run()  # compile / warm up outside the timing
    if quick:
        benchmark.pedantic(run, rounds=2, iterations=1)
    else:
        benchmark.pedantic(run, rounds=30, iterations=1, warmup_rounds=3)
    per_call = benchmark.stats.stats.median / reps
    benchmark.extra_info.update(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                                reps_per_round=reps, seconds_per_call=per_call)
    return per_call


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_loss_forward_backward(benchmark, monkeypatch, quick, device, impl):
    prepare(impl, device, monkeypatch)
    K, B, C = (16, 500, 10) if not quick else ((2, 50, 10) if impl == "torch" else (1, 7, 10))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(K, B, C, generator=g, device=device).to(dtype).requires_grad_()
    targets = torch.randint(0, C, (K, B), generator=g, device=device)

    def step():
        loss = protocol_loss_packed(logits, targets, eps=0.2, lsce_weight=2.0, impl=impl)
        loss.sum().backward()

    timed(benchmark, step, device, quick, reps=1 if quick else 100)
    benchmark.extra_info.update(impl=impl, K=K, B=B, C=C, dtype=str(dtype))


def augment_inputs(device, quick, impl):
    N, M = (50_000, 16 * 500) if not quick else ((1000, 500) if impl != "triton" else (16, 4))
    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=g, device=device)
    index = torch.randint(0, N, (M,), generator=g, device=device)
    dy, dx, cy, cx = (torch.randint(0, hi, (M,), generator=g, device=device) for hi in (9, 9, 32, 32))
    flip = torch.randint(0, 2, (M,), generator=g, device=device).bool()
    return images, (index, dy, dx, flip, cy, cx)


@pytest.fixture(scope="module")
def copy_gbps(device, quick):
    """Bandwidth of a plain device copy of augment's output bytes (read + write), the yardstick."""
    M = 16 * 500 if not quick else 500
    src = torch.randn(M, 3, 32, 32, device=device).half()
    dst = torch.empty_like(src)
    reps = 100 if device.type == "cuda" else 5
    for _ in range(3):
        dst.copy_(src)
    sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            dst.copy_(src)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1e3 / reps
    else:
        import time
        t0 = time.perf_counter()
        for _ in range(reps):
            dst.copy_(src)
        seconds = (time.perf_counter() - t0) / reps
    return 2 * src.nbytes / seconds / 1e9


@pytest.mark.parametrize("impl,channels_last", [("torch", False), ("triton", False), ("triton", True)],
                         ids=["torch", "triton", "triton-channels_last"])
def test_augment(benchmark, monkeypatch, quick, device, copy_gbps, impl, channels_last):
    prepare(impl, device, monkeypatch)
    images, params = augment_inputs(device, quick, impl)
    kw = dict(pad=4, cutout=8, dtype=torch.float16, channels_last=channels_last, impl=impl)
    out = augment(images, *params, MEAN, STD, **kw)
    seconds = timed(benchmark, lambda: augment(images, *params, MEAN, STD, **kw), device, quick,
                    reps=1 if quick else 50)
    moved = out.nbytes + out.numel() // 2  # fp16 written + the uint8 pixels read (params: negligible)
    gbps = moved / seconds / 1e9
    benchmark.extra_info.update(impl=impl, channels_last=channels_last, images=images.shape[0],
                                batch=out.shape[0], gbps=gbps, output_gbps=out.nbytes / seconds / 1e9,
                                copy_gbps=copy_gbps, fraction_of_copy_bandwidth=gbps / copy_gbps)


def test_device_copy(benchmark, quick, device):
    """The same output bytes copied on the device: what augment's bandwidth is compared with."""
    M = 16 * 500 if not quick else 500
    src = torch.randn(M, 3, 32, 32, device=device).half()
    dst = torch.empty_like(src)
    seconds = timed(benchmark, lambda: dst.copy_(src), device, quick, reps=1 if quick else 50)
    benchmark.extra_info.update(bytes=src.nbytes, gbps=2 * src.nbytes / seconds / 1e9)
