"""Where the Triton kernels run in tests: on the GPU when there is one, else under triton's interpreter
(imported interpreted by the repository's root conftest.py, before anything can import it compiled).
Each kernel test sets TRITON_INTERPRET only for its own duration, never for the session: elsewhere
impl="auto" must keep choosing the PyTorch reference on a CPU machine."""

import importlib.util

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None


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
        pytest.fail("triton was imported compiled before the root conftest.py could import it interpreted")
    return torch.device("cpu")
