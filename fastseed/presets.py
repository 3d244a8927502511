"""Named protocols: every knob of a recipe in one frozen dataclass, each citing its source.

A Protocol is hashed (sha256 of its canonical JSON) and the hash keys the results store, so two runs
are comparable exactly when their protocols are equal. Changing a preset's field changes its hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from fastseed import FastseedError
from fastseed.seeds import STREAMS, Seed

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # Picard's script (the common CIFAR constants, not exact means)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


@dataclass(frozen=True)
class Protocol:
    name: str
    source: str
    # data
    dataset: str = "cifar10"
    train_size: int | None = None  # first N training images in dataset order; None = all 50,000
    test_size: int | None = None
    mean: tuple = CIFAR_MEAN
    std: tuple = CIFAR_STD
    # model
    model: str = "resnet9"
    width: float = 1.0  # channel multiplier of the 64/128/256 layout
    celu_alpha: float = 0.1
    logit_scale: float = 0.1
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    dtype: str = "float16"  # compute dtype on a GPU; BatchNorm stays float32
    # optimisation: "sgd" (momentum, nesterov, weight decay below) or "adam" (torch defaults but lr, wd)
    optimizer: str = "sgd"
    epochs: int = 22
    batch_size: int = 500
    eval_batch_size: int = 100
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-3
    lr_warmup_epochs: int = 4  # LambdaLR multiplier, see lr_multiplier()
    lr_decay_end: int = 22
    lr_floor_from: int | None = None
    schedule: str = "picard"  # "picard" (lr_multiplier below) or "constant"
    drop_last: bool = True  # Picard drops the last partial batch; a plain DataLoader keeps it
    # loss: ce_weight·CE + lsce_weight·LSCE(eps)
    ce_weight: float = 1.0
    lsce_weight: float = 2.0
    lsce_eps: float = 0.2
    # augmentation: "chunk" (Picard: one crop/flip/cutout per chunk of chunk_size in dataset order),
    # "image" (fresh draws per image) or "none"
    augment: str = "chunk"
    chunk_size: int = 500
    crop_pad: int = 4
    flip: bool = True
    cutout: int = 8
    # evaluation: "picard" = epochs e == 0 or e % 5 == 1; "every" = every epoch.
    # headline: "picard" = the last epoch of the picard rule (the number the paper reports), "last".
    eval_rule: str = "picard"
    headline_rule: str = "picard"
    # randomness: streams in `fixed` draw from seed `fix_seed` in every run (fastseed.seeds), so a
    # study can vary init alone, order alone, …; `deterministic` asks torch for deterministic kernels
    # (cuDNN/cuBLAS) so GPU non-determinism can be measured as a factor of its own.
    fixed: tuple = ()
    fix_seed: int = 0
    deterministic: bool = False
    # --- knobs added after v1 (the airbench recipe, `fast94`). Each is declared with metadata _SINCE_V2
    # and left out of to_json() -- hence of the hash -- while it holds its default, so every protocol
    # that does not use it keeps the hash (and the results store) it had before the knob existed.
    _SINCE_V2 = {"since": 2}  # a plain class attribute, not a field
    # length: stop after ceil(train_epochs · steps per epoch) steps, mid-epoch; `epochs` = ceil(train_epochs)
    train_epochs: float | None = dataclasses.field(default=None, metadata=_SINCE_V2)
    # "torch": lr and weight_decay are torch.optim.SGD's. "per1024" (airbench, after Myrtle): lr and
    # weight_decay per 1,024 examples, decoupled from the momentum; see sgd_hyperparameters()
    hyper_units: str = dataclasses.field(default="torch", metadata=_SINCE_V2)
    bias_scaler: float = dataclasses.field(default=1.0, metadata=_SINCE_V2)  # BatchNorm biases' lr ×
    loss_reduction: str = dataclasses.field(default="mean", metadata=_SINCE_V2)  # or "sum" over the batch
    # schedule "triangle" (stepped every training step): (start, peak position as a fraction of the
    # steps, end) of a piecewise-linear multiplier start → 1 → end; see step_lr_multiplier()
    lr_triangle: tuple = dataclasses.field(default=(), metadata=_SINCE_V2)
    # lookahead (airbench): every N steps slow ← lerp(slow, weights, 1 − d), weights ← slow, with
    # d = lookahead_decay^N · (step / steps)^lookahead_power; the weights end as the slow copy. 0 = off
    lookahead_every: int = dataclasses.field(default=0, metadata=_SINCE_V2)
    lookahead_decay: float = dataclasses.field(default=0.0, metadata=_SINCE_V2)
    lookahead_power: float = dataclasses.field(default=0.0, metadata=_SINCE_V2)
    # a model with a data-fitted whitening conv (airbench94): its bias trains in the first N epochs only
    whiten_bias_epochs: int | None = dataclasses.field(default=None, metadata=_SINCE_V2)
    # augmentation: crop padding "zeros" (Picard) or "reflect"; flips "random" (drawn per epoch) or
    # "alternate" (drawn once per image; every odd epoch flips them all: airbench's alternating flip)
    pad_mode: str = dataclasses.field(default="zeros", metadata=_SINCE_V2)
    flip_rule: str = dataclasses.field(default="random", metadata=_SINCE_V2)
    # test-time augmentation: 0 none, 1 mirror, 2 mirror + 1-pixel translations (airbench's levels)
    tta: int = dataclasses.field(default=0, metadata=_SINCE_V2)

    def __post_init__(self):
        triangle = self.lr_triangle
        checks = {
            "augment": self.augment in ("chunk", "image", "none"),
            "optimizer": self.optimizer in ("sgd", "adam"),
            "schedule": self.schedule in ("picard", "constant", "triangle"),
            "eval_rule": self.eval_rule in ("picard", "every", "last"),
            "headline_rule": self.headline_rule in ("picard", "last"),
            "dtype": self.dtype in ("float16", "bfloat16", "float32", "float64"),
            "epochs": self.epochs > 0,
            "batch_size": self.batch_size > 0 and self.eval_batch_size > 0,
            "chunk_size": self.chunk_size > 0,
            "fixed": set(self.fixed) <= set(STREAMS) and list(self.fixed) == sorted(set(self.fixed)),
            "fix_seed": self.fix_seed >= 0,
            "train_epochs": self.train_epochs is None or (
                self.train_epochs > 0 and math.ceil(self.train_epochs) == self.epochs),
            "hyper_units": self.hyper_units in ("torch", "per1024") and (
                self.hyper_units == "torch" or self.optimizer == "sgd"),
            "bias_scaler": self.bias_scaler > 0 and (self.bias_scaler == 1.0 or self.optimizer == "sgd"),
            "loss_reduction": self.loss_reduction in ("mean", "sum"),
            "lr_triangle": (self.schedule != "triangle" and triangle == ()) or (
                self.schedule == "triangle" and self.optimizer == "sgd" and len(triangle) == 3
                and 0 <= triangle[1] < 1),
            "lookahead": self.lookahead_every >= 0 and 0 <= self.lookahead_decay <= 1,
            "whiten_bias_epochs": self.whiten_bias_epochs is None or self.whiten_bias_epochs >= 0,
            "pad_mode": self.pad_mode in ("zeros", "reflect") and (self.pad_mode == "zeros" or self.crop_pad < 32),
            "flip_rule": self.flip_rule in ("random", "alternate") and (
                self.flip_rule == "random" or self.augment == "image"),
            "tta": self.tta in (0, 1, 2),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise FastseedError(f"protocol {self.name!r}: invalid {', '.join(bad)}")
        if self.headline_epoch not in self.eval_epochs:
            raise FastseedError(f"protocol {self.name!r}: headline epoch is not evaluated")

    # --- identity -------------------------------------------------------------------------------
    def to_json(self) -> str:
        """Canonical JSON. Knobs added after v1 appear only when they differ from their default, so a
        protocol's hash is the same before and after a knob is added (tests/test_protocol_hashes.py pins it)."""
        fields = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("since", 1) > 1 and fields[f.name] == f.default:
                del fields[f.name]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> "Protocol":
        fields = json.loads(text)
        for name in ("mean", "std", "fixed", "lr_triangle"):
            if name in fields:
                fields[name] = tuple(fields[name])
        return cls(**fields)

    def variant(self, **changes) -> "Protocol":
        """The same recipe with some knobs changed, under a name that says so."""
        changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changes:
            return self
        show = lambda v: "+".join(v) if isinstance(v, tuple) else v
        tag = ",".join(f"{k}={show(v)}" for k, v in sorted(changes.items()))
        return dataclasses.replace(self, name=f"{self.name}[{tag}]", **changes)

    def seed(self, value: int) -> Seed:
        """Run `value`'s random streams under this protocol's fixed-stream settings."""
        return Seed(value, fixed=frozenset(self.fixed), fix_seed=self.fix_seed)

    # --- schedule -------------------------------------------------------------------------------
    def lr_multiplier(self, epoch: int) -> float:
        """Picard's LambdaLR (stepped once per epoch): linear warm-up to ~0.51, linear decay to 0.01
        at lr_decay_end, and (long) flat 0.01 from lr_floor_from on."""
        if self.schedule == "constant":
            return 1.0
        warm, end = self.lr_warmup_epochs, self.lr_decay_end
        if epoch < warm:
            return 0.5 * epoch / (warm - 1) + 0.01
        if self.lr_floor_from is not None and epoch >= self.lr_floor_from:
            return 0.01
        return 0.5 * (end - epoch) / (end - warm + 1) + 0.01

    def steps_per_epoch(self, n: int) -> int:
        """Training steps in a full epoch of n images."""
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def total_steps(self, n: int) -> int:
        """Training steps of a whole run on n images: airbench's ceil(steps per epoch · 9.9) for a
        fractional length, else every step of every epoch."""
        if self.train_epochs is not None:
            return math.ceil(self.steps_per_epoch(n) * self.train_epochs)
        return self.steps_per_epoch(n) * self.epochs

    def step_lr_multiplier(self, step: int, total: int) -> float:
        """The "triangle" multiplier of training step `step` (0-based) of `total`, as airbench's
        LambdaLR applies it: linear from `start` at step 0 to 1 at step int(peak · total), then linear
        to `end` at step `total` (never reached: the last step is total − 1)."""
        start, peak, end = self.lr_triangle
        top = int(peak * total)
        if step < top:
            return start + (1.0 - start) * step / top
        return 1.0 + (end - 1.0) * (step - top) / (total - top)

    def lookahead_decay_at(self, step: int, total: int) -> float:
        """The lookahead decay d after `step` steps (1-based count) of `total`."""
        return self.lookahead_decay ** self.lookahead_every * (step / total) ** self.lookahead_power

    def sgd_hyperparameters(self) -> dict:
        """torch.optim.SGD's (lr, weight_decay) for the two kinds of parameter: "other" and "bn_bias"
        (BatchNorm biases: lr × bias_scaler, weight decay ÷ bias_scaler, so their decay per step is
        the others'). "per1024" converts airbench's units in the package's own order of operations:
        kilostep = 1024·(1 + 1/(1 − momentum)), lr/kilostep, weight_decay·batch_size/kilostep."""
        if self.hyper_units == "per1024":
            kilostep = 1024 * (1 + 1 / (1 - self.momentum))
            lr, decay = self.lr / kilostep, self.weight_decay * self.batch_size / kilostep
            bias_lr = lr * self.bias_scaler
            return {"other": (lr, decay / lr), "bn_bias": (bias_lr, decay / bias_lr)}
        return {"other": (self.lr, self.weight_decay),
                "bn_bias": (self.lr * self.bias_scaler, self.weight_decay / self.bias_scaler)}

    @property
    def eval_epochs(self) -> tuple:
        if self.eval_rule == "every":
            return tuple(range(self.epochs))
        if self.eval_rule == "last":
            return (self.epochs - 1,)
        return self.picard_eval_epochs

    @property
    def picard_eval_epochs(self) -> tuple:
        return tuple(e for e in range(self.epochs) if e == 0 or e % 5 == 1)

    @property
    def headline_epoch(self) -> int:
        if self.headline_rule == "picard":
            return self.picard_eval_epochs[-1]
        return self.epochs - 1


