"""Picard's ResNet9 for CIFAR-10 (the layout of the author's script, PROTOCOLS.md §1).

Every conv is 3×3, stride 1, pad 1, bias-free, followed by BatchNorm and CELU(0.1):
  conv 3→64, pool · conv 64→128, pool · res[128, 128] · conv 128→256, pool · conv 256→256, pool ·
  res[256, 256] · global max pool · linear 256→10 (no bias) · ×0.1
The script runs the net in fp16 with BatchNorm kept in fp32 (`set_dtype`).
"""

from __future__ import annotations

import torch
from torch import nn

from fastseed.models.registry import register_model


def conv_bn(c_in: int, c_out: int, alpha: float, bn_eps: float, bn_momentum: float) -> nn.Sequential:
    bn = nn.BatchNorm2d(c_out, eps=bn_eps, momentum=bn_momentum)
    nn.init.ones_(bn.weight)  # the script fills BN weights with 1.0 explicitly
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), bn, nn.CELU(alpha))


class Residual(nn.Module):
    def __init__(self, channels: int, **kw):
        super().__init__()
        self.block = nn.Sequential(conv_bn(channels, channels, **kw), conv_bn(channels, channels, **kw))

    def forward(self, x):
        return x + self.block(x)


class ResNet9(nn.Module):
    def __init__(self, width: float = 1.0, classes: int = 10, celu_alpha: float = 0.1,
                 logit_scale: float = 0.1, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (64, 128, 256))
        kw = dict(alpha=celu_alpha, bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.features = nn.Sequential(
            conv_bn(3, c1, **kw), nn.MaxPool2d(2),
            conv_bn(c1, c2, **kw), nn.MaxPool2d(2),
            Residual(c2, **kw),
            conv_bn(c2, c3, **kw), nn.MaxPool2d(2),
            conv_bn(c3, c3, **kw), nn.MaxPool2d(2),
            Residual(c3, **kw),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(c3, classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x):
        return self.head(self.features(x)) * self.logit_scale

    def set_dtype(self, dtype: torch.dtype) -> "ResNet9":
        """Convs and head in `dtype`, BatchNorm in float32 (fastseed.models.set_dtype)."""
        from fastseed.models import set_dtype
        return set_dtype(self, dtype)


@register_model("resnet9", reads=("width", "celu_alpha", "logit_scale", "bn_eps", "bn_momentum"))
def resnet9(protocol, classes: int = 10) -> ResNet9:
    return ResNet9(width=protocol.width, classes=classes, celu_alpha=protocol.celu_alpha,
                   logit_scale=protocol.logit_scale, bn_eps=protocol.bn_eps, bn_momentum=protocol.bn_momentum)
