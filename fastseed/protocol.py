"""What a recipe is: every knob in one frozen dataclass, its canonical JSON and hash, its variants.

A `Recipe` is hashed (sha256 of its canonical JSON) and the hash keys the results store, so two runs are
comparable exactly when their recipes are equal. Two kinds share that base: `Protocol` (a CIFAR-10
training, trained by the pack engine) and `Finetune` (an ImageNet fine-tune made of `Phase`s).

Every field is a knob declared with `knob(...)`: its type (the annotation), what values are allowed and
since when it exists. That one table drives validation (one line naming the knob and what is allowed),
parsing of `--set KEY=VALUE` text and protocol files (fastseed.overrides) and the JSON round trip.

Knobs added after v1 carry `since=2` and are left out of the JSON -- hence of the hash -- while they hold
their default, so every recipe that does not use them keeps the hash (and the results store) it had
before they existed (tests/test_protocol_hashes.py pins the hashes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass

from fastseed import FastseedError
from fastseed.data.imagenet import IMAGENET_MEAN, IMAGENET_STD  # the pipelines' constants
from fastseed.models.imagenet import BACKBONES, HEAD_INITS
from fastseed.seeds import Seed

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # Picard's script (the common CIFAR constants, not exact means)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
EPOCH_RULE = "batches_per_epoch//1000"  # RN50 phase 1's T_max, resolved against the data at run time


# --- knobs ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A condition on one knob's value, and how to say it to a user ("> 0")."""
    text: str
    holds: typing.Callable[[object], bool]


POSITIVE = Rule("> 0", lambda v: v > 0)
NON_NEGATIVE = Rule(">= 0", lambda v: v >= 0)
AT_LEAST_ONE = Rule(">= 1", lambda v: v >= 1)
FRACTION = Rule("in [0, 1]", lambda v: 0 <= v <= 1)
BELOW_ONE = Rule("in [0, 1)", lambda v: 0 <= v < 1)
A_NAME = Rule("a non-empty name on one line", lambda v: bool(v.strip()) and "\n" not in v)


def knob(default, *, since: int = 1, choices: tuple = (), rule: Rule | None = None, settable: bool = True):
    """A dataclass field with what the override parser and the validation need to know about it.
    `settable=False`: filled in by fastseed itself (a name, a file's digest), never by `--set`."""
    meta = {"since": since, "choices": tuple(choices), "rule": rule, "settable": settable}
    return dataclasses.field(default=default, metadata=meta)


