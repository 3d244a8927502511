"""Training one seed, and the pack API the scan calls.

`train_pack(protocol, seeds, data, device)` returns one Record per seed. Here the seeds of a pack train
one after another (strategy "sequential"); fused strategies slot in behind the same call. A seed's
trajectory depends only on (protocol, seed, device, dtype): never on its pack partners.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from fastseed import FastseedError
from fastseed.engine.plan import plan_epoch
from fastseed.engine.provenance import provenance
from fastseed.kernels.augment import augment_reference, normalize
from fastseed.kernels.lsce import protocol_loss_reference
from fastseed.models import build_model
from fastseed.seeds import Seed
from fastseed.store import Record

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
          "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FastseedError("--device cuda: no CUDA GPU is visible to torch (use --device cpu or auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise FastseedError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def compute_dtype(protocol, device: torch.device, dtype: str | None = None) -> torch.dtype:
    """The protocol's dtype on a GPU; float32 on the CPU (fp16 convolutions there are slow and
    not what the recipe was tuned with), unless asked explicitly."""
    if dtype is not None:
        return DTYPES[dtype]
    return DTYPES[protocol.dtype] if device.type == "cuda" else torch.float32


def build(protocol, seed: Seed, device, dtype):
    """Model (initialised from the seed's init stream, on the CPU, so init is device-independent),
    its SGD optimiser and the per-epoch LambdaLR."""
    with seed.torch_default("init"):
        model = build_model(protocol)
    model.set_dtype(dtype).to(device=device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                          nesterov=protocol.nesterov, weight_decay=protocol.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, protocol.lr_multiplier)
    return model, opt, sched


def subset(protocol, data):
    """The protocol's slice of the data set (first N images in dataset order)."""
    return (data.train_x[: protocol.train_size], data.train_y[: protocol.train_size],
            data.test_x[: protocol.test_size], data.test_y[: protocol.test_size])


@torch.no_grad()
def evaluate(model, protocol, images, labels, dtype):
    """(accuracy, mean CE loss, predicted class per image as uint8) over the test set."""
    model.eval()
    loss, correct, preds = torch.zeros((), device=images.device, dtype=torch.float64), 0, []
    for i in range(0, images.shape[0], protocol.eval_batch_size):
        x = normalize(images[i: i + protocol.eval_batch_size], protocol.mean, protocol.std, dtype)
        y = labels[i: i + protocol.eval_batch_size]
        logits = model(x.contiguous(memory_format=torch.channels_last)).float()
        loss += F.cross_entropy(logits, y, reduction="sum").double()
        preds.append(logits.argmax(1))
    model.train()
    preds = torch.cat(preds)
    n = images.shape[0]
    return (preds == labels).sum().item() / n, loss.item() / n, preds.to(torch.uint8).cpu().numpy().tobytes()


def train_seed(protocol, seed: Seed, data, device: torch.device, dtype: torch.dtype,
               pack: dict, model_out: dict | None = None) -> Record:
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    train_x, train_y, test_x, test_y = subset(protocol, data)
    model, opt, sched = build(protocol, seed, device, dtype)
    eval_curve, train_curve, headline, status = [], [], None, "ok"
    B, n = protocol.batch_size, train_x.shape[0]
    for epoch in range(protocol.epochs):
        plan = plan_epoch(protocol, seed, epoch, n, size=train_x.shape[-1]).to(device)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for step in range(plan.order.shape[0] // B):
            idx = plan.order[step * B: (step + 1) * B]
            x = augment_reference(train_x, idx, plan.dy[idx], plan.dx[idx], plan.flip[idx], plan.cy[idx],
                                  plan.cx[idx], protocol.mean, protocol.std, pad=protocol.crop_pad,
                                  cutout=protocol.cutout, dtype=dtype)
            y = train_y[idx]
            logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = protocol_loss_reference(logits, y, eps=protocol.lsce_eps,
                                           lsce_weight=protocol.lsce_weight, ce_weight=protocol.ce_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double()
            correct += (logits.detach().argmax(1) == y).sum()
        sched.step()
        steps = plan.order.shape[0] // B
        mean_loss = loss_sum.item() / steps
        train_curve.append([epoch, mean_loss, correct.item() / (steps * B)])
        if not math.isfinite(mean_loss):
            status = "diverged"  # a NaN/inf loss: stop this seed, keep what it logged
            break
        if epoch in protocol.eval_epochs:
            acc, tloss, preds = evaluate(model, protocol, test_x, test_y, dtype)
            eval_curve.append([epoch, acc, tloss])
            if epoch == protocol.headline_epoch:
                headline = (acc, tloss, preds)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if headline is None:  # diverged before the headline evaluation
        headline = (float("nan"), float("nan"), bytes([255]) * test_x.shape[0])
    if model_out is not None:
        model_out[seed.value] = model
    return Record(
        protocol=protocol.name, protocol_hash=protocol.hash, seed=seed.value, status=status,
        test_acc=headline[0], test_loss=headline[1], headline_epoch=protocol.headline_epoch,
        eval_curve=eval_curve, train_curve=train_curve, predictions=headline[2],
        wall_time_s=time.perf_counter() - t0, pack=pack,
        provenance=provenance(device, dtype, started=started, fixed=sorted(seed.fixed),
                              fix_seed=seed.fix_seed),
    )


def train_pack(protocol, seeds: Iterable[int | Seed], data, device, *, dtype: str | None = None,
               on_record: Callable[[Record], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> list[Record]:
    """Train a pack of seeds and return their records (in the order given).

    `on_record` is called as each seed finishes (the scan commits it there, so a crash loses only
    seeds in flight); `should_stop` is polled between seeds for a clean early exit."""
    device = torch.device(device)
    torch_dtype = compute_dtype(protocol, device, dtype)
    seeds = [s if isinstance(s, Seed) else Seed(s) for s in seeds]
    layout = [s.value for s in seeds]
    records = []
    for slot, seed in enumerate(seeds):
        if should_stop():
            break
        pack = {"strategy": "sequential", "size": len(seeds), "slot": slot, "seeds": layout}
        record = train_seed(protocol, seed, data, device, torch_dtype, pack)
        if on_record is not None:
            on_record(record)
        records.append(record)
    return records
