"""The fused Triton protocol loss equals the PyTorch reference, in value and gradient, seed by seed.

Runs on the GPU when there is one, else under triton's interpreter on the CPU (see conftest.py).
"""

import pytest
import torch

from fastseed.kernels.lsce import (protocol_loss_packed, protocol_loss_packed_reference,
                                   protocol_loss_reference, protocol_loss_triton)

EPS, W = 0.2, 2.0  # Picard's: CE + 2·LSCE(ε = 0.2)
# tolerances relative to the largest |value|: losses accumulate in fp32 whatever the logits' dtype;
# a low-precision gradient may differ by an ulp or two (rounded once more when scaled by grad_output)
LOSS_TOL = {torch.float32: 2e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6, torch.float64: 1e-13}
GRAD_TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-13}
SHAPES = [(1, 1, 10), (3, 7, 37), (4, 500, 10), (1, 500, 37), (3, 1, 1000), (4, 7, 1000), (1, 7, 10),
          (3, 500, 10)]


def random_pack(K, B, C, dtype, device, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(K, B, C, generator=g, dtype=torch.float64)).to(dtype).to(device)
    targets = torch.randint(0, C, (K, B), generator=g).to(device)
    grad_out = torch.rand(K, generator=g, dtype=torch.float64) + 0.5  # a different weight per seed
    return logits, targets, grad_out


def loss_and_grad(fn, logits, targets, grad_out, **kw):
    z = logits.detach().requires_grad_()  # a leaf with the same strides
    loss = fn(z, targets, **{"eps": EPS, "lsce_weight": W, **kw})
    (grad,) = torch.autograd.grad(loss, z, grad_out.to(loss.device, loss.dtype))
    return loss.detach(), grad


def assert_close_scaled(got, want, tol):
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got.double().cpu(), want.double().cpu(), rtol=0, atol=tol * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64],
                         ids=str)
@pytest.mark.parametrize("K,B,C", SHAPES)
def test_loss_and_gradient_match_reference(triton_device, K, B, C, dtype):
    logits, targets, grad_out = random_pack(K, B, C, dtype, triton_device, seed=K * 10_000 + B * 10 + C)
    loss, grad = loss_and_grad(protocol_loss_triton, logits, targets, grad_out)
    want_loss, want_grad = loss_and_grad(protocol_loss_packed_reference, logits, targets, grad_out)
    assert loss.shape == (K,) and loss.dtype == want_loss.dtype  # float32, float64 for float64 logits
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert_close_scaled(loss, want_loss, LOSS_TOL[dtype])
    assert_close_scaled(grad, want_grad, GRAD_TOL[dtype])


def test_packed_reference_is_the_per_seed_reference():
    logits, targets, _ = random_pack(5, 33, 10, torch.float64, "cpu", seed=1)
    packed = protocol_loss_packed_reference(logits, targets, eps=EPS, lsce_weight=W)
    each = torch.stack([protocol_loss_reference(logits[k], targets[k], eps=EPS, lsce_weight=W)
                        for k in range(5)])
    torch.testing.assert_close(packed, each, rtol=1e-15, atol=0)


def test_seed_loss_independent_of_pack(triton_device):
    logits, targets, _ = random_pack(4, 500, 10, torch.float16, triton_device, seed=2)
    pack = protocol_loss_triton(logits, targets, eps=EPS, lsce_weight=W)
    for k in range(4):
        alone = protocol_loss_triton(logits[k:k + 1], targets[k:k + 1], eps=EPS, lsce_weight=W)
        assert torch.equal(alone, pack[k:k + 1])


def test_deterministic(triton_device):
    logits, targets, grad_out = random_pack(3, 500, 37, torch.float32, triton_device, seed=3)
    first = loss_and_grad(protocol_loss_triton, logits, targets, grad_out)
    second = loss_and_grad(protocol_loss_triton, logits, targets, grad_out)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_other_weights_and_strided_logits(triton_device):
    """ce_weight, eps, lsce_weight all reach the kernel; logits may be any strided view."""
    base, targets, grad_out = random_pack(3, 7, 40, torch.float32, triton_device, seed=4)
    views = [base.transpose(0, 1).contiguous().transpose(0, 1)[:, :, :37],  # (B,K,C) storage, sliced
             base[:, :, 3:],                                                # row stride 40, C = 37
             base.transpose(1, 2).contiguous().transpose(1, 2)]             # class stride ≠ 1
    weights = [dict(eps=0.1, lsce_weight=1.0, ce_weight=1.0), dict(eps=0.3, lsce_weight=0.5, ce_weight=0.0)]
    for view in views:
        y = targets.clamp(max=view.shape[-1] - 1)
        for kw in weights:
            got, got_grad = loss_and_grad(protocol_loss_triton, view, y, grad_out, **kw)
            want, want_grad = loss_and_grad(protocol_loss_packed_reference, view, y, grad_out, **kw)
            assert_close_scaled(got, want, 2e-6)
            assert_close_scaled(got_grad, want_grad, 1e-6)


def test_large_logits_stay_finite(triton_device):
    logits, targets, grad_out = random_pack(2, 7, 10, torch.float32, triton_device, seed=5, scale=1e4)
    loss, grad = loss_and_grad(protocol_loss_triton, logits, targets, grad_out)
    want_loss, want_grad = loss_and_grad(protocol_loss_packed_reference, logits, targets, grad_out)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=0)
    assert_close_scaled(grad, want_grad, 1e-6)


def test_gradcheck_float64(triton_device):
    logits, targets, _ = random_pack(2, 3, 5, torch.float64, triton_device, seed=6)
    assert torch.autograd.gradcheck(
        lambda z: protocol_loss_triton(z, targets, eps=EPS, lsce_weight=W), logits.requires_grad_())


def test_forward_without_grad(triton_device):
    logits, targets, _ = random_pack(3, 7, 37, torch.float16, triton_device, seed=7)
    with torch.no_grad():
        got = protocol_loss_triton(logits, targets, eps=EPS, lsce_weight=W)
    want = protocol_loss_packed_reference(logits, targets, eps=EPS, lsce_weight=W)
    assert_close_scaled(got, want, 2e-6)


def test_dispatcher(triton_device, monkeypatch):
    logits, targets, _ = random_pack(2, 7, 10, torch.float32, triton_device, seed=8)
    kw = dict(eps=EPS, lsce_weight=W)
    auto = protocol_loss_packed(logits, targets, **kw)  # GPU, or interpreter: the kernel
    assert torch.equal(auto, protocol_loss_triton(logits, targets, **kw))
    torch.testing.assert_close(protocol_loss_packed(logits, targets, impl="torch", **kw),
                               protocol_loss_packed_reference(logits, targets, **kw), rtol=0, atol=0)
    if triton_device.type == "cpu":  # without the interpreter a CPU tensor takes the reference
        monkeypatch.delenv("TRITON_INTERPRET")
        assert torch.equal(protocol_loss_packed(logits, targets, **kw),
                           protocol_loss_packed_reference(logits, targets, **kw))
    with pytest.raises(ValueError):
        protocol_loss_packed(logits, targets, impl="cuda", **kw)
