"""A user's own CIFAR model: `--model package.module:factory` (or `model = "…"` in a protocol file).

`factory()` is called with no arguments inside the seed's "init" stream (torch's default generator is
seeded there, so nn.Module's default initialisation is the seed's) and must return an nn.Module mapping
N×3×32×32 images to N×10 logits. The module is imported as Python imports any module, from `sys.path`,
with the current directory first (as `python -m` does), so `--model mynets.wide:make` finds
./mynets/wide.py when the scan runs from the folder that holds `mynets/`.

The sha256 of the factory's module file is part of the protocol (`model_digest`), so editing the file
makes another protocol and another store; a scan or a replay whose file no longer has the recorded
digest is refused. Only that one file is covered: code it imports from other files is not.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

import torch
from torch import nn

from fastseed import FastseedError

CLASSES = 10
PROBE = (2, 3, 32, 32)  # two CIFAR images: what the model must take


def split_spec(spec: str) -> tuple[str, str]:
    module, _, attr = spec.partition(":")
    if not module or not attr or not all(p.isidentifier() for p in module.split(".") + attr.split(".")):
        raise FastseedError(f"--model {spec}: expected package.module:factory (a Python module path, a "
                            f"colon, a callable in it)")
    return module, attr


def _cwd_on_path():
    """The current directory on sys.path, first, as `python -m` puts it there (idempotent)."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def module_file(spec: str) -> Path:
    """The source file of the factory's module, found without running it."""
    module, _ = split_spec(spec)
    _cwd_on_path()
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:  # a parent package that does not import
        raise FastseedError(f"--model {spec}: cannot find module {module} ({e})") from None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise FastseedError(f"--model {spec}: no module {module} on the Python path (it is imported from the "
                            f"current directory {os.getcwd()} or an installed package)")
    return Path(found.origin)


_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime) → sha256: the file is read again only once it changed


def source_digest(spec: str) -> str:
    """sha256 of the factory's module file. Checked at every seed's init, so remembered by the file's
    size and modification time: a scan of 10^5 seeds reads it once, not 10^5 times."""
    path = module_file(spec)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _DIGESTS[key]


def load_factory(spec: str):
    module_name, attr = split_spec(spec)
    path = module_file(spec)
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:
        raise FastseedError(f"--model {spec}: importing {path} failed: {type(e).__name__}: {first_line(e)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FastseedError(f"--model {spec}: {module_name} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise FastseedError(f"--model {spec}: {attr} is not callable")
    return obj


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def build_user_model(spec: str, digest: str = "", classes: int = CLASSES) -> nn.Module:
    """A new model from the user's factory; its module file must still have `digest` (when given)."""
    if classes != CLASSES:
        raise FastseedError(f"--model {spec}: a user model is a CIFAR-10 model ({CLASSES} classes)")
    if digest and source_digest(spec) != digest:
        raise FastseedError(f"--model {spec}: {module_file(spec)} changed since this protocol was made (its sha256 "
                            f"is not {digest[:12]}…): restore it, or scan the new file as a new protocol")
    factory = load_factory(spec)
    try:
        model = factory()
    except Exception as e:
        raise FastseedError(f"--model {spec}: calling {spec.partition(':')[2]}() failed: "
                            f"{type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise FastseedError(f"--model {spec}: the factory returned a {type(model).__name__}, not a torch nn.Module")
    return model


def check_user_model(spec: str) -> str:
    """Import and call the factory once (on a fixed seed, leaving torch's generator as it was), check that
    the model maps 2×3×32×32 images to 2×10 logits, and return its module file's sha256."""
    digest = source_digest(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_user_model(spec)
        model.eval()
        try:
            with torch.no_grad():
                out = model(torch.zeros(PROBE))
        except Exception as e:
            raise FastseedError(f"--model {spec}: the model fails on a batch of 3×32×32 images: "
                                f"{type(e).__name__}: {first_line(e)}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (PROBE[0], CLASSES):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FastseedError(f"--model {spec}: the model must return {CLASSES} logits per image "
                            f"(N×{CLASSES}), got {shape} for N={PROBE[0]}")
    return digest
