"""Gather + augment a batch from uint8 images resident on the device (PyTorch reference).

Per image b: normalise with mean/std, zero-pad by `pad` (zeros *after* normalisation, as Picard's
script pads) or, with reflect=True, reflect-pad (airbench: the border pixel is the mirror, not
repeated, as F.pad's "reflect"), take the 32×32 crop at offset (dy[b], dx[b]) ∈ [0, 2·pad], mirror it if
flip[b], and zero the cutout square rows clip(cy−h, 0, H)..clip(cy+h, 0, H) (likewise columns),
h = cutout // 2, in the coordinates of the output image. `augment_triton` fuses all of it into one pass; `augment`
dispatches between the two.
"""

from __future__ import annotations

import functools

import torch

from fastseed.kernels import HAS_TRITON, interpreting, load_triton


def augment_reference(images: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                      flip: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, mean, std, *,
                      pad: int, cutout: int, dtype: torch.dtype, reflect: bool = False) -> torch.Tensor:
    """images (N,C,H,W) uint8; index, dy, dx, flip, cy, cx (B,) on the same device -> (B,C,H,W) dtype."""
    C, H, W = images.shape[1:]
    work = torch.float64 if dtype == torch.float64 else torch.float32
    dev = images.device
    m = torch.tensor(mean, dtype=work, device=dev).view(1, C, 1, 1)
    s = torch.tensor(std, dtype=work, device=dev).view(1, C, 1, 1)
    rows = dy[:, None] + torch.arange(H, device=dev) - pad  # source row of each output row
    cols = dx[:, None] + torch.arange(W, device=dev) - pad
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    if reflect:  # one reflection at each border is enough for pad < H, W
        rows, cols = rows.abs(), cols.abs()
        rows, cols = torch.where(rows >= H, 2 * (H - 1) - rows, rows), torch.where(cols >= W, 2 * (W - 1) - cols, cols)
    inside = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    b = index[:, None, None, None]
    c = torch.arange(C, device=dev)[None, :, None, None]
    x = images[b, c, rows.clamp(0, H - 1)[:, None, :, None], cols.clamp(0, W - 1)[:, None, None, :]]
    x = (x.to(work) / 255.0 - m) / s
    keep = inside
    if cutout > 0:
        h = cutout // 2
        r, q = torch.arange(H, device=dev), torch.arange(W, device=dev)
        in_r = (r >= (cy[:, None] - h).clamp(0, H)) & (r < (cy[:, None] + h).clamp(0, H))
        in_c = (q >= (cx[:, None] - h).clamp(0, W)) & (q < (cx[:, None] + h).clamp(0, W))
        keep = keep & ~(in_r[:, :, None] & in_c[:, None, :])
    return (x * keep[:, None]).to(dtype)