PICARD_SRC = ("Picard 2021, 'torch.manual_seed(3407) is all you need', arXiv 2109.08203, Table 1; "
              "recipe of the author's CIFAR-10 script (PROTOCOLS.md §1)")

RESNET18_SRC = ("the 'variance of randomness' ResNet-18 study (PROTOCOLS.md §3): torchvision ResNet-18 with "
                "10 outputs, Adam lr 1e-3, batch 128, 10 epochs, plain CE, no augmentation, mean/std 0.5")
RESNET18 = Protocol(name="resnet18-exp1", source=RESNET18_SRC + "; exp 1: init and data order vary",
                    model="resnet18", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), dtype="float32",
                    optimizer="adam", lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.0,
                    schedule="constant", epochs=10, batch_size=128, drop_last=False, eval_batch_size=1000,
                    ce_weight=1.0, lsce_weight=0.0, lsce_eps=0.0, augment="none", cutout=0,
                    eval_rule="every", headline_rule="last")

PRESETS = {
    p.name: p
    for p in [
        # 10,000 seeds in the paper: 90.02 ± 0.23 %, min 89.01, max 90.83. Headline = epoch 21 eval.
        Protocol(name="picard-short", source=PICARD_SRC + ", short runs (22 epochs)"),
        # 500 seeds: 90.70 ± 0.20 %. Same schedule to epoch 21, then flat 0.01; the script's last eval
        # is epoch 41 of 45 (the headline); every epoch is evaluated for Figure 1.
        Protocol(name="picard-long", source=PICARD_SRC + ", long runs (45 epochs), Figure 1",
                 epochs=45, lr_floor_from=22, eval_rule="every"),
        # Same code path as picard-short at CPU scale: 1/8 width, the first 5,000 training images,
        # 4 epochs of 10 batches of 500 (chunks of 500 as in Picard), every epoch evaluated on the
        # full test set. For demos and tests, not for science.
        Protocol(name="smoke", source="fastseed CPU demo: picard-short code path at tiny scale",
                 width=0.125, train_size=5000, epochs=4,
                 lr_warmup_epochs=2, lr_decay_end=4, eval_rule="every", headline_rule="last",
                 eval_batch_size=1000),
        RESNET18,
        dataclasses.replace(RESNET18, name="resnet18-exp2", fixed=("order",),
                            source=RESNET18_SRC + "; exp 2: data order fixed, init varies"),
        dataclasses.replace(RESNET18, name="resnet18-exp3", fixed=("init",),
                            source=RESNET18_SRC + "; exp 3: init fixed, data order varies"),
        # airbench94: 94.01 % mean over 1,000 runs in the paper. Every number is the package's
        # (airbench 0.1.8: hyp, make_net94, train, CifarLoader, infer); the net is models/airbench.py.
        # 48 steps of 1,024 an epoch, ceil(48 · 9.9) = 476 steps: 9 epochs and 44 steps of a 10th.
        Protocol(name="fast94", source=(
            "Jordan 2024, '94% on CIFAR-10 in 3.29 seconds on a single GPU', arXiv 2404.00498: airbench94 "
            "as in the PyPI package airbench 0.1.8 (PROTOCOLS.md §4): whitening 2x2 conv + 3 ConvGroups "
            "64/256/256, GELU, BN weights frozen, logits/9; batch 1024, 9.9 epochs, Nesterov SGD 0.85, "
            "lr 11.5 and wd 0.0153 per 1024 examples, loss summed, BN-bias lr x64, triangle lr "
            "0.2 -> 1 at 23 % -> 0.07, label smoothing 0.2, lookahead every 5 steps (0.95^5 (t/T)^3), "
            "translate 2 (reflect) + alternating flip, TTA level 2, eval at the end"),
            model="airbench94", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
            logit_scale=1 / 9, bn_eps=1e-12, bn_momentum=1 - 0.6, dtype="float16",
            epochs=10, train_epochs=9.9, batch_size=1024, eval_batch_size=2000, drop_last=True,
            optimizer="sgd", lr=11.5, momentum=0.85, nesterov=True, weight_decay=0.0153,
            hyper_units="per1024", bias_scaler=64.0, schedule="triangle", lr_triangle=(0.2, 0.23, 0.07),
            ce_weight=0.0, lsce_weight=1.0, lsce_eps=0.2, loss_reduction="sum",
            augment="image", crop_pad=2, pad_mode="reflect", flip=True, flip_rule="alternate", cutout=0,
            whiten_bias_epochs=3, lookahead_every=5, lookahead_decay=0.95, lookahead_power=3.0,
            tta=2, eval_rule="last", headline_rule="last"),
    ]
}


