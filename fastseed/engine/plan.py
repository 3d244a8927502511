"""What one seed sees in one epoch: the order of the training images and each image's augmentation.

All draws come from the seed's streams keyed by epoch — ("order", e) and ("augment", e), plus
("augment", -1) once per run for alternating flips and ("order", -1) for a protocol that trains every
epoch in one permutation (order_rule "once") — so an epoch's plan is a pure function of
(protocol, seed, epoch, n). Changing the draw order here changes every stored result
(tests/test_seeds.py pins it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastseed.seeds import Seed

@dataclass(frozen=True)
class EpochPlan:
    order: torch.Tensor  # dataset indices in training order (without the last partial batch if drop_last)
    dy: torch.Tensor  # per training image (dataset order): crop offsets in [0, 2·pad]
    dx: torch.Tensor
    flip: torch.Tensor  # bool
    cy: torch.Tensor  # cutout centres in [0, 32)
    cx: torch.Tensor

    def to(self, device) -> "EpochPlan":
        return EpochPlan(*(t.to(device, non_blocking=True) for t in
                           (self.order, self.dy, self.dx, self.flip, self.cy, self.cx)))


def plan_epoch(protocol, seed: Seed, epoch: int, n: int, size: int = 32) -> EpochPlan:
    """Picard's quirk in "chunk" mode: augmentation is drawn before shuffling, one crop/flip/cutout per
    chunk of `chunk_size` images in dataset order; then one permutation shuffles the epoch. With
    flip_rule "alternate", airbench's draws (alternating_flip_draws). With order_rule "once", ONE
    permutation, drawn before training, orders every epoch (the ResNet-18 study's exp 2)."""
    kept = (n // protocol.batch_size) * protocol.batch_size if protocol.drop_last else n
    counter = BEFORE_TRAINING if protocol.order_rule == "once" else epoch
    order = torch.randperm(n, generator=seed.generator("order", counter))[:kept]
    pad = protocol.crop_pad
    if protocol.flip_rule == "alternate":
        return EpochPlan(order, *alternating_flip_draws(protocol, seed, epoch, n, size))
    if protocol.augment == "none":
        z = torch.zeros(n, dtype=torch.int64)
        return EpochPlan(order, z + pad, z + pad, z.bool(), z - 10**6, z - 10**6)
    draws = n if protocol.augment == "image" else -(-n // protocol.chunk_size)
    g = seed.generator("augment", epoch)
    dy = torch.randint(0, 2 * pad + 1, (draws,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (draws,), generator=g)
    flip = torch.randint(0, 2, (draws,), generator=g).bool() & protocol.flip
    cy = torch.randint(0, size, (draws,), generator=g)
    cx = torch.randint(0, size, (draws,), generator=g)
    if protocol.augment == "chunk":
        dy, dx, flip, cy, cx = (t.repeat_interleave(protocol.chunk_size)[:n] for t in (dy, dx, flip, cy, cx))
    return EpochPlan(order, dy, dx, flip, cy, cx)


BEFORE_TRAINING = -1  # the counter of draws made once per run, before epoch 0


def alternating_flip_draws(protocol, seed: Seed, epoch: int, n: int, size: int = 32):
    """airbench's per-image translate and alternating flip. Each image's flip is drawn once per run (a
    fair coin, from ("augment", BEFORE_TRAINING)) and used in even epochs; odd epochs flip exactly the
    images that even epochs do not, so every image is seen both ways every two epochs. Crops (and a
    cutout, if any) are drawn per image per epoch from ("augment", epoch)."""
    flip = torch.randint(0, 2, (n,), generator=seed.generator("augment", BEFORE_TRAINING)).bool()
    flip = (flip ^ bool(epoch % 2)) & protocol.flip
    g, pad = seed.generator("augment", epoch), protocol.crop_pad
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    if protocol.cutout > 0:
        cy, cx = torch.randint(0, size, (n,), generator=g), torch.randint(0, size, (n,), generator=g)
    else:
        cy = cx = torch.full((n,), -10**6, dtype=torch.int64)  # far away: cuts nothing
    return dy, dx, flip, cy, cx
