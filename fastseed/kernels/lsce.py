"""The protocol loss: ce_weight·CE(logits, y) + lsce_weight·LSCE(logits, y, eps).

LSCE is cross-entropy against smoothed targets (1−eps)·onehot + eps/C, averaged over the batch.
Since Σ_k t_k·(−log p_k) = (1−eps)·CE + eps·mean_k(−log p_k), one log-softmax serves both terms.
This file holds the PyTorch references (one batch; a pack of K seeds) and, beside them, a Triton kernel
that fuses the packed loss and its gradient into one pass over the logits.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from fastseed.kernels import HAS_TRITON, interpreting, load_triton


def protocol_loss_reference(logits: torch.Tensor, targets: torch.Tensor, *, eps: float,
                            lsce_weight: float, ce_weight: float = 1.0) -> torch.Tensor:
    """Mean over the batch; computed in at least float32 whatever the logits' dtype."""
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    ce = -logp.gather(-1, targets[:, None]).squeeze(-1)
    smooth = -logp.mean(-1)
    lsce = (1.0 - eps) * ce + eps * smooth
    return (ce_weight * ce + lsce_weight * lsce).mean()


def protocol_loss_packed_reference(logits: torch.Tensor, targets: torch.Tensor, *, eps: float,
                                   lsce_weight: float, ce_weight: float = 1.0) -> torch.Tensor:
    """logits (K,B,C), targets (K,B) -> (K,): `protocol_loss_reference` of each seed, vectorised."""
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    ce = -logp.gather(-1, targets[..., None]).squeeze(-1)
    smooth = -logp.mean(-1)
    lsce = (1.0 - eps) * ce + eps * smooth
    return (ce_weight * ce + lsce_weight * lsce).mean(-1)


# ---------------------------------------------------------------------------------------------------
# Fused Triton kernel. Per row, with a = ce_weight + lsce_weight·(1−eps) and b = lsce_weight·eps:
#   loss = a·CE + b·mean_k(−log p_k),   d loss / d z_k = (a+b)·p_k − a·[k = y] − b/C.
# Both come out of the one read of the row, so forward saves the gradient (÷B, in the logits' dtype)
# and backward only scales it by each seed's grad_output.

triton = tl = None  # bound on first use by load_triton(globals()): the kernels resolve them here


def _lsce_fwd(z_ptr, y_ptr, coef_ptr, part_ptr, grad_ptr, B, C, stride_k, stride_b, n_blocks,
              WANT_GRAD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    # program (k, j): rows j·BLOCK_R … of seed k; writes that block's share of the seed's mean loss
    k = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1)
    rows = j * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    rmask = rows < B
    cmask = cols < C
    mask = rmask[:, None] & cmask[None, :]
    a = tl.load(coef_ptr)
    b = tl.load(coef_ptr + 1)
    b_over_c = tl.load(coef_ptr + 2)
    inv_b = tl.load(coef_ptr + 3)
    inv_c = tl.load(coef_ptr + 4)
    z = tl.load(z_ptr + k * stride_k + rows[:, None].to(tl.int64) * stride_b + cols[None, :],
                mask=mask, other=0.0).to(a.dtype)  # accumulate in float32 (float64 for float64 logits)
    z = tl.where(cmask[None, :], z, float("-inf"))
    # shift by the row max first: CE and the smoothing term are then differences of O(log C) numbers
    zs = z - tl.max(z, axis=1)[:, None]
    e = tl.exp(zs)  # exp(−inf) = 0 on the masked tail
    s = tl.sum(e, axis=1)
    log_s = tl.log(s)
    y = tl.load(y_ptr + k * B + rows, mask=rmask, other=0)
    hit = cols[None, :] == y[:, None]
    ce = log_s - tl.sum(tl.where(hit, zs, 0.0), axis=1)
    smooth = log_s - tl.sum(tl.where(cmask[None, :], zs, 0.0), axis=1) * inv_c
    loss = tl.where(rmask, a * ce + b * smooth, 0.0)
    tl.store(part_ptr + k * n_blocks + j, tl.sum(loss, axis=0) * inv_b)
    if WANT_GRAD:
        p = e / s[:, None]
        g = ((a + b) * p - tl.where(hit, a, 0.0) - b_over_c) * inv_b
        offs = (k * B + rows[:, None]).to(tl.int64) * C + cols[None, :]
        tl.store(grad_ptr + offs, g.to(grad_ptr.dtype.element_ty), mask=mask)


