"""Training a pack of seeds, and the API the scan calls.

`train_pack(protocol, seeds, data, device, strategy=…)` returns one Record per seed. Every strategy
runs the same loop over a pack model (engine/pack.py): "sequential" trains the seeds one at a time
(the reference), "fused" as one grouped model, "streams" as replicas on their own CUDA streams.

A seed's run is the same computation on the same random draws whatever its partners or slot: in
float64 on the CPU its record is the same to ~1e-9 (tests/engine/test_pack.py). In float32 or fp16 the
rounding of grouped and plain convolutions differs, training amplifies it, and a packed seed's result
is another sample of the same distribution (tests/engine/test_pack_distribution.py), not the same
number: smoke's seed 1 scored 36.65 % alone and 35.65 % in a fused pack of 4 (float32). What holds
exactly is replay: the same seed in the same layout (strategy, pack, slot, partners), which the record
keeps, on the same device.

The engine knows no model by name: a model's hooks (fastseed/models/registry.py) fit layers to the
data (airbench's whitening) and freeze parameters by epoch (its whitening bias). The airbench recipe
(`fast94`) also brings, all per seed and elementwise or per-channel, so a fused pack stays K
independent runs: parameter groups (BatchNorm biases at bias_scaler × the lr), a per-step lr
(engine/schedule.py), a fractional last epoch, lookahead and test-time augmentation.

On a GPU a pack's step is captured once as a CUDA graph and replayed for the whole run (engine/step.py):
every learning rate, per step or per epoch, and every frozen parameter lives in a device tensor of the
optimiser (engine/optim.py), never in a number a capture would bake in; the pack runs under its
device's context (engine/graphs.py: on_device).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from fastseed import FastseedError
from fastseed.engine.graphs import inductor_graphs, on_device, use_graphs
from fastseed.engine.optim import Lookahead, ScheduledAdam, ScheduledSGD
from fastseed.engine.pack import DEFAULT_STRATEGY, get_strategy
from fastseed.engine.plan import plan_epoch
from fastseed.engine.provenance import provenance
from fastseed.engine.schedule import lookahead_decay, lr_at, sgd_hyperparameters
from fastseed.engine.step import EagerStep, GraphedStep
from fastseed.kernels.augment import normalize
from fastseed.models import create_model, set_dtype
from fastseed.seeds import Seed
from fastseed.store.record import Record, encode_logits

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
          "float64": torch.float64}
AUGMENT_PARAMS = ("dy", "dx", "flip", "cy", "cx")


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


def init_model(protocol, seed: Seed):
    """A seed's initial model, built on the CPU from its init stream, so init is device-independent."""
    with seed.torch_default("init"):
        return create_model(protocol)


@torch.no_grad()
def fit_to_data(protocol, models: list, images: torch.Tensor | None):
    """Weights that come from the training data, not from a seed (the model's `fit_to_data` hook:
    airbench's whitening conv): fitted once, on the first model, and loaded into every seed's."""
    hook = getattr(models[0], "fit_to_data", None)
    if hook is None:
        return
    if images is None:
        raise FastseedError(f"protocol {protocol.name!r}: its model fits layers to the training images; "
                            f"none were given")
    fitted = hook(images, protocol)
    for m in models:
        state = m.state_dict()  # tensors sharing the model's storage: copy_ writes into the model
        unknown = sorted(set(fitted) - set(state))
        if unknown:
            raise FastseedError(f"model {protocol.model}: fit_to_data returned {', '.join(unknown)}, "
                                f"which the model does not have")
        for name, value in fitted.items():
            state[name].copy_(value)


def seed_name(pack_name: str) -> str:
    """A pack parameter's name in its seed's own model: "model.whiten.bias" (Single, Fused) and
    "models.3.whiten.bias" (Replicas) are both "whiten.bias"."""
    parts = pack_name.split(".")
    return ".".join(parts[2:] if parts[0] == "models" else parts[1:])


def seed_model(pack) -> torch.nn.Module:
    """One module of the pack with the seed model's class and hooks (a fused model keeps its class)."""
    return pack.models[0] if hasattr(pack, "models") else pack.model


