"""ImageNet fine-tuning of one seed (PROTOCOLS.md §2): two phases, a DALI pipeline feeding each.

A seed is trained alone (a pack of one): its data order and crops are its own, so K seeds would need
K pipelines, and one ResNet50 at batch 64-128 already fills a GPU. The scan calls `train_finetune`
once per seed with the same pretrained backbone (`load_backbone` once, copied per seed).

Phase 1 trains a new head on a frozen backbone whose BatchNorm stays in train mode (the running
statistics move: Picard's quirk); phase 2 trains everything. Each phase has its own SGD, its own
CosineAnnealingLR stepped every `sched_every` steps, and validation every `eval_every` steps and at
its end. The record's headline is the last validation, its curves are indexed by global step.

A seed takes hours, so it can checkpoint its whole state every few minutes and on request, and resume
from it with the record an uninterrupted run gives (fastseed.engine.checkpoint); progress is reported
per step, so a scan knows its rate long before the first seed ends.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastseed import FastseedError
from fastseed.engine.checkpoint import SeedStopped, load_checkpoint, run_identity, save_checkpoint
from fastseed.engine.provenance import code_version, provenance
from fastseed.engine.train import DTYPES, determinism
from fastseed.kernels.lsce import protocol_loss_reference
from fastseed.models.imagenet import Finetuner, make_head
from fastseed.seeds import Seed
from fastseed.store.record import Record


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
                   log=None, models_out: list | None = None, before_update=None,
                   checkpoint: str | Path | None = None, checkpoint_every_s: float = 600.0,
                   should_stop: Callable[[], bool] | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> Record:
    """Fine-tune `backbone` (left untouched: each seed gets a copy) under `seed`; one Record.

    `checkpoint`: a file for the run's state (fastseed.engine.checkpoint). If it exists the run resumes
    from it (one of another run is refused); the state is saved there every `checkpoint_every_s` seconds
    of training and when `should_stop()` turns true, which is asked after every step and then raises
    `SeedStopped` (without a checkpoint path, it only stops). The caller removes the file once the record
    is committed. `on_progress(done, total)` is called after every step with global step counts (a
    resumed run starts past 0); it costs no device sync. `models_out` receives the trained model;
    `before_update(optimizer)` is called before every update."""
    from fastseed.data.imagenet import train_batches
    seed = seed if isinstance(seed, Seed) else protocol.seed(seed)
    device = torch.device(device)
    amp = amp_dtype(protocol, device, dtype)
    phases = protocol.run_phases()
    total = sum(p.steps for p in phases)
    identity = run_identity(protocol, seed, data) if checkpoint is not None else None
    saved = load_checkpoint(checkpoint, identity) if checkpoint is not None else None
    started = datetime.fromisoformat(saved["started"]) if saved else datetime.now(timezone.utc)
    t0 = time.perf_counter() - (saved["elapsed_s"] if saved else 0.0)  # wall time counts earlier runs too
    with determinism(protocol.deterministic), autotuned(device.type == "cuda" and not protocol.deterministic):
        model = Finetuner(copy.deepcopy(backbone), make_head(protocol.backbone, protocol.classes,
                                                             seed.torch_default("head"), protocol.head_rule))
        if saved:
            model.load_state_dict(saved["model"])
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        forward = torch.compile(model, mode=None if compile == "default" else compile) if compile else model
        layout, io = io_layout(device), (torch.float16 if device.type == "cuda" else torch.float32)
        evals, trains = (saved["evals"], saved["trains"]) if saved else ([], [])
        headline = saved["headline"] if saved else None
        first_phase, first_step = (saved["phase"], saved["step"]) if saved else (0, 0)
        if saved and log:
            log(f"seed {seed.value}: resumed from {checkpoint} at {phases[first_phase].name} step {first_step}")
        if saved and saved["code"] != code_version():  # the record can name one code version only
            logging.getLogger(__name__).warning("checkpoint %s was written by %s; the record names this code, %s",
                                                checkpoint, saved["code"], code_version())
        status, done = "ok", sum(p.steps for p in phases[:first_phase])
        last_save = time.perf_counter()

        def state(index: int, step: int) -> dict:
            """Everything the rest of the run and its record depend on, at the end of `step` of phase `index`."""
            return {"identity": identity, "phase": index, "step": step, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "loss_sum": loss_sum.cpu(), "right": right.cpu(), "seen": seen, "since": since,
                    "evals": evals, "trains": trains, "headline": headline,
                    "elapsed_s": time.perf_counter() - t0, "started": started.isoformat(),
                    "code": code_version()}

        model.train()
        for index in range(first_phase, len(phases)):
            phase = phases[index]
            start = first_step if index == first_phase else 0
            model.freeze_backbone(phase.train == "head")
            opt, sched = _optimizer(model, phase, len(data.train.files))
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            right = torch.zeros((), device=device, dtype=torch.int64)
            seen = since = 0
            if saved and index == first_phase:
                opt.load_state_dict(saved["optimizer"])
                sched.load_state_dict(saved["scheduler"])
                loss_sum.copy_(saved["loss_sum"]), right.copy_(saved["right"])
                seen, since = saved["seen"], saved["since"]
            batches = train_batches(data.train, seed, index, phase.batch_size, phase.steps, device, io,
                                    layout=layout, num_threads=num_threads, size=protocol.image_size, start=start)
            for step, (x, y) in enumerate(batches, start=start + 1):
                with _autocast(device, amp):
                    logits = forward(_as_nchw(x, layout))
                loss = protocol_loss_reference(logits, y, eps=phase.lsce_eps, lsce_weight=phase.lsce_weight,
                                               ce_weight=phase.ce_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if before_update is not None:
                    before_update(opt)
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
                if on_progress is not None:
                    on_progress(done + step, total)
                # a stop after the last step changes nothing: the record is returned, for the caller to commit
                stop = should_stop is not None and done + step < total and should_stop()
                written = False
                if checkpoint is not None and (stop or time.perf_counter() - last_save >= checkpoint_every_s):
                    written = _save(checkpoint, state(index, step))
                    last_save = time.perf_counter()
                if stop:
                    raise SeedStopped(seed.value, done + step, total, Path(checkpoint) if written else None)
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


def _save(path, state: dict) -> bool:
    """Save a checkpoint; a failure (disk full, …) is a warning, not the end of hours of training: the
    previous checkpoint stays valid and the next save tries again."""
    try:
        save_checkpoint(path, state)
        return True
    except OSError as e:
        logging.getLogger(__name__).warning("checkpoint %s not written (%s); the previous one stays", path, e)
        return False


def load_finetune(protocol, data_dir, weights, log: Callable[[str], None] = print):
    """The indexed ImageNet folders (the protocol's classes) and the pretrained backbone."""
    from fastseed.data.imagenet import index_imagenet
    from fastseed.models.imagenet import load_backbone
    root = Path(data_dir or Path(os.environ.get("FASTSEED_DATA") or "data") / "imagenet")
    data = ImagenetData(index_imagenet(root, "train", classes=protocol.classes),
                        index_imagenet(root, "val", classes=protocol.classes))
    if len(data.train.wnids) != protocol.classes:
        raise FastseedError(f"{root}: {len(data.train.wnids)} classes, {protocol.name} needs "
                            f"{protocol.classes} (use --classes to train on fewer)")
    for split, index in (("train", data.train), ("val", data.val)):
        if index.skipped:
            path, why = index.skipped[0]
            log(f"{split}: skipped {len(index.skipped)} unreadable file(s), e.g. {path}: {why}")
    backbone, report = load_backbone(protocol.backbone, weights)
    log(f"{weights}: {report.loaded} tensors loaded"
        + (f", {len(report.dropped)} classifier keys dropped" if report.dropped else "")
        + (f", {len(report.unexpected)} unexpected keys ignored (e.g. {report.unexpected[0]})"
           if report.unexpected else ""))
    return data, backbone
