"""The ResNet-18 study's net (PROTOCOLS.md §3): torchvision's `resnet18(num_classes=10)`, unmodified,
with its own initialisation."""

from __future__ import annotations

from torch import nn

from fastseed import FastseedError
from fastseed.models.registry import register_model


@register_model("resnet18")  # torchvision's net as it is: it reads no knob
def resnet18(protocol, classes: int = 10) -> nn.Module:
    try:
        from torchvision.models import resnet18 as torchvision_resnet18
    except ImportError:
        raise FastseedError("the resnet18 presets need torchvision (pip install torchvision)") from None
    return torchvision_resnet18(num_classes=classes)