def normalize(images: torch.Tensor, mean, std, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (B,C,H,W) -> normalised `dtype`, no augmentation (evaluation)."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    m = torch.tensor(mean, dtype=work, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=work, device=images.device).view(1, -1, 1, 1)
    return ((images.to(work) / 255.0 - m) / s).to(dtype)


# ---------------------------------------------------------------------------------------------------
# Fused Triton kernel. A uint8 pixel has 256 values, so normalisation is a table: lut[keep, c, v] holds
# ((v/255 − mean_c)/std_c)·keep cast to the output dtype, computed by the same torch ops as the
# reference (keep = 0 gives its signed zero). The kernel is then pure index arithmetic and one gather:
# bit-identical to `augment_reference` on every device, in every dtype, with no division on the GPU.

triton = tl = None  # bound on first use by load_triton(globals()): the kernels resolve them here


def _augment_fwd(img_ptr, idx_ptr, dy_ptr, dx_ptr, flip_ptr, cy_ptr, cx_ptr, lut_ptr, out_ptr,
                 s_n, s_c, s_h, s_w, pad, half,
                 C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                 CUTOUT: tl.constexpr, REFLECT: tl.constexpr, BLOCK: tl.constexpr):
    # program (m, j): elements j·BLOCK … of output image m, counted in the output's memory order, so
    # the stores are contiguous whatever the layout
    m = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < C * H * W
    if CHANNELS_LAST:
        c = offs % C
        r = offs // (C * W)
        q = (offs // C) % W
    else:
        c = offs // (H * W)
        r = (offs // W) % H
        q = offs % W
    n = tl.load(idx_ptr + m).to(tl.int64)
    src_r = r + (tl.load(dy_ptr + m) - pad).to(tl.int32)
    flip = tl.load(flip_ptr + m).to(tl.int32)
    src_q = tl.where(flip != 0, W - 1 - q, q) + (tl.load(dx_ptr + m) - pad).to(tl.int32)
    if REFLECT:
        src_r = tl.where(src_r < 0, -src_r, src_r)
        src_r = tl.where(src_r >= H, 2 * (H - 1) - src_r, src_r)
        src_q = tl.where(src_q < 0, -src_q, src_q)
        src_q = tl.where(src_q >= W, 2 * (W - 1) - src_q, src_q)
    keep = (src_r >= 0) & (src_r < H) & (src_q >= 0) & (src_q < W)
    if CUTOUT:
        cy = tl.load(cy_ptr + m).to(tl.int64)  # int64: "no cutout" may be a far-away centre
        cx = tl.load(cx_ptr + m).to(tl.int64)
        y0 = tl.minimum(tl.maximum(cy - half, 0), H)
        y1 = tl.minimum(tl.maximum(cy + half, 0), H)
        x0 = tl.minimum(tl.maximum(cx - half, 0), W)
        x1 = tl.minimum(tl.maximum(cx + half, 0), W)
        keep = keep & ((r < y0) | (r >= y1) | (q < x0) | (q >= x1))
    # read the clamped pixel even where it is padding: the reference does, and its sign survives ·0
    src_r = tl.minimum(tl.maximum(src_r, 0), H - 1)
    src_q = tl.minimum(tl.maximum(src_q, 0), W - 1)
    v = tl.load(img_ptr + n * s_n + c * s_c + src_r * s_h + src_q * s_w, mask=valid, other=0)
    x = tl.load(lut_ptr + tl.where(keep, 0, C * 256) + c * 256 + v.to(tl.int32), mask=valid)
    tl.store(out_ptr + m * (C * H * W) + offs, x, mask=valid)


@functools.cache
def _augment_kernel(interpret: bool):
    # jit lazily, once per mode: triton picks compiled vs interpreted when it decorates
    return load_triton(globals()).jit(_augment_fwd)


@functools.lru_cache(maxsize=32)
def _table(mean: tuple, std: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(2, C, 256) in `dtype`: [0] the normalised value of each byte, [1] the same times 0 (cut/pad)."""
    C = len(mean)
    values = torch.arange(256, device=device).to(torch.uint8).view(1, 1, 256).expand(1, C, 256)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    m = torch.tensor(mean, dtype=work, device=device).view(1, C, 1)
    s = torch.tensor(std, dtype=work, device=device).view(1, C, 1)
    x = (values.to(work) / 255.0 - m) / s  # the reference's ops, in its order
    keep = torch.tensor([True, False], device=device).view(2, 1, 1)
    return (x * keep).to(dtype).contiguous()


def augment_triton(images: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                   flip: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, mean, std, *, pad: int,
                   cutout: int, dtype: torch.dtype, channels_last: bool = False,
                   reflect: bool = False) -> torch.Tensor:
    """The fused kernel; same arguments and values as `augment_reference`.

    images (N,C,H,W) uint8, any strides; index, dy, dx, cy, cx (M,) integer tensors and flip (M,) bool
    (or integer), all on images' device; mean/std sequences of C floats. Returns (M,C,H,W) `dtype`,
    contiguous, or in torch.channels_last memory format when channels_last=True.
    """
    triton = load_triton(globals())
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"want uint8 images (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
    M, (C, H, W) = index.shape[0], images.shape[1:]
    lut = _table(tuple(float(v) for v in mean), tuple(float(v) for v in std), dtype, images.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((M, C, H, W), dtype=dtype, device=images.device, memory_format=fmt)
    if M == 0:
        return out
    params = [t.contiguous() for t in (index, dy, dx, flip, cy, cx)]
    block = min(1024, triton.next_power_of_2(C * H * W))
    _augment_kernel(interpreting())[(M, triton.cdiv(C * H * W, block))](
        images, *params, lut, out, *images.stride(), pad, max(cutout // 2, 0),
        C=C, H=H, W=W, CHANNELS_LAST=channels_last, CUTOUT=cutout > 0, REFLECT=reflect, BLOCK=block,
        num_warps=4)
    return out


def augment(images: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
            flip: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, mean, std, *, pad: int, cutout: int,
            dtype: torch.dtype, channels_last: bool = False, reflect: bool = False,
            impl: str = "auto") -> torch.Tensor:
    """Gather + augment a batch. impl="auto" takes the Triton kernel for CUDA images (or any images
    under TRITON_INTERPRET=1) when triton imports, else the reference; "triton"/"torch" force one."""
    if impl == "auto":
        impl = "triton" if HAS_TRITON and (images.is_cuda or interpreting()) else "torch"
    if impl == "triton":
        return augment_triton(images, index, dy, dx, flip, cy, cx, mean, std, pad=pad, cutout=cutout,
                              dtype=dtype, channels_last=channels_last, reflect=reflect)
    if impl == "torch":
        out = augment_reference(images, index, dy, dx, flip, cy, cx, mean, std, pad=pad, cutout=cutout,
                                dtype=dtype, reflect=reflect)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out
    raise ValueError(f"impl must be 'auto', 'triton' or 'torch', not {impl!r}")
