"""Learning-rate schedules of the CIFAR recipes, and the optimiser units they are written in.

Two kinds, by the protocol's `schedule` knob:
- per epoch ("picard", "constant"): Picard's LambdaLR multiplier, the same for every step of an epoch;
- per step ("triangle"): airbench's piecewise-linear multiplier, a new one before every training step.
Either way the optimiser holds the lr in a device tensor (engine/optim.py), so one captured step
follows the whole schedule; `lr_at` is the multiplier of any step.
Lookahead's decay is per step too. (The ImageNet fine-tunes use torch's CosineAnnealingLR per phase:
engine/finetune.py.)
"""

from __future__ import annotations


def per_step(protocol) -> bool:
    """Whether the lr changes every training step (else once per epoch)."""
    return protocol.schedule == "triangle"


def lr_multiplier(protocol, epoch: int) -> float:
    """The per-epoch multiplier of the base lr. "picard": Picard's LambdaLR, a linear warm-up to ~0.51
    over lr_warmup_epochs, a linear decay to 0.01 at lr_decay_end, and (long runs) a flat 0.01 from
    lr_floor_from on:  e < w: 0.5·e/(w−1) + 0.01;  else 0.5·(end − e)/(end − w + 1) + 0.01."""
    if protocol.schedule == "constant":
        return 1.0
    warm, end = protocol.lr_warmup_epochs, protocol.lr_decay_end
    if epoch < warm:
        return 0.5 * epoch / (warm - 1) + 0.01
    if protocol.lr_floor_from is not None and epoch >= protocol.lr_floor_from:
        return 0.01
    return 0.5 * (end - epoch) / (end - warm + 1) + 0.01


def step_lr_multiplier(protocol, step: int, total: int) -> float:
    """The "triangle" multiplier of training step `step` (0-based) of `total`, as airbench's LambdaLR
    applies it: linear from `start` at step 0 to 1 at step int(peak · total), then linear to `end` at
    step `total` (never reached: the last step is total − 1)."""
    start, peak, end = protocol.lr_triangle
    top = int(peak * total)
    if step < top:
        return start + (1.0 - start) * step / top
    return 1.0 + (end - 1.0) * (step - top) / (total - top)


def lr_at(protocol, epoch: int, step: int, total: int) -> float:
    """The multiplier of the base lr at training step `step` (0-based, of `total`), in epoch `epoch`."""
    return step_lr_multiplier(protocol, step, total) if per_step(protocol) else lr_multiplier(protocol, epoch)


def lookahead_decay(protocol, step: int, total: int) -> float:
    """The lookahead decay d after `step` steps (1-based count) of `total`: decay^every · (step/total)^power."""
    return protocol.lookahead_decay ** protocol.lookahead_every * (step / total) ** protocol.lookahead_power


def sgd_hyperparameters(protocol) -> dict:
    """torch.optim.SGD's (lr, weight_decay) for the two kinds of parameter: "other" and "bn_bias"
    (BatchNorm biases: lr × bias_scaler, weight decay ÷ bias_scaler, so their decay per step is the
    others'). "per1024" converts airbench's units in the package's own order of operations:
    kilostep = 1024·(1 + 1/(1 − momentum)), lr/kilostep, weight_decay·batch_size/kilostep."""
    if protocol.hyper_units == "per1024":
        kilostep = 1024 * (1 + 1 / (1 - protocol.momentum))
        lr, decay = protocol.lr / kilostep, protocol.weight_decay * protocol.batch_size / kilostep
        bias_lr = lr * protocol.bias_scaler
        return {"other": (lr, decay / lr), "bn_bias": (bias_lr, decay / bias_lr)}
    return {"other": (protocol.lr, protocol.weight_decay),
            "bn_bias": (protocol.lr * protocol.bias_scaler, protocol.weight_decay / protocol.bias_scaler)}
