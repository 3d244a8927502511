"""Loaded by pytest before any test or benchmark module (tests/ and bench/ alike).

Without a GPU, Triton kernels are tested under triton's interpreter. Triton fixes, when it is first
imported, whether its own library functions (tl.sum, …) are compiled or interpreted; some torch
modules import it (torch.utils.flop_counter does), so it must be imported interpreted here, first.
The variable is then restored: kernel tests set it only for their own duration, so elsewhere
impl="auto" keeps choosing the PyTorch references on a CPU.
"""

import importlib.util
import os
import sys

import torch

if importlib.util.find_spec("triton") and not torch.cuda.is_available() and "triton" not in sys.modules:
    _saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    finally:
        if _saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _saved
