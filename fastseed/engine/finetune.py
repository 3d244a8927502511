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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastseed import FastseedError
from fastseed.engine.checkpoint import SeedStopped, load_checkpoint, run_identity, save_checkpoint
from fastseed.engine.graphs import on_device
from fastseed.engine.provenance import code_version, provenance
from fastseed.engine.train import DTYPES, autotuned, determinism
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
    """Autocast dtype: the protocol's on a GPU; float32 (no autocast) on the CPU unless asked. float16
    is refused: its gradients underflow without loss scaling, which these fine-tunes do not do
    (bfloat16 has float32's range and needs none)."""
    amp = DTYPES[dtype] if dtype is not None else DTYPES[protocol.dtype] if device.type == "cuda" else torch.float32
    if amp == torch.float16:
        raise FastseedError(f"{protocol.name}: float16 autocast needs loss scaling, which the ImageNet fine-tunes do "
                            f"not do; use bfloat16 (the presets' own) or float32")
    return amp


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
    """Accuracy, mean CE loss and the predicted class of every validation image (in index order).
    The pipeline emits images in `dtype`, the autocast dtype: one rounding, not two (data/imagenet.py
    makes bfloat16 from float32)."""
    from fastseed.data.imagenet import eval_batches
    model.eval()
    layout, preds = io_layout(device), []
    loss = torch.zeros((), device=device, dtype=torch.float64)  # summed on the device: no sync per batch
    for x, y in eval_batches(val, protocol.eval_batch_size, device, dtype, layout=layout, num_threads=num_threads,
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
    `before_update(optimizer)` is called before every update. Everything runs under the device's own
    context, with cuDNN autotuning on a GPU unless the protocol is deterministic."""
    seed = seed if isinstance(seed, Seed) else protocol.seed(seed)
    device = torch.device(device)
    amp = amp_dtype(protocol, device, dtype)
    with on_device(device), determinism(protocol.deterministic), \
            autotuned(device.type == "cuda" and not protocol.deterministic):
        run = SeedRun(protocol, seed, data, device, amp, checkpoint, log)
        run.build(backbone, compile)
        hooks = Hooks(num_threads, before_update, checkpoint_every_s, should_stop, on_progress)
        for index in range(run.first_phase, len(run.phases)):
            if not run.train_phase(index, hooks):
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    if models_out is not None:
        models_out.append(run.model)
    return run.record()


@dataclass(frozen=True)
class Hooks:
    """What the caller asks of a run besides training: loader threads, a look before each update,
    checkpoints, a stop, progress."""
    num_threads: int
    before_update: Callable | None
    checkpoint_every_s: float
    should_stop: Callable[[], bool] | None
    on_progress: Callable[[int, int], None] | None


class SeedRun:
    """One seed's fine-tune: where it is (phase, step), what its record and checkpoint are made of
    (model, optimiser, scheduler, running sums, curves, the last validation), and the phases' steps."""

    def __init__(self, protocol, seed: Seed, data: ImagenetData, device: torch.device, amp: torch.dtype,
                 checkpoint, log):
        self.protocol, self.seed, self.data, self.device, self.amp = protocol, seed, data, device, amp
        self.checkpoint, self.log = checkpoint, log
        self.phases = protocol.run_phases()
        self.total = sum(p.steps for p in self.phases)
        self.identity = run_identity(protocol, seed, data) if checkpoint is not None else None
        saved = self.saved = load_checkpoint(checkpoint, self.identity) if checkpoint is not None else None
        self.started = datetime.fromisoformat(saved["started"]) if saved else datetime.now(timezone.utc)
        self.t0 = time.perf_counter() - (saved["elapsed_s"] if saved else 0.0)  # earlier runs' time counts too
        self.evals, self.trains = (saved["evals"], saved["trains"]) if saved else ([], [])
        self.headline = saved["headline"] if saved else None
        self.first_phase, self.first_step = (saved["phase"], saved["step"]) if saved else (0, 0)
        self.status, self.done = "ok", sum(p.steps for p in self.phases[:self.first_phase])
        self.last_save = time.perf_counter()
        if saved and log:
            log(f"seed {seed.value}: resumed from {checkpoint} at {self.phases[self.first_phase].name} step "
                f"{self.first_step}")
        if saved and saved["code"] != code_version():  # the record can name one code version only
            logging.getLogger(__name__).warning("checkpoint %s was written by %s; the record names this code, %s",
                                                checkpoint, saved["code"], code_version())

    def build(self, backbone: torch.nn.Module, compile: str | None):
        """The seed's model: a copy of the backbone and a head drawn from its `head` stream (or the saved
        weights), on the device, channels-last on a GPU; `compile`d if asked."""
        p = self.protocol
        self.model = Finetuner(copy.deepcopy(backbone), make_head(p.backbone, p.classes, self.seed.torch_default("head"),
                                                                  p.head_rule))
        if self.saved:
            self.model.load_state_dict(self.saved["model"])
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.forward = (torch.compile(self.model, mode=None if compile == "default" else compile) if compile
                        else self.model)
        self.model.train()

    def start_phase(self, index: int) -> int:
        """The phase's optimiser, scheduler and running sums (from the checkpoint when it resumes
        there); the step it starts after."""
        phase = self.phases[index]
        self.model.freeze_backbone(phase.train == "head")
        self.opt, self.sched = _optimizer(self.model, phase, len(self.data.train.files))
        self.loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.right = torch.zeros((), device=self.device, dtype=torch.int64)
        self.seen = self.since = 0
        if not (self.saved and index == self.first_phase):
            return 0
        self.opt.load_state_dict(self.saved["optimizer"])
        self.sched.load_state_dict(self.saved["scheduler"])
        self.loss_sum.copy_(self.saved["loss_sum"]), self.right.copy_(self.saved["right"])
        self.seen, self.since = self.saved["seen"], self.saved["since"]
        return self.first_step

    def train_phase(self, index: int, hooks: Hooks) -> bool:
        """The phase's steps; False when the loss diverged (the run ends there)."""
        from fastseed.data.imagenet import train_batches
        phase, start = self.phases[index], self.start_phase(index)
        layout = io_layout(self.device)
        batches = train_batches(self.data.train, self.seed, index, phase.batch_size, phase.steps, self.device,
                                self.amp, layout=layout, num_threads=hooks.num_threads, size=self.protocol.image_size,
                                start=start)
        for step, (x, y) in enumerate(batches, start=start + 1):
            self.update(phase, step, x, y, layout, hooks.before_update)
            if (step % phase.eval_every == 0 or step == phase.steps) and not self.validate(phase, step, hooks):
                self.status = "diverged"
                return False
            if hooks.on_progress is not None:
                hooks.on_progress(self.done + step, self.total)
            self.maybe_stop(index, step, hooks)
        self.done += phase.steps
        return True

    def update(self, phase, step: int, x, y, layout: str, before_update):
        with _autocast(self.device, self.amp):
            logits = self.forward(_as_nchw(x, layout))
        loss = protocol_loss_reference(logits, y, eps=phase.lsce_eps, lsce_weight=phase.lsce_weight,
                                       ce_weight=phase.ce_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if before_update is not None:
            before_update(self.opt)
        self.opt.step()
        if step % phase.sched_every == 0:
            self.sched.step()
        self.loss_sum += loss.detach().double()
        self.right += (logits.detach().argmax(-1) == y).sum()
        self.seen, self.since = self.seen + y.numel(), self.since + 1

    def validate(self, phase, step: int, hooks: Hooks) -> bool:
        """The training curve's point and a validation; False when the training loss is not finite."""
        mean = (self.loss_sum / self.since).item()  # the host waits for the GPU only here
        self.trains.append([self.done + step, mean, self.right.item() / self.seen])
        self.loss_sum.zero_(), self.right.zero_()
        self.seen = self.since = 0
        if not math.isfinite(mean):
            return False
        self.headline = evaluate(self.model, self.protocol, self.data.val, self.device, self.amp, hooks.num_threads)
        self.evals.append([self.done + step, self.headline[0], self.headline[1]])
        if self.log:
            self.log(f"seed {self.seed.value} {phase.name} step {step}/{phase.steps}: train loss {mean:.4f}, "
                     f"val acc {100 * self.headline[0]:.2f}%")
        return True

    def maybe_stop(self, index: int, step: int, hooks: Hooks):
        """Save a checkpoint when it is time or a stop is asked; raise SeedStopped on a stop (one after
        the last step changes nothing: the record is returned, for the caller to commit)."""
        stop = hooks.should_stop is not None and self.done + step < self.total and hooks.should_stop()
        written = False
        if self.checkpoint is not None and (stop or time.perf_counter() - self.last_save >= hooks.checkpoint_every_s):
            written = _save(self.checkpoint, self.state(index, step))
            self.last_save = time.perf_counter()
        if stop:
            raise SeedStopped(self.seed.value, self.done + step, self.total, Path(self.checkpoint) if written else None)

    def state(self, index: int, step: int) -> dict:
        """Everything the rest of the run and its record depend on, at the end of `step` of phase `index`."""
        return {"identity": self.identity, "phase": index, "step": step, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "loss_sum": self.loss_sum.cpu(), "right": self.right.cpu(), "seen": self.seen, "since": self.since,
                "evals": self.evals, "trains": self.trains, "headline": self.headline,
                "elapsed_s": time.perf_counter() - self.t0, "started": self.started.isoformat(),
                "code": code_version()}

    def record(self) -> Record:
        p, data, n_val = self.protocol, self.data, len(self.data.val.files)
        headline = self.headline
        if self.status != "ok" or headline is None:
            filler = np.full(n_val, np.iinfo(label_dtype(p.classes)).max, label_dtype(p.classes))
            headline = (math.nan, math.nan, filler.tobytes())
        return Record(
            protocol=p.name, protocol_hash=p.hash, seed=self.seed.value, status=self.status,
            test_acc=headline[0], test_loss=headline[1], headline_epoch=p.headline_epoch,
            eval_curve=self.evals, train_curve=self.trains, predictions=headline[2],
            wall_time_s=time.perf_counter() - self.t0,
            pack={"strategy": "sequential", "size": 1, "slot": 0, "seeds": [self.seed.value]},
            provenance=provenance(self.device, self.amp, started=self.started, fixed=sorted(self.seed.fixed),
                                  fix_seed=self.seed.fix_seed, train_images=len(data.train.files), val_images=n_val,
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