def sgd_groups(protocol, pack) -> list:
    """Trained parameters by kind, with their torch SGD (lr, weight_decay): BatchNorm biases and the
    rest (engine/schedule.py: sgd_hyperparameters). One group of every parameter when the kinds do not
    differ."""
    hyper = sgd_hyperparameters(protocol)
    if protocol.bias_scaler == 1.0 and protocol.hyper_units == "torch":
        return [dict(params=list(pack.parameters()), lr=hyper["other"][0], weight_decay=hyper["other"][1])]
    biases = {id(m.bias) for m in pack.modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    trained = [p for p in pack.parameters() if p.requires_grad]
    kinds = {"bn_bias": [p for p in trained if id(p) in biases], "other": [p for p in trained if id(p) not in biases]}
    return [dict(params=kinds[k], lr=hyper[k][0], weight_decay=hyper[k][1]) for k in ("bn_bias", "other") if kinds[k]]


def build(protocol, seeds: list[Seed], device, dtype, strategy: str = DEFAULT_STRATEGY, compile: str | None = None,
          images: torch.Tensor | None = None, graphs: bool = False):
    """The pack model for `strategy` and its optimiser, whose learning rate follows `set_lr_multiplier`
    (engine/optim.py: a device tensor, so one captured step serves the whole schedule). `compile` is a
    torch.compile mode ("default", "reduce-overhead", "max-autotune", …) for the training forward.
    `images`: the training images, for layers fitted to the data (fit_to_data). `graphs`: its steps
    will be captured (Adam then keeps its step count on the device as well)."""
    models = [set_dtype(init_model(protocol, s), dtype) for s in seeds]
    fit_to_data(protocol, models, images)
    pack = get_strategy(strategy).make(models, torch.device(device))
    pack.to(device=device, memory_format=torch.channels_last)
    if compile:
        pack.forward_train = torch.compile(pack.forward_train, mode=None if compile == "default" else compile)
    if protocol.optimizer == "adam":  # elementwise too: per-seed state, per-seed updates
        return pack, ScheduledAdam(pack.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay,
                                   device=device, capturable=graphs)
    return pack, ScheduledSGD(sgd_groups(protocol, pack), momentum=protocol.momentum, nesterov=protocol.nesterov,
                              device=device)


def make_step(protocol, pack, opt, images, labels, dtype, graph_api=None):
    """The pack's training step: captured once as a CUDA graph when `graph_api` is given (torch.cuda, or
    its CPU stand-in engine.graphs.RecordedGraphs), else eager."""
    if graph_api is None:
        return EagerStep(protocol, pack, opt, images, labels, dtype)
    return GraphedStep(protocol, pack, opt, images, labels, dtype, api=graph_api)


def frozen_switch(protocol, pack, opt, step) -> Callable[[int], None]:
    """The model's `frozen_parameters` hook as a call at the start of each epoch (airbench's whitening
    bias trains in the first epochs only). ScheduledSGD switches the hooked parameters in device tensors,
    so a captured step stays valid; any other optimiser (Adam) stops them by `requires_grad` (no
    gradient: no update, decay or momentum) and the step captures again when that changes."""
    frozen_in = getattr(seed_model(pack), "frozen_parameters", None)
    if frozen_in is None:
        return lambda epoch: None
    names = set().union(*(frozen_in(e, protocol) for e in range(protocol.epochs)))
    hooked = [(seed_name(name), p) for name, p in pack.named_parameters() if seed_name(name) in names]
    if isinstance(opt, ScheduledSGD):
        opt.freezable(p for _, p in hooked)

        def switch(epoch: int):
            frozen = frozen_in(epoch, protocol)
            for name, p in hooked:
                opt.set_frozen(p, name in frozen)
        return switch

    def flip(epoch: int):
        frozen, changed = frozen_in(epoch, protocol), False
        for name, p in hooked:
            changed |= p.requires_grad == (name in frozen)
            p.requires_grad_(name not in frozen)
        step.new_epoch(recapture=changed)
    return flip


def subset(protocol, data):
    """The protocol's slice of the data set (first N images in dataset order)."""
    return (data.train_x[: protocol.train_size], data.train_y[: protocol.train_size],
            data.test_x[: protocol.test_size], data.test_y[: protocol.test_size])


def tta_logits(forward, x: torch.Tensor, level: int) -> torch.Tensor:
    """airbench's test-time augmentation of a batch x (B,C,H,W): level 0 the logits of x; 1 the mean
    over x and its mirror; 2 one half that, one half the mean of the same for x shifted by one pixel
    down-right and up-left (reflect-padded). Combined in at least float32."""
    def plain(v):
        out = forward(v.contiguous(memory_format=torch.channels_last))
        return out.to(torch.promote_types(out.dtype, torch.float32))

    def mirror(v):
        return 0.5 * plain(v) + 0.5 * plain(v.flip(-1))

    if level == 0:
        return plain(x)
    if level == 1:
        return mirror(x)
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = torch.stack([mirror(padded[..., :h, :w]), mirror(padded[..., 2:, 2:])]).mean(0)
    return 0.5 * mirror(x) + 0.5 * shifted


@torch.no_grad()
def evaluate(pack, protocol, images, labels, dtype, logits_out: list | None = None):
    """Per seed: accuracy, CE loss, predicted class of every test image (uint8 bytes). `logits_out`
    receives, per seed, the logits the predictions come from (after any test-time augmentation) as a
    float16 (images × classes) numpy array. The loss is the mean over the images (test_loss
    "image_mean") or, as the ResNet-18 study computes it, the mean of the per-batch means over batches
    of eval_batch_size (test_loss "batch_mean": the images of a last, partial batch weigh more)."""
    pack.eval()
    loss = torch.zeros(pack.k, device=images.device, dtype=torch.float64)
    preds, kept, batches = [], [], 0
    for i in range(0, images.shape[0], protocol.eval_batch_size):
        x = normalize(images[i: i + protocol.eval_batch_size], protocol.mean, protocol.std, dtype)
        y = labels[i: i + protocol.eval_batch_size]
        logits = tta_logits(pack.forward_eval, x, protocol.tta)
        ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(pack.k), reduction="none")
        total = ce.view(pack.k, -1).sum(1).double()
        loss += total / y.shape[0] if protocol.test_loss == "batch_mean" else total
        preds.append(logits.argmax(-1))
        if logits_out is not None:  # kept on the device in float16; they leave it once, at the end
            kept.append(logits.to(torch.float16))
        batches += 1
    pack.train()
    preds, n = torch.cat(preds, 1), images.shape[0]
    accs = ((preds == labels).sum(1).double() / n).tolist()
    losses = (loss / (batches if protocol.test_loss == "batch_mean" else n)).tolist()
    as_bytes = preds.to(torch.uint8).cpu().numpy()
    if logits_out is not None:
        logits_out.extend(torch.cat(kept, 1).cpu().numpy())
    return [(accs[k], losses[k], as_bytes[k].tobytes()) for k in range(pack.k)]


