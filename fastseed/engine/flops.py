"""FLOPs of one seed of a protocol, layer by layer, counted by torch's FlopCounterMode on the meta
device (shapes only: nothing is computed, so it runs anywhere in a second).

Counted: convolutions and matmuls, forward and backward (the tensor-core work that bounds the run;
BatchNorm, CELU, pooling and the loss are memory-bound and add < 1 % of the FLOPs). One seed =
CifarProtocol.total_steps training steps + per evaluated epoch one forward over the test set for every
view of the test-time augmentation (1, 2 or 6 views).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from fastseed.kernels.lsce import protocol_loss_reference
from fastseed.models import create_model

TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000  # CIFAR-10
TTA_VIEWS = {0: 1, 1: 2, 2: 6}  # plain; + mirror; + two shifts, each also mirrored


@dataclass(frozen=True)
class SeedFlops:
    train_step: int  # forward + backward of one batch
    eval_image: int  # forward of one test image, all its test-time views
    steps: int
    evals: int
    test_images: int
    per_layer: dict  # module name -> FLOPs of one training step (forward + backward)

    @property
    def total(self) -> int:
        return self.train_step * self.steps + self.eval_image * self.test_images * self.evals

    def table(self) -> str:
        lines = [f"{'layer':<28}{'GFLOP/step':>14}"]
        lines += [f"{name:<28}{flops / 1e9:>14.3f}" for name, flops in self.per_layer.items()]
        lines.append(f"one training step: {self.train_step / 1e9:.1f} GFLOP; one test image: "
                     f"{self.eval_image / 1e6:.1f} MFLOP; one seed ({self.steps} steps, {self.evals} "
                     f"evaluations): {self.total / 1e15:.3f} PFLOP")
        return "\n".join(lines)


def count_step(protocol, batch: int, backward: bool):
    with torch.device("meta"):
        model = create_model(protocol)
        x = torch.empty(batch, 3, 32, 32)
        y = torch.zeros(batch, dtype=torch.int64)
    counter = FlopCounterMode(display=False, depth=None)
    with counter:
        logits = model(x)
        if backward:
            protocol_loss_reference(logits, y, eps=protocol.lsce_eps, lsce_weight=protocol.lsce_weight,
                                    ce_weight=protocol.ce_weight).backward()
    return counter


def seed_flops(protocol) -> SeedFlops:
    train = count_step(protocol, protocol.batch_size, backward=True)
    evals = count_step(protocol, TTA_VIEWS[protocol.tta], backward=False)
    leaves = {name: sum(ops.values()) for name, ops in train.get_flop_counts().items()
              if name != "Global" and sum(ops.values())}
    # keep the innermost modules only (a parent's count includes its children's)
    per_layer = {n: f for n, f in leaves.items() if not any(o.startswith(n + ".") for o in leaves)}
    n_train = protocol.train_size or TRAIN_IMAGES
    return SeedFlops(train_step=train.get_total_flops(), eval_image=evals.get_total_flops(),
                     steps=protocol.total_steps(n_train),
                     evals=len(protocol.eval_epochs), test_images=protocol.test_size or TEST_IMAGES,
                     per_layer=per_layer)