@functools.cache
def _lsce_kernel(interpret: bool):
    # jit lazily: triton picks compiled vs interpreted when it decorates, so decorating at first call
    # (once per mode) honours TRITON_INTERPRET set after this module was imported (tests)
    return load_triton(globals()).jit(_lsce_fwd)


@functools.lru_cache(maxsize=64)
def _coefficients(ce_weight: float, lsce_weight: float, eps: float, B: int, C: int, dtype, device):
    # a tensor, not scalar arguments: triton passes Python floats as float32, too coarse for float64;
    # cached, so a training loop makes this host→device copy once
    a, b = ce_weight + lsce_weight * (1.0 - eps), lsce_weight * eps
    return torch.tensor([a, b, b / C, 1.0 / B, 1.0 / C], dtype=dtype, device=device)


def _launch(logits, targets, eps, lsce_weight, ce_weight, want_grad):
    triton = load_triton(globals())
    K, B, C = logits.shape
    if logits.stride(2) != 1:
        logits = logits.contiguous()
    targets = targets.contiguous()
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    block_c = triton.next_power_of_2(C)
    # as many rows per program as fit a tile of 8192: Picard's B=500, C=10 is one program per seed
    block_r = max(1, min(triton.next_power_of_2(B), 8192 // block_c))
    n_blocks = triton.cdiv(B, block_r)
    part = torch.empty(K, n_blocks, dtype=acc, device=logits.device)
    grad = torch.empty((K, B, C), dtype=logits.dtype, device=logits.device) if want_grad else part
    coef = _coefficients(float(ce_weight), float(lsce_weight), float(eps), B, C, acc, logits.device)
    num_warps = max(4, min(16, block_r * block_c // 512))
    _lsce_kernel(interpreting())[(K, n_blocks)](
        logits, targets, coef, part, grad, B, C, logits.stride(0), logits.stride(1), n_blocks,
        WANT_GRAD=want_grad, BLOCK_R=block_r, BLOCK_C=block_c, num_warps=num_warps)
    loss = part[:, 0] if n_blocks == 1 else part.sum(1)  # fixed order: deterministic
    return loss, (grad if want_grad else None)


class _PackedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, eps, lsce_weight, ce_weight):
        loss, grad = _launch(logits, targets, eps, lsce_weight, ce_weight, ctx.needs_input_grad[0])
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype)[:, None, None], None, None, None, None


def protocol_loss_triton(logits: torch.Tensor, targets: torch.Tensor, *, eps: float, lsce_weight: float,
                         ce_weight: float = 1.0) -> torch.Tensor:
    """The fused kernel: logits (K,B,C) fp16/bf16/fp32/fp64, targets (K,B) int -> (K,) fp32 (fp64)."""
    if not HAS_TRITON:
        raise RuntimeError("triton is not installed; use impl='torch'")
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"want logits (K,B,C) and targets (K,B); got {tuple(logits.shape)}, "
                         f"{tuple(targets.shape)}")
    return _PackedLoss.apply(logits, targets, eps, lsce_weight, ce_weight)


def protocol_loss_packed(logits: torch.Tensor, targets: torch.Tensor, *, eps: float, lsce_weight: float,
                         ce_weight: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """Per-seed batch-mean protocol loss of a pack: logits (K,B,C), targets (K,B) -> (K,).

    impl="auto" takes the Triton kernel for CUDA tensors (or any tensors under TRITON_INTERPRET=1)
    when triton imports, else the PyTorch reference; "triton" and "torch" force one.
    """
    if impl == "auto":
        impl = "triton" if HAS_TRITON and (logits.is_cuda or interpreting()) else "torch"
    if impl == "triton":
        return protocol_loss_triton(logits, targets, eps=eps, lsce_weight=lsce_weight, ce_weight=ce_weight)
    if impl == "torch":
        return protocol_loss_packed_reference(logits, targets, eps=eps, lsce_weight=lsce_weight,
                                              ce_weight=ce_weight)
    raise ValueError(f"impl must be 'auto', 'triton' or 'torch', not {impl!r}")
