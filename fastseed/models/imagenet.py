"""ImageNet backbones for fine-tuning (Picard Table 2), loaded from weight files the user provides.

    torchvision ResNet50   (supervised; torchvision's checkpoint, its `fc` is dropped)   2048-d features
    DINO ResNet50          (dino_resnet50_pretrain.pth: torchvision key names, no fc)     2048-d features
    DINO ViT-S/16          (dino_deitsmall16_pretrain.pth: timm's key names)              384-d CLS token

Every seed gets the same backbone weights and a new linear head drawn from its "head" stream. Files
are read with `torch.load(weights_only=True)`, so a crafted pickle cannot run code; the checkpoint's
keys are mapped onto ours (wrappers such as {"teacher": …}, prefixes such as "module."/"backbone."
removed, the old classifier dropped) and any key the backbone needs but the file lacks is an error.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fastseed import FastseedError

BACKBONES = ("resnet50", "dino_resnet50", "dino_vits16")
# How a new linear head starts (Finetune.head_init). "kaiming-a0": torch.nn.init.kaiming_uniform_ with its
# default a = 0, U(±√(6/fan_in)) = U(±0.0541) for 2,048 features, and a normal(0, 1) bias: Picard's
# ResNet50s. "kaiming-a-sqrt5": the same with nn.Linear's own a = √5, U(±1/√fan_in), a bound 2.45× smaller
# (what fastseed did before issue #11). "normal-1e-5": normal(0, 1e-5) weight, zero bias: the DINO ViT.
HEAD_INITS = ("kaiming-a0", "kaiming-a-sqrt5", "normal-1e-5")
FEATURES = {"resnet50": 2048, "dino_resnet50": 2048, "dino_vits16": 384}
WRAPPERS = ("teacher", "state_dict", "model", "student")  # DINO's full checkpoints keep both nets
PREFIXES = ("module.", "backbone.", "encoder.")
CLASSIFIER_KEYS = ("fc.", "head.", "head_drop.")  # the pretraining heads: never part of the backbone


def build_backbone(name: str) -> nn.Module:
    """The architecture alone (random init), returning features (B, FEATURES[name])."""
    if name in ("resnet50", "dino_resnet50"):
        try:
            from torchvision.models import resnet50
        except ImportError:
            raise FastseedError("the ResNet50 presets need torchvision (pip install torchvision)") from None
        net = resnet50()
        net.fc = nn.Identity()  # features = global-average-pooled 2048-d
        return net
    if name == "dino_vits16":
        try:
            import timm
        except ImportError:
            raise FastseedError("the DINO ViT-S/16 preset needs timm (pip install 'fastseed[imagenet]')") from None
        # DINO's ViT-S/16 is timm's vit_small_patch16_224 (LayerNorm eps 1e-6, qkv bias); features are
        # the final-norm CLS token, 384-d, as Picard's "384-d features".
        return timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, global_pool="token")
    raise FastseedError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def make_head(name: str, classes: int, generator_context, init: str | None = None) -> nn.Linear:
    """The new linear head, initialised inside `generator_context` (the seed's "head" stream) by the rule
    `init` (HEAD_INITS; None: fastseed's rule before issue #11, kaiming-a-sqrt5 for the ResNet50s and
    normal-1e-5 for the ViT, as Finetune.head_rule says). PROTOCOLS.md §2: the ResNet50s' head is
    kaiming_uniform_(weight) with its default a = 0, NOT nn.Linear's a = √5."""
    init = init or ("normal-1e-5" if name == "dino_vits16" else "kaiming-a-sqrt5")
    if init not in HEAD_INITS:
        raise FastseedError(f"unknown head init {init!r}; choose one of {', '.join(HEAD_INITS)}")
    head = nn.Linear(FEATURES[name], classes)
    with generator_context, torch.no_grad():
        if init == "normal-1e-5":
            head.weight.normal_(0.0, 1e-5)
            head.bias.zero_()
        else:
            nn.init.kaiming_uniform_(head.weight, a=0.0 if init == "kaiming-a0" else math.sqrt(5))
            head.bias.normal_(0.0, 1.0)
    return head


class Finetuner(nn.Module):
    """Backbone + head; phase 1 trains the head alone (`freeze_backbone`), phase 2 everything."""

    def __init__(self, backbone: nn.Module, head: nn.Linear):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone(x))

    def freeze_backbone(self, frozen: bool) -> None:
        # Frozen weights, but the module stays in train mode: BatchNorm still normalises with batch
        # statistics and moves its running statistics (Picard's quirk, kept on purpose).
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)


@dataclass(frozen=True)
class LoadReport:
    loaded: int
    unexpected: tuple[str, ...]  # keys in the file the backbone does not have (ignored, reported)
    dropped: tuple[str, ...]     # the pretraining classifier's keys (expected, ignored)


def weights_digest(path) -> str:
    """The sha256 of a weight file (part of a fine-tune's protocol: other weights, another store)."""
    path = Path(path)
    if not path.is_file():
        raise FastseedError(f"--weights {path}: no such file")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path) -> dict:
    """A flat {name: tensor} from a weight file, loaded safely (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FastseedError(f"weight file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FastseedError(f"{path}: refused by safe loading (weights_only=True): {first}") from None
    except Exception as e:  # torch.load fails on junk with whatever error its parser meets first
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FastseedError(f"{path}: not a readable PyTorch weight file: {first}") from None
    for key in WRAPPERS:  # {"teacher": {...}, "student": {...}, "epoch": …} and the like
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FastseedError(f"{path}: expected a state dict of tensors (or one wrapped under "
                            f"{'/'.join(WRAPPERS)}), found {type(obj).__name__}")
    return obj


def map_keys(state: dict) -> tuple[dict, tuple[str, ...]]:
    """Strip wrapper prefixes; split off the pretraining classifier. Returns (backbone keys, dropped)."""
    mapped, dropped = {}, []
    for key, value in state.items():
        name = key
        stripped = True
        while stripped:
            stripped = False
            for prefix in PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], True
        if name.startswith(CLASSIFIER_KEYS):
            dropped.append(key)
        else:
            mapped[name] = value
    return mapped, tuple(dropped)


def load_backbone(name: str, path) -> tuple[nn.Module, LoadReport]:
    """Backbone `name` with the weights of file `path`. Missing or mis-shaped keys are an error."""
    net = build_backbone(name)
    state, dropped = map_keys(read_state_dict(path))
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = tuple(k for k in state if k not in own)
    if missing:
        show = ", ".join(missing[:4]) + (f" … ({len(missing)} in all)" if len(missing) > 4 else "")
        raise FastseedError(f"{path} does not fit backbone {name}: missing {show}"
                            + (f"; it has e.g. {', '.join(list(unexpected)[:3])}" if unexpected else ""))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if state[k].shape != own[k].shape]
    if wrong:
        raise FastseedError(f"{path} does not fit backbone {name}: shape of {wrong[0]}"
                            + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    net.load_state_dict({k: state[k] for k in own})
    return net, LoadReport(loaded=len(own), unexpected=unexpected, dropped=dropped)