@contextmanager
def training_draws(seeds: list[Seed], epoch: int, device: torch.device, graphs: bool):
    """What a model's training forward draws from torch's global generators (a user model's dropout;
    the built-in models draw nothing there): for a seed trained alone, from its `dropout` stream at this
    epoch, so a replay draws the same. (A pack never holds such a model: pack.choose_strategy; CUDA
    graphs keep the generator state they were captured with.)"""
    if len(seeds) != 1 or graphs:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seeds[0].key("dropout", epoch))
        yield


def train_group(protocol, seeds: list[Seed], data, device: torch.device, dtype: torch.dtype,
                strategy: str, packs: list[dict], models_out: list | None = None, *,
                compile: str | None = None, graph_api=None,
                on_progress: Callable[[int, int], None] | None = None, keep_logits: bool = False) -> list[Record]:
    """Train `seeds` together as one pack model; one Record per seed. `graph_api`: capture the step as a
    CUDA graph through it (see make_step). `on_progress(done, total)` is called after every training
    step (the scan's pace: time per step, what the pack in flight still needs). `keep_logits`: each record
    keeps the headline evaluation's logits (encode_logits)."""
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    train_x, train_y, test_x, test_y = subset(protocol, data)
    pack, opt = build(protocol, seeds, device, dtype, strategy, compile, images=train_x, graphs=graph_api is not None)
    step = make_step(protocol, pack, opt, train_x, train_y, dtype, graph_api)
    switch_frozen = frozen_switch(protocol, pack, opt, step)
    run = Run(protocol, len(seeds), protocol.total_steps(train_x.shape[0]), on_progress,
              Lookahead(pack) if protocol.lookahead_every else None)
    K, evals, trains = len(seeds), [[] for _ in seeds], [[] for _ in seeds]
    headline, status, logits = [None] * K, ["ok"] * K, [None] * K
    for epoch in range(protocol.epochs):
        switch_frozen(epoch)
        with training_draws(seeds, epoch, device, graph_api is not None):
            means, accs = run.epoch(epoch, seeds, step, opt, train_x, device)
        for k in range(K):
            if status[k] == "ok":
                trains[k].append([epoch, means[k], accs[k]])
                if not math.isfinite(means[k]):
                    status[k] = "diverged"  # a NaN/inf loss: the seed's record stops here
        if all(s == "diverged" for s in status):
            break
        if epoch in protocol.eval_epochs:
            kept = [] if keep_logits and epoch == protocol.headline_epoch else None
            for k, result in enumerate(evaluate(pack, protocol, test_x, test_y, dtype, logits_out=kept)):
                if status[k] == "ok":
                    evals[k].append([epoch, result[0], result[1]])
                    if epoch == protocol.headline_epoch:
                        headline[k] = result
                        logits[k] = None if kept is None else encode_logits(kept[k])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = (time.perf_counter() - t0) / K  # amortised over the pack
    if models_out is not None:
        models_out.extend(pack.unpack(k) for k in range(K))
    none = (float("nan"), float("nan"), bytes([255]) * test_x.shape[0])  # diverged before the headline
    steps = step.report()  # graphed or not, captures: the same for every seed of the pack
    digest = protocol.hash  # once a pack: it hashes every knob
    return [Record(
        protocol=protocol.name, protocol_hash=digest, seed=seed.value, status=status[k],
        test_acc=(headline[k] or none)[0], test_loss=(headline[k] or none)[1],
        headline_epoch=protocol.headline_epoch, eval_curve=evals[k], train_curve=trains[k],
        predictions=(headline[k] or none)[2], wall_time_s=wall, pack=packs[k],
        provenance=provenance(device, dtype, started=started, fixed=sorted(seed.fixed), fix_seed=seed.fix_seed,
                              steps=steps),
        logits=logits[k],
    ) for k, seed in enumerate(seeds)]