def optional_of(hint):
    """T for `T | None`, else None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)) and len(args) == 1:
            return args[0]
    return None


def describe_type(hint) -> str:
    inner = optional_of(hint)
    if inner is not None:
        return f"{describe_type(inner)} or none"
    if typing.get_origin(hint) is tuple:
        return f"a comma-separated list of {describe_type(typing.get_args(hint)[0])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def type_ok(value, hint) -> bool:
    """Whether `value` has the knob's type (an int is a fine float; a bool is never a number)."""
    inner = optional_of(hint)
    if inner is not None:
        return value is None or type_ok(value, inner)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(type_ok(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(type_ok(v, typing.get_args(hint)[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return isinstance(value, hint)


def show(value) -> str:
    """A knob's value as a user writes it after `--set KEY=`."""
    if isinstance(value, tuple):
        return ",".join(show(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


_HINTS: dict[type, dict] = {}


class Recipe:
    """The base of every recipe kind: canonical JSON, hash, JSON round trip, variants, seeds, knobs and
    their validation. Subclasses are frozen dataclasses whose fields are all `knob`s."""

    # --- the knob table ---------------------------------------------------------------------------------
    @classmethod
    def hints(cls) -> dict:
        if cls not in _HINTS:  # evaluating the annotations is slow: once per class
            _HINTS[cls] = typing.get_type_hints(cls)
        return _HINTS[cls]

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    def check_knob(self, name: str, value) -> str | None:
        """Why `value` is not allowed for knob `name` (one phrase naming the knob), or None."""
        f, hint = self.fields()[name], self.hints()[name]
        if not type_ok(value, hint):
            return f"{name} must be {describe_type(hint)}, got {value!r}"
        choices, rule = f.metadata.get("choices"), f.metadata.get("rule")
        if choices and value not in choices:
            return f"{name} must be one of {', '.join(map(str, choices))}, got {show(value)}"
        if rule is not None and value is not None and not rule.holds(value):
            return f"{name} must be {rule.text}, got {show(value)}"
        return None

    def validate(self) -> None:
        """Every knob alone, then the rules between knobs (`relations`); the first problem is raised."""
        for name in self.fields():
            problem = self.check_knob(name, getattr(self, name))
            if problem:
                raise FastseedError(f"protocol {self.name!r}: {problem}")
        for problem in self.relations():
            raise FastseedError(f"protocol {self.name!r}: {problem}")

    def relations(self):
        """Yield a phrase for every rule between knobs that this recipe breaks."""
        return iter(())

    # --- identity ---------------------------------------------------------------------------------------
    def to_json(self) -> str:
        """Canonical JSON. Knobs added after v1 appear only when they differ from their default, so a
        recipe's hash is the same before and after a knob is added (tests/test_protocol_hashes.py)."""
        fields = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("since", 1) > 1 and fields[f.name] == f.default:
                del fields[f.name]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str):
        """The recipe a canonical JSON describes (lists back to tuples, nested phases rebuilt)."""
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as e:
            raise FastseedError(f"protocol JSON is not valid JSON: {e}") from None
        unknown = sorted(set(fields) - set(cls.fields()))
        if unknown:
            raise FastseedError(f"protocol JSON has unknown knob(s) {', '.join(unknown)} "
                                f"(written by a newer fastseed?)")
        hints = cls.hints()
        return cls(**{k: from_plain(v, hints[k]) for k, v in fields.items()})

    def variant(self, **changes):
        """The same recipe with some knobs changed, under a name that says so: `smoke[augment=image]`.
        (The name is part of the hash: this naming is frozen, since stores were written under it.)"""
        changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changes:
            return self
        tag = ",".join(f"{k}={'+'.join(v) if isinstance(v, tuple) else v}" for k, v in sorted(changes.items()))
        return dataclasses.replace(self, name=f"{self.name}[{tag}]", **changes)

    def seed(self, value: int) -> Seed:
        """Run `value`'s random streams under this recipe's fixed-stream settings."""
        return Seed(value, fixed=frozenset(self.fixed), fix_seed=self.fix_seed)


def from_plain(value, hint):
    """A JSON value (lists, dicts) as the knob's Python value (tuples, nested dataclasses)."""
    inner = optional_of(hint)
    if inner is not None:
        return None if value is None else from_plain(value, inner)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        item = typing.get_args(hint)[0]
        return tuple(from_plain(v, item) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return hint(**value)
    return value


# --- CIFAR-10 -----------------------------------------------------------------------------------------
STREAMS_CIFAR = ("augment", "init", "order")  # the seed streams a CIFAR run draws from


@dataclass(frozen=True)
class Protocol(Recipe):
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
    width: float = knob(1.0, rule=POSITIVE)  # channel multiplier of the built-in nets
    celu_alpha: float = knob(0.1, rule=POSITIVE)
    logit_scale: float = knob(0.1, rule=POSITIVE)
    bn_eps: float = knob(1e-5, rule=POSITIVE)
    bn_momentum: float = knob(0.1, rule=FRACTION)
    dtype: str = knob("float16", choices=("float16", "bfloat16", "float32", "float64"))  # on a GPU; BN float32
    # optimisation: "sgd" (momentum, nesterov, weight decay below) or "adam" (torch defaults but lr, wd)
    optimizer: str = knob("sgd", choices=("sgd", "adam"))
    epochs: int = knob(22, rule=AT_LEAST_ONE)
    batch_size: int = knob(500, rule=AT_LEAST_ONE)
    eval_batch_size: int = knob(100, rule=AT_LEAST_ONE)
    lr: float = knob(0.2, rule=POSITIVE)
    momentum: float = knob(0.9, rule=BELOW_ONE)
    nesterov: bool = knob(True)
    weight_decay: float = knob(1e-3, rule=NON_NEGATIVE)
    lr_warmup_epochs: int = knob(4, rule=NON_NEGATIVE)  # Picard's LambdaLR, see engine/schedule.py
    lr_decay_end: int = knob(22, rule=AT_LEAST_ONE)
    lr_floor_from: int | None = knob(None, rule=AT_LEAST_ONE)
    schedule: str = knob("picard", choices=("picard", "constant", "triangle"))
    drop_last: bool = knob(True)  # Picard drops the last partial batch; a plain DataLoader keeps it
    # loss: ce_weight·CE + lsce_weight·LSCE(eps)
    ce_weight: float = knob(1.0, rule=NON_NEGATIVE)
    lsce_weight: float = knob(2.0, rule=NON_NEGATIVE)
    lsce_eps: float = knob(0.2, rule=FRACTION)
    # augmentation: "chunk" (Picard: one crop/flip/cutout per chunk of chunk_size in dataset order),
    # "image" (fresh draws per image) or "none"
    augment: str = knob("chunk", choices=("chunk", "image", "none"))
    chunk_size: int = knob(500, rule=AT_LEAST_ONE)
    crop_pad: int = knob(4, rule=NON_NEGATIVE)
    flip: bool = knob(True)
    cutout: int = knob(8, rule=NON_NEGATIVE)
    # evaluation: "picard" = epochs e == 0 or e % 5 == 1; "every" = every epoch; "last".
    # headline: "picard" = the last epoch of the picard rule (the number the paper reports), "last".
    eval_rule: str = knob("picard", choices=("picard", "every", "last"))
    headline_rule: str = knob("picard", choices=("picard", "last"))
    # randomness: streams in `fixed` draw from seed `fix_seed` in every run (fastseed.seeds), so a
    # study can vary init alone, order alone, …; `deterministic` asks torch for deterministic kernels
    # (cuDNN/cuBLAS) so GPU non-determinism can be measured as a factor of its own.
    fixed: tuple[str, ...] = knob(())
    fix_seed: int = knob(0, rule=NON_NEGATIVE)
    deterministic: bool = knob(False)
    # --- knobs added after v1: left out of the JSON (hence of the hash) while at their default --------
    # length: stop after ceil(train_epochs · steps per epoch) steps, mid-epoch; `epochs` = ceil(train_epochs)
    train_epochs: float | None = knob(None, since=2, rule=POSITIVE)
    # "torch": lr and weight_decay are torch.optim.SGD's. "per1024" (airbench, after Myrtle): lr and
    # weight_decay per 1,024 examples, decoupled from the momentum; see engine/schedule.py
    hyper_units: str = knob("torch", since=2, choices=("torch", "per1024"))
    bias_scaler: float = knob(1.0, since=2, rule=POSITIVE)  # BatchNorm biases' lr ×
    loss_reduction: str = knob("mean", since=2, choices=("mean", "sum"))  # over the batch
    # schedule "triangle" (stepped every training step): (start, peak position as a fraction of the
    # steps, end) of a piecewise-linear multiplier start → 1 → end; see engine/schedule.py
    lr_triangle: tuple[float, ...] = knob((), since=2)
    # lookahead (airbench): every N steps slow ← lerp(slow, weights, 1 − d), weights ← slow, with
    # d = lookahead_decay^N · (step / steps)^lookahead_power; the weights end as the slow copy. 0 = off
    lookahead_every: int = knob(0, since=2, rule=NON_NEGATIVE)
    lookahead_decay: float = knob(0.0, since=2, rule=FRACTION)
    lookahead_power: float = knob(0.0, since=2, rule=NON_NEGATIVE)
    # a model with a data-fitted whitening conv (airbench94): its bias trains in the first N epochs only
    whiten_bias_epochs: int | None = knob(None, since=2, rule=NON_NEGATIVE)
    # augmentation: crop padding "zeros" (Picard) or "reflect"; flips "random" (drawn per epoch) or
    # "alternate" (drawn once per image; every odd epoch flips them all: airbench's alternating flip)
    pad_mode: str = knob("zeros", since=2, choices=("zeros", "reflect"))
    flip_rule: str = knob("random", since=2, choices=("random", "alternate"))
    # test-time augmentation: 0 none, 1 mirror, 2 mirror + 1-pixel translations (airbench's levels)
    tta: int = knob(0, since=2, choices=(0, 1, 2))
    # data order: "per_epoch" draws a new permutation every epoch; "once" draws ONE permutation per run
    # and trains every epoch in it (the ResNet-18 study's exp 2: a Subset shuffled once, shuffle=False)
    order_rule: str = knob("per_epoch", since=2, choices=("per_epoch", "once"))
    # the test loss: "image_mean" (the mean over test images) or "batch_mean" (the mean of the per-batch
    # means over batches of eval_batch_size, the last one partial: the ResNet-18 study's figure)
    test_loss: str = knob("image_mean", since=2, choices=("image_mean", "batch_mean"))
    # a user model's source digest (sha256 of its module file), filled in by fastseed.overrides
    model_digest: str = knob("", since=2, settable=False)

    STREAMS = STREAMS_CIFAR  # a plain class attribute, not a field

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
        if list(self.fixed) != sorted(set(self.fixed)) or not set(self.fixed) <= set(self.STREAMS):
            yield f"fixed must be streams among {', '.join(self.STREAMS)} (sorted, once each), got {show(self.fixed)}"
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

    RULES = {"train": ("head", "all"), "steps": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "lr": POSITIVE,
             "eta_min": NON_NEGATIVE, "sched_every": AT_LEAST_ONE, "eval_every": AT_LEAST_ONE,
             "momentum": BELOW_ONE, "weight_decay": NON_NEGATIVE, "ce_weight": NON_NEGATIVE,
             "lsce_weight": NON_NEGATIVE, "lsce_eps": FRACTION}

    def problem(self) -> str | None:
        """Why this phase is not a valid one (one phrase naming the knob), or None."""
        hints = typing.get_type_hints(Phase)
        for f in dataclasses.fields(self):
            value, rule, key = getattr(self, f.name), self.RULES.get(f.name), f"{self.name}.{f.name}"
            if not type_ok(value, hints[f.name]):
                return f"{key} must be {describe_type(hints[f.name])}, got {value!r}"
            if isinstance(rule, tuple) and value not in rule:
                return f"{key} must be one of {', '.join(rule)}, got {value}"
            if isinstance(rule, Rule) and not rule.holds(value):
                return f"{key} must be {rule.text}, got {show(value)}"
        if self.t_max != EPOCH_RULE and not (isinstance(self.t_max, int) and self.t_max >= 1):
            return f"{self.name}.t_max must be >= 1 or {EPOCH_RULE}, got {self.t_max}"
        return None

    def resolved_t_max(self, train_images: int) -> int:
        if self.t_max == EPOCH_RULE:  # ≥ 1: a tiny run has less than 1,000 batches an epoch
            return max(1, train_images // self.batch_size // 1000)
        return int(self.t_max)


STREAMS_IMAGENET = ("augment", "head", "order")


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

    STREAMS = STREAMS_IMAGENET

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
        if list(self.fixed) != sorted(set(self.fixed)) or not set(self.fixed) <= set(self.STREAMS):
            yield f"fixed must be streams among {', '.join(self.STREAMS)} (sorted, once each), got {show(self.fixed)}"

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


def protocol_from_json(text: str) -> Protocol | Finetune:
    """The recipe a store's JSON describes: a CIFAR Protocol or an ImageNet Finetune."""
    try:
        kind = Finetune if json.loads(text).get("dataset") == "imagenet" else Protocol
    except (json.JSONDecodeError, AttributeError):
        raise FastseedError("protocol JSON is not a JSON object") from None
    return kind.from_json(text)
