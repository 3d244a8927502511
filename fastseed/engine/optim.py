"""The optimisers of a pack, with everything a schedule changes held in device tensors, so that a
training step captured once as a CUDA graph follows the whole run: the learning rate (per step for
airbench, per epoch for Picard, constant for the ResNet-18 study) and which parameters train (airbench's
whitening bias stops after a few epochs). Nothing in them is read back to the host, and nothing a
schedule sets is a Python number baked into a capture. `set_lr_multiplier(m)` makes the next steps use
lr·m; `ScheduledSGD.set_frozen` stops or restarts a parameter without touching `requires_grad`.

`Lookahead` is airbench's slow-weights average, applied between steps (eagerly, a few foreach ops).
"""

from __future__ import annotations

import torch


class ScheduledSGD(torch.optim.Optimizer):
    """torch.optim.SGD (momentum, Nesterov, L2 weight decay added to the gradient), with each group's
    learning rate in a device tensor and an optional on/off tensor per parameter.

    The update is torch's foreach SGD op for op, except the last: the step is multiplied by the lr
    tensor, then added (two roundings where torch's `add_(…, alpha=−lr)` has one; a relative 1e-16 in
    float64). The lr tensor is in the parameters' own dtype, so `_foreach_mul` takes its one-kernel path
    (a scalar tensor of another dtype sends it to one kernel per parameter); for float16 parameters the
    lr itself is rounded to float16 (a relative 5e-4 at most, the same for every parameter of a step).
    Momentum buffers exist from the start, zero (the first step then gives torch's buffer = gradient
    exactly), so a capture never allocates them. Parameters without a gradient are skipped (no decay,
    no momentum), as torch.optim.SGD skips them. torch's own SGD with a tensor lr is not used: it reads
    the lr back to the host, and its fused CPU kernel got fp16 updates wrong (torch 2.13)."""

    def __init__(self, groups, *, momentum: float, nesterov: bool, device):
        super().__init__(groups, dict(lr=0.0, momentum=momentum, nesterov=nesterov, weight_decay=0.0))
        self._lrs = [{p.dtype: torch.zeros((), dtype=p.dtype, device=device) for p in g["params"]}
                     for g in self.param_groups]
        for group in self.param_groups:
            if group["momentum"] != 0:
                for p in group["params"]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self._on: dict[torch.Tensor, torch.Tensor] = {}  # parameter → 1 (trains) or 0 (frozen), on the device
        self.set_lr_multiplier(1.0)

    def set_lr_multiplier(self, multiplier: float):
        for group, lrs in zip(self.param_groups, self._lrs):
            for t in lrs.values():
                t.fill_(-group["lr"] * multiplier)  # in place: a captured graph keeps reading it

    def freezable(self, params):
        """Parameters that a schedule may freeze (call before the first step: their update then goes
        through their on/off tensor, in every step a graph captures). They start on."""
        for p in params:
            self._on.setdefault(p, torch.ones((), dtype=p.dtype, device=p.device))

    def set_frozen(self, param, frozen: bool):
        """A frozen parameter keeps its value and its momentum exactly (its update × 0), as if it had
        no gradient; unfrozen, its update is torch's SGD again (× 1)."""
        self._on[param].fill_(0.0 if frozen else 1.0)

    @torch.no_grad()
    def step(self):
        for group, lrs in zip(self.param_groups, self._lrs):
            by_dtype = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_dtype.setdefault(p.dtype, []).append(p)
            for dtype, params in by_dtype.items():
                plain = [p for p in params if p not in self._on]
                if plain:
                    self._update(group, plain, lrs[dtype])
                for p in params:
                    if p in self._on:
                        self._update_switched(group, p, lrs[dtype])

    def _update(self, group, params, lr):
        grads = [p.grad for p in params]
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_add_(params, torch._foreach_mul(grads, lr))

    def _update_switched(self, group, p, lr):
        """_update for one parameter, the same arithmetic, × its on/off tensor."""
        on, grad = self._on[p], p.grad
        if group["weight_decay"] != 0:
            grad = torch.add(grad, p, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            buf = self.state[p]["momentum_buffer"]
            new = buf * momentum + grad
            buf.lerp_(new, on)  # on: exactly the new buffer; off: exactly the old one
            grad = torch.add(grad, new, alpha=momentum) if group["nesterov"] else new
        p.add_(grad * lr * on)


class ScheduledAdam(torch.optim.Adam):
    """torch.optim.Adam whose learning rate follows `set_lr_multiplier`: on a GPU (or when its steps are
    captured) a device tensor with capturable=True (the step count lives on the device too), so a
    captured step reads both at every replay; otherwise a number, the arithmetic of plain Adam."""

    def __init__(self, params, *, lr: float, weight_decay: float, device, capturable: bool = False):
        capturable = capturable or torch.device(device).type == "cuda"
        params = list(params)
        wide = any(p.dtype == torch.float64 for p in params)  # a float32 lr would round float64 training's
        super().__init__(params, weight_decay=weight_decay, capturable=capturable,
                         lr=torch.tensor(lr, device=device, dtype=torch.float64 if wide else torch.float32)
                         if capturable else lr)
        if capturable:  # the state made now, not in a capture; the step count in the parameters' precision
            for p in params:  # (torch makes it in the default dtype: float32 bias corrections for float64)
                self.state[p] = {"step": torch.zeros((), dtype=torch.float64 if wide else torch.float32, device=device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        self._base = [lr for _ in self.param_groups]

    def set_lr_multiplier(self, multiplier: float):
        for group, base in zip(self.param_groups, self._base):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base * multiplier)
            else:
                group["lr"] = base * multiplier


class Lookahead:
    """airbench's lookahead over every floating tensor of a module's state (parameters and BatchNorm
    running statistics): `update(d)` moves the slow copy toward the weights, slow ← slow + (1 − d)·
    (weights − slow), and restarts the weights from it; `finish()` leaves the weights equal to the slow
    copy (the steps since the last update are dropped, as in the package). Elementwise, so per seed
    in a fused pack. The slow copy starts as the weights at construction."""

    def __init__(self, module: torch.nn.Module):
        self.lists = {}  # dtype -> (weights, slow copies): one foreach call per dtype
        for t in module.state_dict().values():  # detached views: they share the weights' storage
            if t.is_floating_point():
                live, slow = self.lists.setdefault(t.dtype, ([], []))
                live.append(t)
                slow.append(t.clone())

    @torch.no_grad()
    def update(self, decay: float):
        for live, slow in self.lists.values():
            torch._foreach_lerp_(slow, live, 1.0 - decay)
            torch._foreach_copy_(live, slow)

    @torch.no_grad()
    def finish(self):
        for live, slow in self.lists.values():
            torch._foreach_copy_(live, slow)
