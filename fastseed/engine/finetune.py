"""ImageNet fine-tuning of one seed (PROTOCOLS.md §2): two phases, a DALI pipeline feeding each.

A seed is trained alone (a pack of one): its data order and crops are its own, so K seeds would need
K pipelines, and one ResNet50 at batch 64-128 already fills a GPU. The scan calls `train_finetune`
once per seed with the same pretrained backbone (`load_backbone` once, copied per seed).

Phase 1 trains a new head on a frozen backbone whose BatchNorm stays in train mode (the running
statistics move: Picard's quirk); phase 2 trains everything. Each phase has its own SGD, its own
CosineAnnealingLR stepped every `sched_every` steps, and validation every `eval_every` steps and at
its end. The record's headline is the last validation, its curves are indexed by global step.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F

from fastseed.engine.provenance import provenance
from fastseed.engine.train import DTYPES, determinism
from fastseed.kernels.lsce import protocol_loss_reference
from fastseed.models.imagenet import Finetuner, make_head
from fastseed.seeds import Seed
from fastseed.store import Record


@dataclass(frozen=True)
class ImagenetData:
    train: object  # fastseed.data.imagenet.ImageIndex
    val: object


def label_dtype(classes: int):
    """Predictions are stored as uint8 for < 255 classes (255 marks "no prediction"), else uint16."""
    return np.uint8 if classes < 255 else np.uint16


def amp_dtype(protocol, device: torch.device, dtype: str | None = None) -> torch.dtype:
    """Autocast dtype: the protocol's on a GPU; float32 (no autocast) on the CPU unless asked."""
    if dtype is not None:
        return DTYPES[dtype]
    return DTYPES[protocol.dtype] if device.type == "cuda" else torch.float32


def io_layout(device: torch.device) -> str:
    # On a GPU DALI emits NHWC and a permute turns it into a channels-last NCHW view (no copy),
    # the layout cuDNN's fastest convolutions want; the CPU keeps plain NCHW.
    return "NHWC" if device.type == "cuda" else "NCHW"


def _as_nchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if layout == "NHWC" else x


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype in (torch.float16, torch.bfloat16))


@torch.no_grad()
def evaluate(model, protocol, val, device, dtype, num_threads: int) -> tuple[float, float, bytes]:
    """Accuracy, mean CE loss and the predicted class of every validation image (in index order)."""
    from fastseed.data.imagenet import eval_batches
    model.eval()
    layout, preds = io_layout(device), []
    loss = torch.zeros((), device=device, dtype=torch.float64)  # summed on the device: no sync per batch
    io = torch.float16 if device.type == "cuda" else torch.float32
    for x, y in eval_batches(val, protocol.eval_batch_size, device, io, layout=layout, num_threads=num_threads,
                             size=protocol.image_size):
        with _autocast(device, dtype):
            logits = model(_as_nchw(x, layout)).float()
        loss += F.cross_entropy(logits, y, reduction="sum").double()
        preds.append(logits.argmax(-1))
    model.train()
    preds, labels = torch.cat(preds).cpu(), torch.from_numpy(np.array(val.labels))  # a copy: the index is read-only
    right, n = (preds == labels).sum().item(), len(labels)
    loss = loss.item() / n
    return right / n, loss, preds.numpy().astype(label_dtype(protocol.classes)).tobytes()


