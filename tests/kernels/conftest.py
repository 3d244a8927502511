"""Where the Triton kernels run in tests: on the GPU when there is one, else under triton's interpreter.

Triton reads TRITON_INTERPRET when it is first imported (its own @jit library functions, tl.sum and
the like, are built then, compiled or interpreted for good) and again when it decorates a kernel.
fastseed's kernel modules import triton only on first use and decorate lazily, so:
- on a machine without CUDA, this file (loaded while pytest collects, before any test runs, so before
  a torch.compile elsewhere can import triton compiled) imports triton once with the variable set, then
  restores the environment;
- each kernel test sets the variable for its own duration (monkeypatch), never for the session:
  elsewhere impl="auto" must keep choosing the PyTorch reference on a CPU machine.
torch.compile on the CPU does not use triton, so the interpreted library costs it nothing.
"""

import importlib.util
import os
import sys

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None

if HAS_TRITON and not torch.cuda.is_available() and "triton" not in sys.modules:
    _saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    finally:
        if _saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _saved


@pytest.fixture
def triton_device(monkeypatch) -> torch.device:
    """The device a kernel test puts its tensors on; the Triton path runs there."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    if torch.cuda.is_available():
        return torch.device("cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(tl.sum, InterpretedFunction):
        pytest.skip("triton was imported (compiled) before tests/kernels/conftest.py could import it "
                    "interpreted; run with TRITON_INTERPRET=1 in the environment")
    return torch.device("cpu")
