"""One training step of a pack — augment, forward, loss, backward, SGD — eager or as a CUDA graph.

A step takes the pack's (K, B) image indices and the matching per-image augmentation parameters and
returns the (K,) per-seed losses and correct counts, all on the device (no host sync).

`GraphedStep` (GPU only) runs the first steps eagerly on a side stream — they are real training
steps, which also create the SGD momentum buffers — then captures the whole step once and replays it,
copying each step's indices into static buffers. The learning rate is a constant inside a captured
graph, so the graph is captured again whenever the scheduler changes it (once per epoch). If capture
fails, the pack falls back to eager steps: slower, never wrong.
"""

from __future__ import annotations

import sys

import torch

from fastseed.kernels.augment import augment
from fastseed.kernels.lsce import protocol_loss_packed


def packed_loss(protocol, logits, targets):
    """(K,) per-seed batch-mean losses of the protocol (the fused Triton kernel on a GPU)."""
    return protocol_loss_packed(logits, targets, eps=protocol.lsce_eps, lsce_weight=protocol.lsce_weight,
                                ce_weight=protocol.ce_weight)


def augment_pack(protocol, images, idx, params, dtype):
    """Seed k's batch from its (K, B) indices and (K, B) augmentation parameters: (K, B, C, H, W),
    gathered and augmented from the uint8 images in one Triton kernel on a GPU."""
    k, b = idx.shape
    x = augment(images, idx.reshape(-1), *(p.reshape(-1) for p in params), protocol.mean, protocol.std,
                pad=protocol.crop_pad, cutout=protocol.cutout, dtype=dtype)
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
        return losses.detach(), (logits.detach().argmax(-1) == y).sum(1)

    def __call__(self, idx, params):
        return self.compute(idx, params)

    def new_epoch(self):
        pass


class GraphedStep(EagerStep):
    WARMUP = 3  # eager steps before the first capture (cuDNN/cuBLAS handles, momentum buffers)

    def __init__(self, *args):
        super().__init__(*args)
        self.graph, self.eager_steps, self.failed = None, 0, False
        self.pool = torch.cuda.graph_pool_handle()

    def new_epoch(self):
        self.graph = None  # the scheduler has changed the learning rate: capture again

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