def get_preset(name: str) -> Protocol:
    try:
        return PRESETS[name]
    except KeyError:
        raise FastseedError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


# --- ImageNet fine-tuning (Picard Table 2) ------------------------------------------------------------
from fastseed.data.imagenet import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402  (the pipelines' constants)

EPOCH_RULE = "batches_per_epoch//1000"  # RN50 phase 1's T_max, resolved against the data at run time


@dataclass(frozen=True)
class Phase:
    """One phase of a fine-tune: what trains, for how long, with which SGD, schedule, loss and evals."""
    name: str
    train: str            # "head" (backbone frozen, its BatchNorm still in train mode) or "all"
    steps: int
    batch_size: int
    lr: float
    t_max: int | str      # CosineAnnealingLR T_max, or EPOCH_RULE
    eta_min: float
    sched_every: int      # the scheduler steps once every this many optimiser steps
    eval_every: int       # validation every this many steps (and at the end of the phase)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    ce_weight: float = 1.0    # loss: ce_weight·CE + lsce_weight·LSCE(lsce_eps), as fastseed.kernels.lsce
    lsce_weight: float = 0.0
    lsce_eps: float = 0.0

    def resolved_t_max(self, train_images: int) -> int:
        if self.t_max == EPOCH_RULE:  # ≥ 1: a tiny run has less than 1,000 batches an epoch
            return max(1, train_images // self.batch_size // 1000)
        return int(self.t_max)


@dataclass(frozen=True)
class Finetune:
    """A two-phase ImageNet fine-tune (PROTOCOLS.md §2). Seeded: head init ("head" stream), data order
    ("order"), crops and flips ("augment"); the pretrained backbone is the same for every seed, and
    its file's sha256 (`weights`) is part of the protocol, so other weights make another store."""
    name: str
    source: str
    backbone: str                # fastseed.models.imagenet.BACKBONES
    phases: tuple = ()
    dataset: str = "imagenet"
    weights: str = ""            # sha256 of the weight file, filled in by the scan
    classes: int = 1000          # the first N classes (sorted wnids) of the data set
    image_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    eval_batch_size: int = 250
    dtype: str = "bfloat16"      # autocast dtype on a GPU (float32 on the CPU)
    limit_steps: int | None = None  # small-scale runs: at most this many steps a phase
    limit_batch: int | None = None  # … and at most this many images a batch
    fixed: tuple = ()
    fix_seed: int = 0
    deterministic: bool = False

    def __post_init__(self):
        from fastseed.models.imagenet import BACKBONES
        checks = {
            "backbone": self.backbone in BACKBONES,
            "phases": bool(self.phases) and all(p.train in ("head", "all") and p.steps > 0 and p.batch_size > 0
                                                and p.eval_every > 0 and p.sched_every > 0 for p in self.phases),
            "classes": self.classes >= 2,
            "image_size": self.image_size >= 32 and (self.backbone != "dino_vits16" or self.image_size == 224),
            "dtype": self.dtype in ("float16", "bfloat16", "float32"),
            "limit_steps": self.limit_steps is None or self.limit_steps > 0,
            "limit_batch": self.limit_batch is None or self.limit_batch > 0,
            "fixed": set(self.fixed) <= set(STREAMS) and list(self.fixed) == sorted(set(self.fixed)),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise FastseedError(f"protocol {self.name!r}: invalid {', '.join(bad)}")

    to_json = Protocol.to_json  # the same canonical JSON and hash (nested Phases included)
    hash = Protocol.hash

    @classmethod
    def from_json(cls, text: str) -> "Finetune":
        fields = json.loads(text)
        fields["phases"] = tuple(Phase(**p) for p in fields["phases"])
        fields.update({k: tuple(fields[k]) for k in ("mean", "std", "fixed")})
        return cls(**fields)

    variant = Protocol.variant
    seed = Protocol.seed

    def run_phases(self) -> tuple:
        """The phases as trained: step and batch limits of a small-scale run applied."""
        cap = lambda v, limit: v if limit is None else min(v, limit)
        return tuple(dataclasses.replace(p, steps=cap(p.steps, self.limit_steps),
                                         batch_size=cap(p.batch_size, self.limit_batch)) for p in self.phases)

    @property
    def eval_steps(self) -> tuple:
        """Global steps (1-based, counted across phases) after which the validation set is scored."""
        out, done = [], 0
        for p in self.run_phases():
            out += [done + s for s in range(1, p.steps + 1) if s % p.eval_every == 0 or s == p.steps]
            done += p.steps
        return tuple(out)

    @property
    def headline_epoch(self) -> int:
        return self.eval_steps[-1]  # the last evaluation, as the paper reports (a step, not an epoch)


IMAGENET_SRC = ("Picard 2021, arXiv 2109.08203, Table 2 (50 seeds each): ImageNet fine-tuning, "
                "PROTOCOLS.md §2")
# Phase 1 (linear head): backbone frozen with BatchNorm in train mode, CE + LSCE(0.1), batch 128,
# 2,000 steps, evaluated every 1,000. Phase 2 (everything trains): plain CE, evaluated every 2,000.
RN50_PHASES = (Phase("head", "head", steps=2000, batch_size=128, lr=0.02, t_max=EPOCH_RULE, eta_min=0.001,
                     sched_every=1000, eval_every=1000, lsce_weight=1.0, lsce_eps=0.1),
               Phase("full", "all", steps=24000, batch_size=64, lr=5e-4, t_max=12, eta_min=1e-4,
                     sched_every=2000, eval_every=2000))
DINO_PHASES = (Phase("head", "head", steps=2000, batch_size=128, lr=0.01, t_max=2000, eta_min=0.001,
                     sched_every=1, eval_every=1000, lsce_weight=1.0, lsce_eps=0.1),
               Phase("full", "all", steps=26000, batch_size=128, lr=1e-4, t_max=26000, eta_min=1e-6,
                     sched_every=1, eval_every=2000))
IMAGENET_PRESETS = [
    # 75.48 ± 0.10 [75.25, 75.69] in the paper; ~2 h a seed on a V100.
    Finetune("imagenet-rn50", IMAGENET_SRC + ", ResNet50 (supervised, torchvision weights)", "resnet50",
             RN50_PHASES),
    # 75.15 ± 0.08 [74.98, 75.35]; ~3 h a seed.
    Finetune("imagenet-dino-rn50", IMAGENET_SRC + ", ResNet50 SSL (DINO)", "dino_resnet50", DINO_PHASES),
    # 76.83 ± 0.11 [76.63, 77.09]; ~3 h 40 a seed. Features: the 384-d CLS token.
    Finetune("imagenet-dino-vits16", IMAGENET_SRC + ", ViT SSL (DINO ViT-S/16)", "dino_vits16", DINO_PHASES),
]
PRESETS.update({p.name: p for p in IMAGENET_PRESETS})


def protocol_from_json(text: str):
    """The protocol a store's JSON describes: a CIFAR Protocol or an ImageNet Finetune."""
    kind = Finetune if json.loads(text).get("dataset") == "imagenet" else Protocol
    return kind.from_json(text)
