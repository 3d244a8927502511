"""RandomResizedCrop windows and flips for ImageNet training, drawn from the seed's counter-based stream.

Picard's script uses torchvision's RandomResizedCrop(224) (scale (0.08, 1), ratio (3/4, 4/3)) and
RandomHorizontalFlip(0.5). Each image gets up to 10 attempts: a target area (scale x the image's area)
and a log-uniform aspect ratio give a w x h window, rounded; the first window that fits is placed
uniformly at random; when none fits, the largest centred window with a ratio inside the range is used.

The windows here follow that rule exactly, vectorised over a batch, but their uniforms come from
seed.generator("augment", phase, step): 4 x batch x 10 of them (scale, ratio, top, left of every
attempt, unused ones drawn too) and then batch more for the flips, in float64. Every step's draws are
a fixed function of (seed, phase, step), so a pipeline can start at any step: the data position is a
number. The decoder is then handed the window (`anchor`, `shape`) and the flip.

FROZEN like fastseed.seeds: changing the draw order or count changes every ImageNet result stored.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fastseed.seeds import Seed

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10


def crop_windows(heights, widths, uniforms: torch.Tensor) -> torch.Tensor:
    """(n, 4) int64 windows (top, left, height, width) for images of the given sizes.

    `uniforms` is (4, n, ATTEMPTS) in [0, 1): each attempt's scale, log-ratio, top and left draws."""
    H = torch.as_tensor(np.asarray(heights), dtype=torch.float64)[:, None]
    W = torch.as_tensor(np.asarray(widths), dtype=torch.float64)[:, None]
    u_scale, u_ratio, u_top, u_left = uniforms
    area = H * W * (SCALE[0] + (SCALE[1] - SCALE[0]) * u_scale)
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    # torch.round and Python's round both round halves to even, as torchvision's int(round(…)) does
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    top, left = torch.floor(u_top * (H - h + 1)), torch.floor(u_left * (W - w + 1))
    first = fits.to(torch.int8).argmax(1, keepdim=True)  # the first attempt that fits (0 when none does)
    window = torch.cat([t.gather(1, first) for t in (top, left, h, w)], 1)
    # Fallback, when no attempt fits (very elongated images): the centred window of the nearest ratio.
    H, W = H[:, 0], W[:, 0]
    tall, wide = W / H < RATIO[0], W / H > RATIO[1]
    fw = torch.where(wide, torch.round(H * RATIO[1]), W)
    fh = torch.where(tall, torch.round(W / RATIO[0]), H)
    fallback = torch.stack([torch.div(H - fh, 2, rounding_mode="floor"),
                            torch.div(W - fw, 2, rounding_mode="floor"), fh, fw], 1)
    return torch.where(fits.any(1, keepdim=True), window, fallback).to(torch.int64)


def step_augment(seed: Seed, phase: int, step: int, heights, widths) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step's crop windows (n, 4) and horizontal flips (n,) bool, for its n images."""
    g = seed.generator("augment", phase, step)
    n = len(heights)
    uniforms = torch.rand((4, n, ATTEMPTS), generator=g, dtype=torch.float64)
    flips = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    return crop_windows(heights, widths, uniforms), flips
