"""Gather + augment a batch from uint8 images resident on the device (PyTorch reference).

Per image b: normalise with mean/std, zero-pad by `pad` (zeros *after* normalisation, as Picard's
script pads), take the 32×32 crop at offset (dy[b], dx[b]) ∈ [0, 2·pad], mirror it if flip[b], and
zero the cutout square rows clip(cy−h, 0, H)..clip(cy+h, 0, H) (likewise columns), h = cutout // 2,
in the coordinates of the output image. A Triton kernel that fuses all of it will sit beside this.
"""

import torch


def augment_reference(images: torch.Tensor, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                      flip: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, mean, std, *,
                      pad: int, cutout: int, dtype: torch.dtype) -> torch.Tensor:
    """images (N,C,H,W) uint8; index, dy, dx, flip, cy, cx (B,) on the same device -> (B,C,H,W) dtype."""
    B, (C, H, W) = index.shape[0], images.shape[1:]
    work = torch.float64 if dtype == torch.float64 else torch.float32
    dev = images.device
    m = torch.tensor(mean, dtype=work, device=dev).view(1, C, 1, 1)
    s = torch.tensor(std, dtype=work, device=dev).view(1, C, 1, 1)
    rows = dy[:, None] + torch.arange(H, device=dev) - pad  # source row of each output row
    cols = dx[:, None] + torch.arange(W, device=dev) - pad
    cols = torch.where(flip[:, None], cols.flip(1), cols)
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
