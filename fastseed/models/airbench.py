"""airbench94's net (Jordan 2024, arXiv 2404.00498; the PyPI package airbench 0.1.8, make_net94).

  whiten: conv 2×2, 3→24, no padding (32 → 31), weights fitted to the data and frozen, bias trained
  GELU · ConvGroup(24→64) · ConvGroup(64→256) · ConvGroup(256→256) · max pool 3 (3×3 → 1×1)
  linear 256→10 without bias · ×1/9
  ConvGroup(a→b): conv 3×3 a→b · max pool 2 · BN · GELU · conv 3×3 b→b · BN · GELU

The 3×3 convs are bias-free and start as a partial identity: default (Kaiming-uniform) init, then the
first `in_channels` filters replaced by the identity (dirac), so each block starts by passing its input
through. BatchNorm trains its bias only (weight frozen at 1), eps 1e-12. The fused pack (engine/pack.py)
keeps every frozen weight frozen.

The whitening weights come from the data, not from a seed: the eigenvectors of the (uncentred) 2×2
patch covariance of the first 5,000 training images, scaled by 1/sqrt(eigenvalue + 5e-4), and their
negatives — 24 filters whose outputs are decorrelated with unit variance (the negatives let the GELU
pass both signs). Computed once in float64, the same for every seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastseed.models.registry import register_model

WHITEN_IMAGES = 5000  # the first 5,000 training images, dataset order
WHITEN_EPS = 5e-4  # added to each eigenvalue: the flattest directions are not blown up into noise
WHITEN_KERNEL = 2


def partial_identity_conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


def frozen_weight_batchnorm(channels: int, eps: float, momentum: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)  # weight 1, bias 0 at init
    bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, bn_eps: float, bn_momentum: float):
        super().__init__()
        self.conv1 = partial_identity_conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = frozen_weight_batchnorm(c_out, bn_eps, bn_momentum)
        self.conv2 = partial_identity_conv(c_out, c_out)
        self.norm2 = frozen_weight_batchnorm(c_out, bn_eps, bn_momentum)

    def forward(self, x):
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))
        return F.gelu(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    def __init__(self, width: float = 1.0, classes: int = 10, logit_scale: float = 1 / 9,
                 bn_eps: float = 1e-12, bn_momentum: float = 0.4):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (64, 256, 256))
        c0 = 2 * 3 * WHITEN_KERNEL ** 2
        self.whiten = nn.Conv2d(3, c0, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set by fit_whitening, never trained
        with torch.no_grad():
            self.whiten.bias.zero_()
        self.blocks = nn.Sequential(ConvGroup(c0, c1, bn_eps, bn_momentum), ConvGroup(c1, c2, bn_eps, bn_momentum),
                                    ConvGroup(c2, c3, bn_eps, bn_momentum))
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(c3, classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x):
        x = self.blocks(F.gelu(self.whiten(x)))
        return self.head(self.pool(x).flatten(1)) * self.logit_scale

    @torch.no_grad()
    def fit_whitening(self, weights: torch.Tensor) -> "AirbenchNet":
        self.whiten.weight.copy_(weights)
        return self

    # --- the engine's hooks (fastseed/models/registry.py) ---------------------------------------------
    def fit_to_data(self, images: torch.Tensor, protocol) -> dict:
        """The whitening filters, fitted to the training images: the same for every seed."""
        return {"whiten.weight": whitening_weights(images, protocol.mean, protocol.std)}

    def frozen_parameters(self, epoch: int, protocol) -> set:
        """The whitening bias trains in the first `whiten_bias_epochs` epochs only (airbench94)."""
        stop = protocol.whiten_bias_epochs
        return {"whiten.bias"} if stop is not None and epoch >= stop else set()


@register_model("airbench94", reads=("width", "logit_scale", "bn_eps", "bn_momentum", "whiten_bias_epochs"))
def airbench94(protocol, classes: int = 10) -> AirbenchNet:
    """Whitening weights come later, from the data: AirbenchNet.fit_to_data."""
    return AirbenchNet(width=protocol.width, classes=classes, logit_scale=protocol.logit_scale,
                       bn_eps=protocol.bn_eps, bn_momentum=protocol.bn_momentum)


def patch_covariance(x: torch.Tensor, kernel: int = WHITEN_KERNEL, chunk: int = 500) -> torch.Tensor:
    """Uncentred covariance (mean of p pᵀ) of all kernel×kernel patches (stride 1) of x (N,C,H,W),
    flattened in conv-weight order (c, row, col); summed in chunks in x's dtype."""
    n, c = x.shape[:2]
    cov, count = torch.zeros(c * kernel ** 2, c * kernel ** 2, dtype=x.dtype, device=x.device), 0
    for i in range(0, n, chunk):
        p = x[i: i + chunk].unfold(2, kernel, 1).unfold(3, kernel, 1)  # (n, C, H', W', k, k)
        p = p.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kernel ** 2)
        cov += p.T @ p
        count += p.shape[0]
    return cov / count


def whitening_weights(images: torch.Tensor, mean, std, kernel: int = WHITEN_KERNEL,
                      eps: float = WHITEN_EPS, n: int = WHITEN_IMAGES) -> torch.Tensor:
    """The frozen whitening filters (2·C·k², C, k, k), float64, from uint8 training images (N,C,H,W):
    eigenvectors by decreasing eigenvalue, each scaled by 1/sqrt(eigenvalue + eps), then their negatives.
    eigh's signs are arbitrary (they differ between LAPACK builds), so each eigenvector is oriented to
    make its largest-magnitude entry positive: the same filters on every machine."""
    m = torch.tensor(mean, dtype=torch.float64, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64, device=images.device).view(1, -1, 1, 1)
    x = (images[:n].to(torch.float64) / 255.0 - m) / s
    cov = patch_covariance(x, kernel).cpu()
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0), vectors.flip(1).T  # rows: eigenvectors, largest eigenvalue first
    top = vectors.abs().argmax(1, keepdim=True)
    vectors = vectors * vectors.gather(1, top).sign()
    filters = vectors / torch.sqrt(values + eps)[:, None]
    c = images.shape[1]
    return torch.cat([filters, -filters]).view(-1, c, kernel, kernel)
