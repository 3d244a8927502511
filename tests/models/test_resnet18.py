"""The ResNet-18 study's network is torchvision's ResNet-18 with 10 outputs (PROTOCOLS.md §3)."""

import torch

from fastseed.engine.schedule import lr_multiplier
from fastseed.models import create_model, set_dtype
from fastseed.recipe.presets import get_preset


def expected_parameters():
    """Counted from the architecture: 7×7 stem, four stages of two BasicBlocks (64, 128, 256, 512),
    1×1 downsampling convs with BN from stage 2 on, BN = 2 per channel, linear 512→10 with bias."""
    conv = lambda i, o, k=3: i * o * k * k
    total = conv(3, 64, 7) + 2 * 64
    c_in = 64
    for c in (64, 128, 256, 512):
        for block in range(2):
            i = c_in if block == 0 else c
            total += conv(i, c) + conv(c, c) + 4 * c
            if block == 0 and i != c:
                total += conv(i, c, 1) + 2 * c
        c_in = c
    return total + 512 * 10 + 10


def test_parameter_count_is_torchvision_resnet18():
    model = create_model(get_preset("resnet18-exp1"))
    assert sum(p.numel() for p in model.parameters()) == expected_parameters() == 11_181_642
    assert model.fc.out_features == 10 and model.conv1.kernel_size == (7, 7)


def test_output_and_dtype_policy():
    model = set_dtype(create_model(get_preset("resnet18-exp1")), torch.bfloat16).eval()
    assert model.bn1.weight.dtype == torch.float32 and model.conv1.weight.dtype == torch.bfloat16
    with torch.no_grad():
        y = model(torch.randn(2, 3, 32, 32, dtype=torch.bfloat16))
    assert y.shape == (2, 10) and y.dtype == torch.bfloat16


def test_the_three_experiments_fix_the_right_streams():
    e1, e2, e3 = (get_preset(f"resnet18-exp{i}") for i in (1, 2, 3))
    assert (e1.fixed, e2.fixed, e3.fixed) == ((), ("order",), ("init",))
    assert (e1.optimizer, e1.lr, e1.batch_size, e1.epochs, e1.augment) == ("adam", 1e-3, 128, 10, "none")
    assert (e1.ce_weight, e1.lsce_weight, e1.mean, e1.std) == (1.0, 0.0, (0.5,) * 3, (0.5,) * 3)
    assert not e1.drop_last and lr_multiplier(e1, 7) == 1.0
    assert len({e1.hash, e2.hash, e3.hash}) == 3