@contextmanager
def autotuned(enabled: bool):
    """cuDNN picks the fastest convolution per shape: the shapes of a fine-tune never change."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = saved or enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _optimizer(model: Finetuner, phase, train_images: int):
    params = model.head.parameters() if phase.train == "head" else model.parameters()
    opt = torch.optim.SGD(params, lr=phase.lr, momentum=phase.momentum, nesterov=phase.nesterov,
                          weight_decay=phase.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=phase.resolved_t_max(train_images),
                                                       eta_min=phase.eta_min)
    return opt, sched


def train_finetune(protocol, seed: int | Seed, data: ImagenetData, backbone: torch.nn.Module, device, *,
                   dtype: str | None = None, compile: str | None = None, num_threads: int = 4,
                   log=None, models_out: list | None = None, on_step=None) -> Record:
    """Fine-tune `backbone` (left untouched: each seed gets a copy) under `seed`; one Record.

    `models_out` receives the trained model; `on_step(optimizer)` is called before every update."""
    from fastseed.data.imagenet import train_batches
    seed = seed if isinstance(seed, Seed) else protocol.seed(seed)
    device = torch.device(device)
    amp = amp_dtype(protocol, device, dtype)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    with determinism(protocol.deterministic), autotuned(device.type == "cuda" and not protocol.deterministic):
        model = Finetuner(copy.deepcopy(backbone), make_head(protocol.backbone, protocol.classes,
                                                             seed.torch_default("head"), protocol.head_rule))
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        forward = torch.compile(model, mode=None if compile == "default" else compile) if compile else model
        layout, io = io_layout(device), (torch.float16 if device.type == "cuda" else torch.float32)
        evals, trains, status, done = [], [], "ok", 0
        headline = None
        model.train()
        for index, phase in enumerate(protocol.run_phases()):
            model.freeze_backbone(phase.train == "head")
            opt, sched = _optimizer(model, phase, len(data.train.files))
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            right = torch.zeros((), device=device, dtype=torch.int64)
            seen = since = 0
            batches = train_batches(data.train, seed, index, phase.batch_size, phase.steps, device, io,
                                    layout=layout, num_threads=num_threads, size=protocol.image_size)
            for step, (x, y) in enumerate(batches, start=1):
                with _autocast(device, amp):
                    logits = forward(_as_nchw(x, layout))
                loss = protocol_loss_reference(logits, y, eps=phase.lsce_eps, lsce_weight=phase.lsce_weight,
                                               ce_weight=phase.ce_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if on_step is not None:
                    on_step(opt)
                opt.step()
                if step % phase.sched_every == 0:
                    sched.step()
                loss_sum += loss.detach().double()
                right += (logits.detach().argmax(-1) == y).sum()
                seen, since = seen + y.numel(), since + 1
                if step % phase.eval_every == 0 or step == phase.steps:
                    mean = (loss_sum / since).item()  # the host waits for the GPU only here
                    trains.append([done + step, mean, right.item() / seen])
                    loss_sum.zero_(), right.zero_()
                    seen = since = 0
                    if not math.isfinite(mean):
                        status = "diverged"
                        break
                    headline = evaluate(model, protocol, data.val, device, amp, num_threads)
                    evals.append([done + step, headline[0], headline[1]])
                    if log:
                        log(f"seed {seed.value} {phase.name} step {step}/{phase.steps}: train loss {mean:.4f}, "
                            f"val acc {100 * headline[0]:.2f}%")
            if status != "ok":
                break
            done += phase.steps
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    if models_out is not None:
        models_out.append(model)
    n_val = len(data.val.files)
    if status != "ok" or headline is None:
        filler = np.full(n_val, np.iinfo(label_dtype(protocol.classes)).max, label_dtype(protocol.classes))
        headline = (math.nan, math.nan, filler.tobytes())
    return Record(
        protocol=protocol.name, protocol_hash=protocol.hash, seed=seed.value, status=status,
        test_acc=headline[0], test_loss=headline[1], headline_epoch=protocol.headline_epoch,
        eval_curve=evals, train_curve=trains, predictions=headline[2],
        wall_time_s=time.perf_counter() - t0,
        pack={"strategy": "sequential", "size": 1, "slot": 0, "seeds": [seed.value]},
        provenance=provenance(device, amp, started=started, fixed=sorted(seed.fixed), fix_seed=seed.fix_seed,
                              train_images=len(data.train.files), val_images=n_val,
                              skipped_images=len(data.train.skipped) + len(data.val.skipped)))
