"""The recipe kinds: `CifarProtocol` (a CIFAR-10 training, trained by the pack engine) and `Finetune` (an
ImageNet fine-tune made of `Phase`s), each every knob of its recipe in one commented table.

Both stand on `fastseed.recipe.knobs.Recipe` (canonical JSON, hash, variants, seeds, one-line validation of
every knob); this module adds what each kind's knobs mean together (`relations`), which knobs nothing
reads under the others' values (`unread`) and what they imply (steps, evaluated epochs). The named
instances are in fastseed.recipe.presets; `--set` and protocol files in fastseed.recipe.overrides; a
user's whole training function, the third kind, in fastseed.recipe.function.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from fastseed import FastseedError
from fastseed.data.imagenet import IMAGENET_MEAN, IMAGENET_STD  # the pipelines' constants
from fastseed.models.imagenet import BACKBONES, HEAD_INITS
from fastseed.recipe.knobs import (A_NAME, AT_LEAST_ONE, BELOW_ONE, FRACTION, NON_NEGATIVE, POSITIVE, REQUIRED, Knobs,
                                   Recipe, Rule, knob, show)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # Picard's script (the common CIFAR constants, not exact means)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
EPOCH_RULE = "batches_per_epoch//1000"  # RN50 phase 1's T_max, resolved against the data at run time


# --- CIFAR-10 -----------------------------------------------------------------------------------------
# The knobs by topic. Those added after v1 carry `since=2`: left out of the JSON, hence of the hash,
# while they hold their default, so recipes that do not use them keep their hash and store.
@dataclass(frozen=True)
class CifarProtocol(Recipe):
    name: str = knob("", rule=A_NAME, settable=False)
    source: str = knob("", settable=False)
    # data
    dataset: str = knob("cifar10", choices=("cifar10",), settable=False)
    train_size: int | None = knob(None, rule=AT_LEAST_ONE)  # first N training images (dataset order); None = all
    test_size: int | None = knob(None, rule=AT_LEAST_ONE)
    mean: tuple[float, ...] = knob(CIFAR_MEAN)
    std: tuple[float, ...] = knob(CIFAR_STD)
    # model: a registered name (fastseed.models) or a user's "package.module:factory"
    model: str = knob("resnet9")
    # a user model's source digest (sha256 of its module file), filled in by fastseed.recipe.overrides
    model_digest: str = knob("", since=2, settable=False)
    width: float = knob(1.0, rule=POSITIVE)  # channel multiplier of the built-in nets
    celu_alpha: float = knob(0.1, rule=POSITIVE)
    logit_scale: float = knob(0.1, rule=POSITIVE)
    bn_eps: float = knob(1e-5, rule=POSITIVE)
    bn_momentum: float = knob(0.1, rule=FRACTION)
    dtype: str = knob("float16", choices=("float16", "bfloat16", "float32", "float64"))  # on a GPU; BN float32
    # length: `epochs` of the data, or stop after ceil(train_epochs · steps per epoch) steps, mid-epoch
    # (then `epochs` = ceil(train_epochs))
    epochs: int = knob(22, rule=AT_LEAST_ONE)
    train_epochs: float | None = knob(None, since=2, rule=POSITIVE)
    batch_size: int = knob(500, rule=AT_LEAST_ONE)
    drop_last: bool = knob(True)  # Picard drops the last partial batch; a plain DataLoader keeps it
    # data order: "per_epoch" draws a new permutation every epoch; "once" draws ONE permutation per run
    # and trains every epoch in it (the ResNet-18 study's exp 2: a Subset shuffled once, shuffle=False)
    order_rule: str = knob("per_epoch", since=2, choices=("per_epoch", "once"))
    # optimisation: "sgd" (momentum, nesterov, weight decay below) or "adam" (torch defaults but lr, wd)
    optimizer: str = knob("sgd", choices=("sgd", "adam"))
    lr: float = knob(0.2, rule=POSITIVE)
    momentum: float = knob(0.9, rule=BELOW_ONE)
    nesterov: bool = knob(True)
    weight_decay: float = knob(1e-3, rule=NON_NEGATIVE)
    # "torch": lr and weight_decay are torch.optim.SGD's. "per1024" (airbench, after Myrtle): lr and
    # weight_decay per 1,024 examples, decoupled from the momentum; see engine/schedule.py
    hyper_units: str = knob("torch", since=2, choices=("torch", "per1024"))
    bias_scaler: float = knob(1.0, since=2, rule=POSITIVE)  # BatchNorm biases' lr ×
    # a model with a data-fitted whitening conv (airbench94): its bias trains in the first N epochs only
    whiten_bias_epochs: int | None = knob(None, since=2, rule=NON_NEGATIVE)
    # lookahead (airbench): every N steps slow ← lerp(slow, weights, 1 − d), weights ← slow, with
    # d = lookahead_decay^N · (step / steps)^lookahead_power; the weights end as the slow copy. 0 = off
    lookahead_every: int = knob(0, since=2, rule=NON_NEGATIVE)
    lookahead_decay: float = knob(0.0, since=2, rule=FRACTION)
    lookahead_power: float = knob(0.0, since=2, rule=NON_NEGATIVE)
    # learning-rate schedule (engine/schedule.py): "picard" (Picard's per-epoch LambdaLR: warm-up,
    # decay, optional floor), "constant", or "triangle" (stepped every training step: (start, peak
    # position as a fraction of the steps, end) of a piecewise-linear multiplier start → 1 → end)
    schedule: str = knob("picard", choices=("picard", "constant", "triangle"))
    lr_warmup_epochs: int = knob(4, rule=NON_NEGATIVE)
    lr_decay_end: int = knob(22, rule=AT_LEAST_ONE)
    lr_floor_from: int | None = knob(None, rule=AT_LEAST_ONE)
    lr_triangle: tuple[float, ...] = knob((), since=2)
    # loss: ce_weight·CE + lsce_weight·LSCE(eps), "mean" or "sum" over the batch
    ce_weight: float = knob(1.0, rule=NON_NEGATIVE)
    lsce_weight: float = knob(2.0, rule=NON_NEGATIVE)
    lsce_eps: float = knob(0.2, rule=FRACTION)
    loss_reduction: str = knob("mean", since=2, choices=("mean", "sum"))
    # augmentation: "chunk" (Picard: one crop/flip/cutout per chunk of chunk_size in dataset order),
    # "image" (fresh draws per image) or "none"; crop padding "zeros" (Picard) or "reflect"; flips
    # "random" (drawn per epoch) or "alternate" (drawn once per image; every odd epoch flips them all:
    # airbench's alternating flip)
    augment: str = knob("chunk", choices=("chunk", "image", "none"))
    chunk_size: int = knob(500, rule=AT_LEAST_ONE)
    crop_pad: int = knob(4, rule=NON_NEGATIVE)
    pad_mode: str = knob("zeros", since=2, choices=("zeros", "reflect"))
    flip: bool = knob(True)
    flip_rule: str = knob("random", since=2, choices=("random", "alternate"))
    cutout: int = knob(8, rule=NON_NEGATIVE)
    # evaluation: "picard" = epochs e == 0 or e % 5 == 1; "every" = every epoch; "last".
    # headline: "picard" = the last epoch of the picard rule (the number the paper reports), "last".
    eval_batch_size: int = knob(100, rule=AT_LEAST_ONE)
    eval_rule: str = knob("picard", choices=("picard", "every", "last"))
    headline_rule: str = knob("picard", choices=("picard", "last"))
    # test-time augmentation: 0 none, 1 mirror, 2 mirror + 1-pixel translations (airbench's levels)
    tta: int = knob(0, since=2, choices=(0, 1, 2))
    # the test loss: "image_mean" (the mean over test images) or "batch_mean" (the mean of the per-batch
    # means over batches of eval_batch_size, the last one partial: the ResNet-18 study's figure)
    test_loss: str = knob("image_mean", since=2, choices=("image_mean", "batch_mean"))
    # randomness: streams in `fixed` draw from seed `fix_seed` in every run (fastseed.seeds), so a
    # study can vary init alone, order alone, …; `deterministic` asks torch for deterministic kernels
    # (cuDNN/cuBLAS) so GPU non-determinism can be measured as a factor of its own.
    fixed: tuple[str, ...] = knob(())
    fix_seed: int = knob(0, rule=NON_NEGATIVE)
    deterministic: bool = knob(False)

    KIND = "a CIFAR-10 protocol"
    STREAMS = ("augment", "init", "order")  # the seed streams a CIFAR run draws from

    def __post_init__(self):
        self.validate()

    @property
    def train_images(self) -> int:
        return self.train_size or CIFAR_TRAIN

    def relations(self):
        n, triangle = self.train_images, self.lr_triangle
        if self.train_size is not None and self.train_size > CIFAR_TRAIN:
            yield f"train_size must be <= {CIFAR_TRAIN:,} (CIFAR-10's training images), got {self.train_size}"
        if self.test_size is not None and self.test_size > CIFAR_TEST:
            yield f"test_size must be <= {CIFAR_TEST:,} (CIFAR-10's test images), got {self.test_size}"
        if self.batch_size > n:
            yield f"batch_size must be <= the {n:,} training images, got {self.batch_size}"
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            yield "mean and std must be 3 numbers each (one per colour channel), std > 0"
        if ":" in self.model and not all(self.model.split(":", 1)):
            yield f"model must be a registered name or package.module:factory, got {self.model}"
        if self.fixed_problem():
            yield self.fixed_problem()
        if self.train_epochs is not None and math.ceil(self.train_epochs) != self.epochs:
            yield f"epochs must be ceil(train_epochs) = {math.ceil(self.train_epochs)}, got {self.epochs}"
        if self.hyper_units == "per1024" and self.optimizer != "sgd":
            yield "hyper_units per1024 needs optimizer sgd"
        if self.bias_scaler != 1.0 and self.optimizer != "sgd":
            yield "bias_scaler needs optimizer sgd"
        if self.schedule == "triangle" and (self.optimizer != "sgd" or len(triangle) != 3 or not 0 <= triangle[1] < 1):
            yield ("schedule triangle needs optimizer sgd and lr_triangle = start,peak,end with the peak "
                   f"in [0, 1), got lr_triangle={show(triangle)}")
        if self.schedule != "triangle" and triangle != ():
            yield "lr_triangle is only for schedule triangle"
        if self.schedule == "picard":  # engine/schedule.py: picard_multiplier
            warm, end = self.lr_warmup_epochs, self.lr_decay_end
            last = self.epochs if self.lr_floor_from is None else min(self.epochs, self.lr_floor_from)
            if warm == 1:
                yield "lr_warmup_epochs must be 0 or >= 2 (the warm-up ramp divides by lr_warmup_epochs - 1)"
            elif last - 1 >= warm and last - 1 > end:  # the decay reaches 0.01 at `end`, then turns negative
                yield (f"lr_decay_end must be >= {last - 1}, the last epoch trained before any lr_floor_from "
                       f"(the picard multiplier turns negative after lr_decay_end), got {end}")
        if ":" not in self.model:
            from fastseed.models import MODELS
            if self.model not in MODELS:
                yield f"model must be one of {', '.join(MODELS)} or package.module:factory, got {self.model}"
        if self.pad_mode == "reflect" and self.crop_pad >= 32:
            yield "crop_pad must be < 32 with pad_mode reflect"
        if self.flip_rule == "alternate" and self.augment != "image":
            yield "flip_rule alternate needs augment image"
        if self.headline_epoch not in self.eval_epochs:
            yield f"the headline epoch {self.headline_epoch} is not evaluated (eval_rule {self.eval_rule})"

    def unread(self) -> dict:
        """The knobs nothing reads under the others' values: the model knobs its model does not read
        (fastseed.models.register_model's `reads`: a user model reads none), the schedule's points
        outside the picard schedule, SGD's momentum under Adam, the crops, flips and cutout without
        augmentation, the chunk size outside chunk mode, lookahead's decay without lookahead."""
        from fastseed.models import MODEL_KNOBS, model_reads
        reads = model_reads(self.model)
        who = "a user model (it takes no knobs)" if ":" in self.model else f"model {self.model}"
        out = super().unread() | {k: f"{who} does not read it" for k in MODEL_KNOBS if k not in reads}
        when = {"lr_warmup_epochs": ("schedule", "picard"), "lr_decay_end": ("schedule", "picard"),
                "lr_floor_from": ("schedule", "picard"), "momentum": ("optimizer", "sgd"),
                "nesterov": ("optimizer", "sgd"), "chunk_size": ("augment", "chunk"),
                "lookahead_decay": ("lookahead_every", None), "lookahead_power": ("lookahead_every", None)}
        for k, (decider, only) in when.items():
            value = getattr(self, decider)
            if (only is None and value == 0) or (only is not None and value != only):
                out[k] = f"it is read only {'with lookahead' if only is None else f'with {decider} {only}'}"
        if self.augment == "none":  # plan.py: no crop offset, flip or cutout is drawn
            out.update(dict.fromkeys(("crop_pad", "pad_mode", "flip", "flip_rule", "cutout"),
                                     "augment none draws no crop, flip or cutout"))
        return out

    # --- what the knobs imply -------------------------------------------------------------------------
    def steps_per_epoch(self, n: int) -> int:
        """Training steps in a full epoch of n images."""
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def total_steps(self, n: int) -> int:
        """Training steps of a whole run on n images: airbench's ceil(steps per epoch · 9.9) for a
        fractional length, else every step of every epoch."""
        if self.train_epochs is not None:
            return math.ceil(self.steps_per_epoch(n) * self.train_epochs)
        return self.steps_per_epoch(n) * self.epochs

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


# --- ImageNet fine-tuning -----------------------------------------------------------------------------
T_MAX = Rule(f">= 1 or {EPOCH_RULE}", lambda v: v == EPOCH_RULE or (isinstance(v, int) and v >= 1))


@dataclass(frozen=True)
class Phase(Knobs):
    """One phase of a fine-tune: what trains, for how long, with which SGD, schedule, loss and evals.
    Its knobs are set as `PHASE.KNOB` (`head.lr=0.05`)."""
    name: str = knob(REQUIRED, rule=A_NAME)
    train: str = knob(REQUIRED, choices=("head", "all"))  # "head": backbone frozen, its BatchNorm in train mode
    steps: int = knob(REQUIRED, rule=AT_LEAST_ONE)
    batch_size: int = knob(REQUIRED, rule=AT_LEAST_ONE)
    # SGD, and a CosineAnnealingLR stepped once every `sched_every` optimiser steps
    lr: float = knob(REQUIRED, rule=POSITIVE)
    t_max: int | str = knob(REQUIRED, rule=T_MAX)  # CosineAnnealingLR T_max, or EPOCH_RULE
    eta_min: float = knob(REQUIRED, rule=NON_NEGATIVE)
    sched_every: int = knob(REQUIRED, rule=AT_LEAST_ONE)
    eval_every: int = knob(REQUIRED, rule=AT_LEAST_ONE)  # validation every this many steps (and at the end)
    momentum: float = knob(0.9, rule=BELOW_ONE)
    nesterov: bool = knob(True)
    weight_decay: float = knob(1e-4, rule=NON_NEGATIVE)
    # loss: ce_weight·CE + lsce_weight·LSCE(lsce_eps), as fastseed.kernels.lsce
    ce_weight: float = knob(1.0, rule=NON_NEGATIVE)
    lsce_weight: float = knob(0.0, rule=NON_NEGATIVE)
    lsce_eps: float = knob(0.0, rule=FRACTION)

    def problem(self) -> str | None:
        """Why this phase is not a valid one (one phrase naming the knob as PHASE.KNOB), or None."""
        problem = self.knob_problem()
        return None if problem is None else f"{self.name}.{problem}"

    def resolved_t_max(self, train_images: int) -> int:
        if self.t_max == EPOCH_RULE:  # ≥ 1: a tiny run has less than 1,000 batches an epoch
            return max(1, train_images // self.batch_size // 1000)
        return int(self.t_max)


@dataclass(frozen=True)
class Finetune(Recipe):
    """A two-phase ImageNet fine-tune (PROTOCOLS.md §2). Seeded: head init ("head" stream), data order
    ("order"), crops and flips ("augment"); the pretrained backbone is the same for every seed, and
    its file's sha256 (`weights`) is part of the protocol, so other weights make another store."""
    name: str = knob("", rule=A_NAME, settable=False)
    source: str = knob("", settable=False)
    backbone: str = knob("resnet50", choices=BACKBONES)
    phases: tuple[Phase, ...] = knob(())
    dataset: str = knob("imagenet", choices=("imagenet",), settable=False)
    weights: str = knob("", settable=False)  # sha256 of the weight file, filled in by the scan
    classes: int = knob(1000, rule=Rule(">= 2", lambda v: v >= 2))  # the first N classes (sorted wnids)
    image_size: int = knob(224, rule=Rule(">= 32", lambda v: v >= 32))
    mean: tuple[float, ...] = knob(IMAGENET_MEAN)
    std: tuple[float, ...] = knob(IMAGENET_STD)
    eval_batch_size: int = knob(250, rule=AT_LEAST_ONE)
    dtype: str = knob("bfloat16", choices=("float16", "bfloat16", "float32"))  # autocast on a GPU
    limit_steps: int | None = knob(None, rule=AT_LEAST_ONE)  # small-scale runs: at most this many steps a phase
    limit_batch: int | None = knob(None, rule=AT_LEAST_ONE)  # … and at most this many images a batch
    fixed: tuple[str, ...] = knob(())
    fix_seed: int = knob(0, rule=NON_NEGATIVE)
    deterministic: bool = knob(False)
    # --- knobs added after v1 ---------------------------------------------------------------------------
    # the head's init (HEAD_INITS); None: what fastseed did before issue #11, by backbone: nn.Linear's
    # kaiming-a-sqrt5 for the ResNet50s, normal-1e-5 for the ViT (so stores written then replay)
    head_init: str | None = knob(None, since=2, choices=HEAD_INITS + (None,))

    KIND = "an ImageNet fine-tune"
    STREAMS = ("augment", "head", "order")  # head init, data order, crops and flips

    def __post_init__(self):
        self.validate()

    def relations(self):
        if not self.phases:
            yield "phases: a fine-tune needs at least one phase"
        for p in self.phases:
            problem = p.problem()
            if problem:
                yield problem
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            yield f"phase names must differ, got {', '.join(names)}"
        if self.backbone == "dino_vits16" and self.image_size != 224:
            yield "image_size must be 224 for dino_vits16 (its position embeddings are for 224-pixel inputs)"
        if self.fixed_problem():
            yield self.fixed_problem()

    @property
    def head_rule(self) -> str:
        """The head init actually used (HEAD_INITS)."""
        if self.head_init is not None:
            return self.head_init
        return "normal-1e-5" if self.backbone == "dino_vits16" else "kaiming-a-sqrt5"

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


def protocol_from_json(text: str):
    """The recipe a store's JSON describes: a CIFAR CifarProtocol, an ImageNet Finetune, or a training
    function's TrainProtocol (rebuilt from the JSON alone: its module is not imported)."""
    from fastseed.recipe.function import TrainProtocol
    kinds = {"imagenet": Finetune, "function": TrainProtocol}
    try:
        kind = kinds.get(json.loads(text).get("dataset"), CifarProtocol)
    except (json.JSONDecodeError, AttributeError):
        raise FastseedError("protocol JSON is not a JSON object") from None
    return kind.from_json(text)
