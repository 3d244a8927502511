"""Triton kernels, each beside its PyTorch reference (lsce.py, augment.py).

triton is imported on first use, not with the kernel modules: it reads TRITON_INTERPRET once, when it
is first imported (its own @jit library functions are built then), so a test process that imports the
engine early can still run the kernels under the interpreter (see the repository's conftest.py). The
kernel modules keep their `tl.constexpr` annotations as unevaluated strings until then (`__future__`).
"""

import importlib.util
import os
import sys

HAS_TRITON = importlib.util.find_spec("triton") is not None


def load_triton(module_globals: dict):
    """Import triton now and bind `triton` and `tl` in a kernel module's globals, where the @jit
    kernels resolve them; returns triton."""
    if module_globals.get("triton") is None:
        import triton
        import triton.language as tl
        module_globals.update(triton=triton, tl=tl)
    return module_globals["triton"]


def interpreting() -> bool:
    """TRITON_INTERPRET as triton reads it, now (not when a module was imported)."""
    triton = sys.modules.get("triton")
    if triton is not None and hasattr(triton, "knobs"):
        return bool(triton.knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
