"""One training step of a pack — augment, forward, loss, backward, SGD — eager or as a CUDA graph.

A step takes the pack's (K, B) image indices and the matching per-image augmentation parameters and
returns the (K,) per-seed losses and correct counts, all on the device (no host sync).

`GraphedStep` (GPU only) runs the first steps eagerly on a side stream — they are real training
steps, which also create the SGD momentum buffers — then captures the whole step once and replays it,
copying each step's indices into static buffers. With torch.optim.SGD/Adam the learning rate is a
constant inside a captured graph, so the graph is captured again whenever the scheduler changes it
(once per epoch). A per-step schedule (airbench's) instead trains with `ScheduledSGD`, whose learning
rates live in device tensors that the graph reads at each replay: set before each step, no recapture
(only when the set of trained parameters changes, e.g. when airbench freezes its whitening bias).
If capture fails, the pack falls back to eager steps: slower, never wrong.

`Lookahead` is airbench's slow-weights average, applied between steps (eagerly, a few foreach ops).
"""

from __future__ import annotations

import sys

import torch

from fastseed.kernels.augment import augment
from fastseed.kernels.lsce import protocol_loss_packed


def packed_loss(protocol, logits, targets):
    """(K,) per-seed losses of the protocol (the fused Triton kernel on a GPU): the batch mean, or with
    loss_reduction "sum" the batch sum (airbench), as the mean with weights × B: the kernel then forms
    the summed loss's gradient in float32 before casting it, where ÷B then ×B would lose fp16 bits."""
    scale = logits.shape[1] if protocol.loss_reduction == "sum" else 1
    return protocol_loss_packed(logits, targets, eps=protocol.lsce_eps, lsce_weight=protocol.lsce_weight * scale,
                                ce_weight=protocol.ce_weight * scale)


def augment_pack(protocol, images, idx, params, dtype):
    """Seed k's batch from its (K, B) indices and (K, B) augmentation parameters: (K, B, C, H, W),
    gathered and augmented from the uint8 images in one Triton kernel on a GPU."""
    k, b = idx.shape
    x = augment(images, idx.reshape(-1), *(p.reshape(-1) for p in params), protocol.mean, protocol.std,
                pad=protocol.crop_pad, cutout=protocol.cutout, dtype=dtype, reflect=protocol.pad_mode == "reflect")
    return x.view(k, b, *images.shape[1:])


class EagerStep:
    def __init__(self, protocol, pack, opt, images, labels, dtype):
        self.protocol, self.pack, self.opt = protocol, pack, opt
        self.images, self.labels, self.dtype = images, labels, dtype

    def compute(self, idx, params):
        x, y = augment_pack(self.protocol, self.images, idx, params, self.dtype), self.labels[idx]
        logits = self.pack.forward_train(x)
        losses = packed_loss(self.protocol, logits, y)
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()  # seed k's parameters get the gradient of seed k's loss only
        self.opt.step()
        if self.protocol.loss_reduction == "sum":
            losses = losses / y.shape[1]  # reported per image, whatever the reduction trained on
        return losses.detach(), (logits.detach().argmax(-1) == y).sum(1)

    def __call__(self, idx, params):
        return self.compute(idx, params)

    def new_epoch(self, recapture: bool = True):
        pass


class GraphedStep(EagerStep):
    WARMUP = 3  # eager steps before the first capture (cuDNN/cuBLAS handles, momentum buffers)

    def __init__(self, *args):
        super().__init__(*args)
        self.graph, self.eager_steps, self.failed = None, 0, False
        self.pool = torch.cuda.graph_pool_handle()

    def new_epoch(self, recapture: bool = True):
        if recapture:  # the scheduler has changed a baked-in learning rate, or what trains: capture again
            self.graph = None

    def __call__(self, idx, params):
        if self.failed or (self.graph is not None and idx.shape != self.static_idx.shape):
            return self.compute(idx, params)  # e.g. a last partial batch: eager, the graph stays
        if self.graph is None and self.eager_steps < self.WARMUP:
            self.eager_steps += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.compute(idx, params)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            try:
                self.capture(idx, params)
            except RuntimeError as e:  # capture is best effort; eager is always correct
                print(f"fastseed: CUDA graph capture failed ({str(e).splitlines()[0]}); "
                      f"training this pack eagerly", file=sys.stderr)
                self.failed, self.graph = True, None
                torch.cuda.synchronize()
                return self.compute(idx, params)
        self.static_idx.copy_(idx)
        for static, p in zip(self.static_params, params):
            static.copy_(p)
        self.graph.replay()
        return self.static_out[0].clone(), self.static_out[1].clone()

    def capture(self, idx, params):
        self.graph = None
        self.static_idx, self.static_params = idx.clone(), [p.clone() for p in params]
        self.opt.zero_grad(set_to_none=True)  # gradients are then allocated from the graph's pool
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.static_out = self.compute(self.static_idx, self.static_params)
        self.graph = graph


class ScheduledSGD(torch.optim.Optimizer):
    """torch.optim.SGD (momentum, Nesterov, L2 weight decay added to the gradient) with each group's
    learning rate held in a device tensor, so a captured CUDA graph follows a per-step schedule:
    `set_lr_multiplier(m)` before a step makes that step use lr·m. The update is torch's foreach SGD
    op for op, except the last: the step is multiplied by the lr tensor, then added (two roundings
    where torch's `add_(…, alpha=−lr)` has one). torch's own SGD with a tensor lr is not used: it reads
    the lr back to the host, and its fused CPU kernel got fp16 updates wrong (torch 2.13).
    Parameters without a gradient are skipped (no decay, no momentum), as torch.optim.SGD skips them."""

    def __init__(self, groups, *, momentum: float, nesterov: bool, device):
        super().__init__(groups, dict(lr=0.0, momentum=momentum, nesterov=nesterov, weight_decay=0.0))
        # one lr tensor per group and parameter dtype: float64 for float64 parameters, else float32
        self._lrs = [{work_dtype(p.dtype): None for p in g["params"]} for g in self.param_groups]
        for lrs in self._lrs:
            for dtype in lrs:
                lrs[dtype] = torch.zeros((), dtype=dtype, device=device)
        self.set_lr_multiplier(1.0)

    def set_lr_multiplier(self, multiplier: float):
        for group, lrs in zip(self.param_groups, self._lrs):
            for t in lrs.values():
                t.fill_(-group["lr"] * multiplier)  # in place: a captured graph keeps reading it

    @torch.no_grad()
    def step(self):
        for group, lrs in zip(self.param_groups, self._lrs):
            by_dtype = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_dtype.setdefault(p.dtype, []).append(p)
            for dtype, params in by_dtype.items():
                grads = [p.grad for p in params]
                if group["weight_decay"] != 0:
                    grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
                momentum = group["momentum"]
                if momentum != 0:
                    states = [self.state[p] for p in params]
                    if all("momentum_buffer" in st for st in states):
                        bufs = [st["momentum_buffer"] for st in states]
                        torch._foreach_mul_(bufs, momentum)
                        torch._foreach_add_(bufs, grads)
                    else:  # first step: the buffer is the gradient (torch.optim.SGD's convention)
                        bufs = [torch.clone(g).detach() for g in grads]
                        for st, b in zip(states, bufs):
                            st["momentum_buffer"] = b
                    if group["nesterov"]:
                        grads = torch._foreach_add(grads, bufs, alpha=momentum)
                    else:
                        grads = bufs
                torch._foreach_add_(params, torch._foreach_mul(grads, lrs[work_dtype(dtype)]))


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


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
