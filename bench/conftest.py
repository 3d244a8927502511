"""Benchmark session: quick (CPU-sized, the default without a GPU) or full (GPU-sized) mode, the data,
the device's measured matmul peak, and the FLOP count of one picard-short seed printed at the end.

    python -m pytest bench --quick                  # CI: every benchmark at toy size on the CPU
    python -m pytest bench --full --benchmark-json=bench/results/<run>.json   # on a GPU
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="toy sizes (the default when there is no GPU)")
    parser.addoption("--full", action="store_true", help="GPU sizes: picard-short, packs up to 32")


@pytest.fixture(scope="session")
def quick(request) -> bool:
    if request.config.getoption("--full"):
        if not torch.cuda.is_available():
            raise pytest.UsageError("--full needs a CUDA GPU")
        return False
    return request.config.getoption("--quick") or not torch.cuda.is_available()


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def real_cifar_dir() -> Path | None:
    for root in (os.environ.get("FASTSEED_DATA"), REPO / "data", REPO / "tests" / ".cache" / "cifar10",
                 Path("/root/data")):
        if root and any((Path(root) / n).exists() for n in ("cifar-10-binary.tar.gz", "cifar-10-batches-bin",
                                                            "cifar-10-python.tar.gz", "cifar-10-batches-py")):
            return Path(root)
    return None


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The real CIFAR-10's folder (CI puts it in data/): a script run on it needs the real files."""
    root = real_cifar_dir()
    if root is None:
        pytest.fail("real CIFAR-10 not found: set FASTSEED_DATA or put it in data/ (see README)")
    return root


@pytest.fixture(scope="session")
def cifar(device, quick):
    """The real CIFAR-10 on the device when present (always in full mode), else a synthetic set."""
    from fastseed.data.cifar import load_cifar10, to_tensors
    from fastseed.data.synthetic import make_cifar_like
    root = real_cifar_dir()
    if root is None and not quick:
        raise pytest.UsageError("--full needs the real CIFAR-10 (set FASTSEED_DATA)")
    data = load_cifar10(root) if root is not None else make_cifar_like(5000, 1000, seed=0)
    return to_tensors(data, device)


@pytest.fixture(scope="session")
def peak_flops(device, quick) -> float:
    """Measured dense matmul FLOP/s of this device in the training dtype (fp16 on a GPU): the
    physical floor every training time is compared with."""
    n, dtype = (8192, torch.float16) if device.type == "cuda" else (512, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    reps, t0 = (50 if device.type == "cuda" else 5), time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def pytest_terminal_summary(terminalreporter):
    from fastseed.engine.flops import seed_flops
    from fastseed.recipe.presets import get_preset
    terminalreporter.section("FLOPs of one picard-short seed (forward + backward, every layer)")
    terminalreporter.write_line(seed_flops(get_preset("picard-short")).table())
