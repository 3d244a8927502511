"""The protocol loss equals an independent computation with explicit smoothed targets."""

import numpy as np
import pytest
import torch

from fastseed.kernels.lsce import protocol_loss_reference


def independent_loss(logits, y, eps, w):
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    onehot = np.eye(z.shape[1])[y]
    ce = -(onehot * logp).sum(1).mean()
    targets = (1 - eps) * onehot + eps / z.shape[1]
    lsce = -(targets * logp).sum(1).mean()
    return ce + w * lsce


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("batch,classes", [(500, 10), (7, 10), (33, 1000)])
def test_loss_equals_independent_computation(dtype, batch, classes):
    g = torch.Generator().manual_seed(batch + classes)
    logits = (3 * torch.randn(batch, classes, generator=g)).to(dtype)
    y = torch.randint(0, classes, (batch,), generator=g)
    got = protocol_loss_reference(logits, y, eps=0.2, lsce_weight=2.0)
    want = independent_loss(logits.double().numpy(), y.numpy(), 0.2, 2.0)
    assert got.dtype in (torch.float32, torch.float64)
    assert got.item() == pytest.approx(want, rel=1e-5 if dtype != torch.float64 else 1e-12)


def test_loss_gradient_matches_finite_difference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (6,), generator=g)
    assert torch.autograd.gradcheck(lambda z: protocol_loss_reference(z, y, eps=0.2, lsce_weight=2.0), logits)