class Run:
    """Where a pack is in its run: training steps done of `total`, the learning-rate multiplier the
    optimiser holds (set only when the schedule moves it: per step for airbench's triangle, per epoch for
    Picard's), lookahead's updates."""

    def __init__(self, protocol, k: int, total: int, on_progress, lookahead):
        self.protocol, self.k, self.total, self.on_progress, self.lookahead = protocol, k, total, on_progress, lookahead
        self.done, self.multiplier = 0, None

    def epoch(self, epoch: int, seeds: list[Seed], step, opt, images, device) -> tuple[list, list]:
        """One epoch's training steps (a fractional run stops mid-epoch); the per-seed mean training loss
        and accuracy of the epoch."""
        protocol, B, n = self.protocol, self.protocol.batch_size, images.shape[0]
        plans = [plan_epoch(protocol, s, epoch, n, size=images.shape[-1]) for s in seeds]
        order = torch.stack([p.order for p in plans]).to(device)  # (K, images trained this epoch)
        params = [torch.stack([getattr(p, name) for p in plans]).to(device) for name in AUGMENT_PARAMS]
        # the last batch is partial when the protocol keeps it; a fractional run stops mid-epoch
        steps = min(-(-order.shape[1] // B), self.total - self.done)
        seen = min(order.shape[1], steps * B)
        loss_sum = torch.zeros(self.k, device=device, dtype=torch.float64)
        correct = torch.zeros(self.k, device=device, dtype=torch.int64)
        for i in range(steps):
            multiplier = lr_at(protocol, epoch, self.done, self.total)
            if multiplier != self.multiplier:
                opt.set_lr_multiplier(multiplier)
                self.multiplier = multiplier
            idx = order[:, i * B: (i + 1) * B]
            losses, right = step(idx, [p.gather(1, idx) for p in params])
            loss_sum += losses.double()
            correct += right
            self.done += 1
            if self.on_progress is not None:
                self.on_progress(self.done, self.total)
            if self.lookahead is not None and self.done % protocol.lookahead_every == 0:
                self.lookahead.update(lookahead_decay(protocol, self.done, self.total))
        if self.lookahead is not None and self.done == self.total:
            self.lookahead.finish()  # the run's weights are the slow copy
        return (loss_sum / max(steps, 1)).tolist(), (correct.double() / max(seen, 1)).tolist()


@contextmanager
def determinism(enabled: bool):
    """Deterministic kernels while a protocol that asks for them trains; the global flags come back
    afterwards. warn_only: an op without a deterministic CUDA kernel warns instead of stopping a scan."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS makes its handle
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


@contextmanager
def autotuned(enabled: bool):
    """cuDNN picks the fastest convolution per shape: a pack's shapes never change (a CIFAR pack: one
    training batch, maybe a last partial one, the evaluation batch; a fine-tune: one per phase). Off
    with --deterministic, whose kernels must not be chosen by timing."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = saved or enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def train_pack(protocol, seeds: Iterable[int | Seed], data, device, *, dtype: str | None = None,
               strategy: str = DEFAULT_STRATEGY, on_record: Callable[[Record], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False, models_out: list | None = None,
               compile: str | None = None, graphs: bool | None = None, graph_api=None,
               on_progress: Callable[[int, int], None] | None = None, keep_logits: bool = False) -> list[Record]:
    """Train a pack of seeds and return their records (in the order given).

    `on_record` is called as records are finished (the scan commits there, so a crash loses only the
    seeds in flight); `should_stop` is polled between seeds of a sequential pack for a clean exit.
    `graphs` (default: engine.graphs.use_graphs — the strategy's, on a GPU, unless the compile mode has
    CUDA graphs of its own) captures each pack's step once as a CUDA graph and replays it; `graph_api`
    is what captures it (torch.cuda; a CPU test passes engine.graphs.RecordedGraphs). Everything runs
    under the device's own context (engine.graphs.on_device), with cuDNN autotuning on a GPU unless
    the protocol is deterministic. `on_progress(done, total)`: see train_group (for a one-after-another
    strategy, `total` is one seed's steps). `keep_logits`: records keep the headline evaluation's
    logits (float16, encode_logits)."""
    how = get_strategy(strategy)
    device = torch.device(device)
    torch_dtype = compute_dtype(protocol, device, dtype)
    if graphs is None:
        graphs = use_graphs(device, how.graphs, compile=compile) or graph_api is not None
    if graphs and inductor_graphs(compile):
        raise FastseedError(f"--compile {compile} captures CUDA graphs of its own: train it without fastseed's "
                            f"(--no-graphs), or compile with mode max-autotune-no-cudagraphs or default")
    if graphs and device.type != "cuda" and graph_api is None:
        raise FastseedError("CUDA graphs need a CUDA device")
    api = graph_api if graph_api is not None else torch.cuda
    seeds = [s if isinstance(s, Seed) else protocol.seed(s) for s in seeds]
    layout = [s.value for s in seeds]
    packs = [{"strategy": strategy, "size": len(seeds), "slot": k, "seeds": layout} for k in range(len(seeds))]
    groups = [list(range(len(seeds)))] if how.together else [[k] for k in range(len(seeds))]
    records = []
    with on_device(device, api), determinism(protocol.deterministic), \
            autotuned(device.type == "cuda" and not protocol.deterministic):
        for group in groups:
            if should_stop():
                break
            done = train_group(protocol, [seeds[k] for k in group], data, device, torch_dtype, strategy,
                               [packs[k] for k in group], models_out, compile=compile,
                               graph_api=api if graphs else None, on_progress=on_progress, keep_logits=keep_logits)
            for record in done:
                if on_record is not None:
                    on_record(record)
                records.append(record)
    return records
