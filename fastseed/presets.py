"""Named protocols: every knob of a recipe in one frozen dataclass, each citing its source.

A Protocol is hashed (sha256 of its canonical JSON) and the hash keys the results store, so two runs
are comparable exactly when their protocols are equal. Changing a preset's field changes its hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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

    def __post_init__(self):
        checks = {
            "augment": self.augment in ("chunk", "image", "none"),
            "optimizer": self.optimizer in ("sgd", "adam"),
            "schedule": self.schedule in ("picard", "constant"),
            "eval_rule": self.eval_rule in ("picard", "every"),
            "headline_rule": self.headline_rule in ("picard", "last"),
            "dtype": self.dtype in ("float16", "bfloat16", "float32", "float64"),
            "epochs": self.epochs > 0,
            "batch_size": self.batch_size > 0 and self.eval_batch_size > 0,
            "chunk_size": self.chunk_size > 0,
            "fixed": set(self.fixed) <= set(STREAMS) and list(self.fixed) == sorted(set(self.fixed)),
            "fix_seed": self.fix_seed >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise FastseedError(f"protocol {self.name!r}: invalid {', '.join(bad)}")
        if self.headline_epoch not in self.eval_epochs:
            raise FastseedError(f"protocol {self.name!r}: headline epoch is not evaluated")

    # --- identity -------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> "Protocol":
        fields = json.loads(text)
        for name in ("mean", "std", "fixed"):
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

    @property
    def eval_epochs(self) -> tuple:
        if self.eval_rule == "every":
            return tuple(range(self.epochs))
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
    ]
}


def get_preset(name: str) -> Protocol:
    try:
        return PRESETS[name]
    except KeyError:
        raise FastseedError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
