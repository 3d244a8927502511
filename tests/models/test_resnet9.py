"""ResNet9 is the layout of PROTOCOLS.md §1: parameter count, dtype policy, output."""

import torch
from torch import nn

from fastseed.models.resnet9 import ResNet9


def expected_parameters(widths=(64, 128, 256)):
    """Count from the protocol's text: 3×3 bias-free convs, BN (weight+bias), linear 256→10 no bias."""
    c1, c2, c3 = widths
    convs = [(3, c1), (c1, c2), (c2, c2), (c2, c2), (c2, c3), (c3, c3), (c3, c3), (c3, c3)]
    return sum(9 * a * b + 2 * b for a, b in convs) + c3 * 10


def test_parameter_count_matches_protocol():
    assert sum(p.numel() for p in ResNet9().parameters()) == expected_parameters() == 2_440_256
    assert sum(p.numel() for p in ResNet9(width=0.125).parameters()) == expected_parameters((8, 16, 32))


def test_layers_follow_the_script():
    m = ResNet9()
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 8
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) and c.bias is None
               for c in convs)
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert all(b.eps == 1e-5 and b.momentum == 0.1 and torch.all(b.weight == 1) for b in bns)
    assert all(c.alpha == 0.1 for c in m.modules() if isinstance(c, nn.CELU))
    assert m.head.bias is None and m.head.in_features == 256 and m.head.out_features == 10
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.modules()) == 4


def test_output_is_scaled_head():
    m = ResNet9().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m(x), m.head(m.features(x)) * 0.1)
        assert m.features(x).shape == (2, 256)


def test_fp16_net_with_fp32_batchnorm():
    m = ResNet9(width=0.25).set_dtype(torch.float16)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert mod.weight.dtype == mod.running_mean.dtype == torch.float32
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            assert mod.weight.dtype == torch.float16
    y = m(torch.randn(4, 3, 32, 32, dtype=torch.float16))
    assert y.shape == (4, 10) and y.dtype == torch.float16
    assert ResNet9(width=0.25).set_dtype(torch.float64).features[1].__class__ is nn.MaxPool2d
    assert all(p.dtype == torch.float64 for p in ResNet9(width=0.25).set_dtype(torch.float64).parameters())
