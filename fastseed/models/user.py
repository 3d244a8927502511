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

import torch
from torch import nn

from fastseed import FastseedError
from fastseed.usercode import checked_file, first_line, load, source_digest

CLASSES = 10
PROBE = (2, 3, 32, 32)  # two CIFAR images: what the model must take
FLAG, ROLE = "--model", "factory"  # how the spec is named in messages (fastseed.usercode)


def build_user_model(spec: str, digest: str = "", classes: int = CLASSES) -> nn.Module:
    """A new model from the user's factory; its module file must still have `digest` (when given)."""
    if classes != CLASSES:
        raise FastseedError(f"--model {spec}: a user model is a CIFAR-10 model ({CLASSES} classes)")
    checked_file(spec, digest, FLAG, ROLE)
    factory = load(spec, FLAG, ROLE)
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
    digest = source_digest(spec, FLAG, ROLE)
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
