"""airbench94's net as fastseed builds it: the layout of make_net94, its frozen weights, its init, and
a whitening layer that whitens the data it was fitted on."""

import pytest
import torch
from torch import nn

from fastseed.data.cifar import load_cifar10
from fastseed.engine.train import init_model
from fastseed.models import set_dtype
from fastseed.models.airbench import AirbenchNet, patch_covariance, whitening_weights
from fastseed.recipe.presets import get_preset

FAST94 = get_preset("fast94")


def expected_parameters(widths=(64, 256, 256)):
    """By hand: whitening 2×2 conv 3→24 with bias; per ConvGroup a→b two bias-free 3×3 convs (a→b,
    b→b) and two BNs (weight + bias); linear 256→10 without bias. Frozen: the whitening weights and
    every BN weight."""
    c1, c2, c3 = widths
    whiten = 24 * 3 * 2 * 2 + 24
    groups = sum(9 * a * b + 9 * b * b + 4 * b for a, b in [(24, c1), (c1, c2), (c2, c3)])
    frozen = 24 * 3 * 2 * 2 + 2 * (c1 + c2 + c3)
    total = whiten + groups + c3 * 10
    return total, total - frozen


def test_parameter_count_is_airbench94():
    net = AirbenchNet()
    total, trained = expected_parameters()
    assert sum(p.numel() for p in net.parameters()) == total == 1_972_792
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == trained == 1_971_352
    assert sum(p.numel() for p in AirbenchNet(width=0.25).parameters()) == expected_parameters((16, 64, 64))[0]


def test_layers_follow_make_net94():
    net = init_model(FAST94, FAST94.seed(0))
    assert net.whiten.kernel_size == (2, 2) and net.whiten.padding == (0, 0) and not net.whiten.weight.requires_grad
    assert net.whiten.bias.requires_grad and torch.all(net.whiten.bias == 0)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(b.eps == 1e-12 and b.momentum == pytest.approx(0.4) for b in bns)
    assert all(torch.all(b.weight == 1) and not b.weight.requires_grad and b.bias.requires_grad for b in bns)
    convs = [m for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and n != "whiten"]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(24, 64), (64, 64), (64, 256), (256, 256),
                                                                 (256, 256), (256, 256)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    for c in convs:  # partial identity: the first in_channels filters pass their input through
        n = c.in_channels
        eye = torch.zeros(n, n, 3, 3)
        eye[range(n), range(n), 1, 1] = 1
        assert torch.equal(c.weight[:n].detach(), eye)
        assert c.out_channels == n or c.weight[n:].abs().sum() > 0  # the rest: random
    assert net.head.bias is None and net.logit_scale == pytest.approx(1 / 9)


def test_forward_shapes_and_scaled_logits():
    net = AirbenchNet(width=0.25).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = net.pool(net.blocks(torch.nn.functional.gelu(net.whiten(x))))
        assert features.shape == (3, 64, 1, 1)  # 32 → 31 (2×2, no pad) → 15 → 7 → 3 → pool 3 → 1
        assert torch.allclose(net(x), net.head(features.flatten(1)) / 9)


def test_fp16_net_keeps_batchnorm_in_fp32():
    net = set_dtype(AirbenchNet(width=0.25), torch.float16)
    assert net.whiten.weight.dtype == torch.float16 and net.blocks[0].norm1.bias.dtype == torch.float32
    assert not net.whiten.weight.requires_grad and not net.blocks[0].norm1.weight.requires_grad


@pytest.fixture(scope="module")
def cifar(real_cifar_root):
    return load_cifar10(real_cifar_root)


def test_whitening_layer_whitens_the_images_it_was_fitted_on(cifar):
    images = torch.from_numpy(cifar.train_x[:5000])
    w = whitening_weights(images, FAST94.mean, FAST94.std)
    assert w.shape == (24, 3, 2, 2) and w.dtype == torch.float64
    assert torch.equal(w[12:], -w[:12])  # the filters and their negatives
    m = torch.tensor(FAST94.mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(FAST94.std, dtype=torch.float64).view(1, 3, 1, 1)
    x = (images.double() / 255 - m) / s
    out = torch.nn.functional.conv2d(x, w[:12])  # one 12-vector per 2×2 patch
    cov = patch_covariance(out, kernel=1)
    values = torch.linalg.eigvalsh(patch_covariance(x, kernel=2)).flip(0)
    off = cov - torch.diag(cov.diagonal())
    assert off.abs().max() < 1e-9  # decorrelated
    # unit variance but for the 5e-4 damping: λ/(λ + 5e-4) per direction
    assert torch.allclose(cov.diagonal(), values / (values + 5e-4), rtol=1e-9)
    assert cov.diagonal()[:6].min() > 0.99 and cov.diagonal().min() > 0.5


def test_whitening_is_data_not_seed_and_only_uses_the_first_5000_images(cifar):
    images = torch.from_numpy(cifar.train_x[:6000])
    w = whitening_weights(images, FAST94.mean, FAST94.std)
    assert torch.equal(w, whitening_weights(images[:5000], FAST94.mean, FAST94.std))
    changed = images.clone()
    changed[5000:] = 0
    assert torch.equal(w, whitening_weights(changed, FAST94.mean, FAST94.std))
    vectors = w[:12].flatten(1)  # each direction oriented: its largest-magnitude entry positive
    assert torch.all(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)) > 0)
