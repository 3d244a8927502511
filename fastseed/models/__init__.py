"""Model builders, keyed by the Protocol's `model` field, and the dtype policy every model follows."""

import torch
from torch import nn

from fastseed import FastseedError
from fastseed.models.airbench import AirbenchNet
from fastseed.models.resnet9 import ResNet9


def build_model(protocol, classes: int = 10) -> nn.Module:
    if protocol.model == "resnet9":
        return ResNet9(width=protocol.width, classes=classes, celu_alpha=protocol.celu_alpha,
                       logit_scale=protocol.logit_scale, bn_eps=protocol.bn_eps,
                       bn_momentum=protocol.bn_momentum)
    if protocol.model == "airbench94":  # whitening weights: fit_whitening (engine/train.py), from the data
        return AirbenchNet(width=protocol.width, classes=classes, logit_scale=protocol.logit_scale,
                           bn_eps=protocol.bn_eps, bn_momentum=protocol.bn_momentum)
    if protocol.model == "resnet18":
        try:
            from torchvision.models import resnet18
        except ImportError:
            raise FastseedError("the resnet18 presets need torchvision (pip install torchvision)") from None
        return resnet18(num_classes=classes)  # torchvision's ResNet-18 and its own initialisation
    raise FastseedError(f"unknown model {protocol.model!r}")


def set_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the model to `dtype` but keep BatchNorm parameters and statistics in float32 (float64 when
    the whole net is float64, for exact CPU tests): Picard's fp16/fp32 split, applied to any net."""
    model.to(dtype)
    bn_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.to(bn_dtype)
    return model
