"""One training step of a pack — augment, forward, loss, backward, optimiser — eager or as a CUDA graph.

A step takes the pack's (K, B) image indices and the matching per-image augmentation parameters and
returns the (K,) per-seed losses and correct counts, all on the device (no host sync).

`GraphedStep` runs the first steps eagerly on a side stream — they are real training steps, which also
let cuDNN/cuBLAS make their handles and Adam its state — then captures the whole step ONCE and replays
it for the rest of the run, copying each step's indices into static buffers. Its invariant: nothing a
schedule changes is baked into the capture. Learning rates and frozen parameters live in device tensors
the graph reads at every replay (engine/optim.py), so the built-in recipes capture once per pack; a
capture again is asked for only when the set of trained parameters changes in a way the optimiser
cannot switch in a tensor (a user model's `frozen_parameters` hook under Adam), into a fresh pool.
A step of another shape (a last partial batch) runs eagerly beside the graph. A capture that fails
leaves the caller's stream current and the pack trains eagerly (slower, never wrong); one that runs
out of memory raises, as any out-of-memory does (the scan halves the pack, autopack ends its search).
It counts its captures, replays and eager steps; each record's provenance carries them (`report`).
"""

from __future__ import annotations

import sys

import torch

from fastseed.engine.graphs import capture, is_oom
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
        self.eager_steps = 0

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
        self.eager_steps += 1
        return self.compute(idx, params)

    def new_epoch(self, recapture: bool = False):
        pass

    def report(self) -> dict:
        """How the pack's steps ran, for its records' provenance."""
        return {"graphed": False, "captures": 0, "replays": 0, "eager_steps": self.eager_steps, "failure": None}


class GraphedStep(EagerStep):
    WARMUP = 3  # eager steps before the first capture (cuDNN/cuBLAS handles, Adam's state)

    def __init__(self, protocol, pack, opt, images, labels, dtype, api=torch.cuda):
        super().__init__(protocol, pack, opt, images, labels, dtype)
        self.api, self.device = api, images.device
        self.shape = None  # (K, B) of the captured step: the pack's full batch
        self.graph, self.stale, self.warm = None, False, 0
        self.captures = self.replays = 0
        self.failure = None  # a failed capture's first line: the pack trains eagerly from then on
        self.stream = api.Stream(device=self.device)  # warm-up and capture happen here, off the caller's

    def new_epoch(self, recapture: bool = False):
        if recapture and self.graph is not None:  # what trains changed: one eager step, then capture again
            self.stale, self.warm = True, self.WARMUP - 1

    def __call__(self, idx, params):
        if self.shape is None:
            self.shape = (idx.shape[0], self.protocol.batch_size)
        if self.failure is not None or tuple(idx.shape) != self.shape:
            return super().__call__(idx, params)  # e.g. a last partial batch: eager, the graph stays
        if self.warm < self.WARMUP:
            self.warm += 1
            return self.on_side_stream(idx, params)
        if (self.graph is None or self.stale) and not self.capture(idx, params):
            return super().__call__(idx, params)
        self.static_idx.copy_(idx)
        for static, p in zip(self.static_params, params):
            static.copy_(p)
        self.graph.replay()
        self.replays += 1
        return self.static_out[0].clone(), self.static_out[1].clone()

    def on_side_stream(self, idx, params):
        self.eager_steps += 1
        self.stream.wait_stream(self.api.current_stream(self.device))
        with self.api.stream(self.stream):
            out = self.compute(idx, params)
        self.api.current_stream(self.device).wait_stream(self.stream)
        return out

    def capture(self, idx, params) -> bool:
        """Capture the step (graphs.capture: a fresh pool; the previous graph, if any, lives until the new
        one is made). False when the capture failed: said once, and the pack goes on eagerly."""
        self.static_idx, self.static_params = idx.clone(), [p.clone() for p in params]
        self.opt.zero_grad(set_to_none=True)  # the gradients are then allocated in the graph's pool
        try:
            graph, out = capture(self.api, lambda: self.compute(self.static_idx, self.static_params), self.device,
                                 self.stream)
        except RuntimeError as e:
            if is_oom(e):
                raise
            self.failure = (str(e).strip().splitlines() or [type(e).__name__])[0]
            print(f"fastseed: CUDA graph capture failed ({self.failure}); training this pack eagerly",
                  file=sys.stderr)
            return False
        self.graph, self.static_out, self.stale = graph, out, False
        self.captures += 1
        return True

    def report(self) -> dict:
        return {"graphed": self.captures > 0 and self.failure is None, "captures": self.captures,
                "replays": self.replays, "eager_steps": self.eager_steps, "failure": self.failure}
