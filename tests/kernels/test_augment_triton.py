"""The fused Triton gather + augment equals `augment_reference` bit for bit, signed zeros included.

Runs on the GPU when there is one, else under triton's interpreter on the CPU (see conftest.py).
"""

import pytest
import torch

from fastseed.kernels.augment import augment, augment_reference, augment_triton

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
PAD, CUTOUT = 4, 8
NO_CUT = -10**6  # a centre this far away cuts nothing
BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
        torch.float64: torch.int64}
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def draw(M, N, H, W, g, *, chunk=None, pad=PAD):
    """Per-image params, or (chunk=…) one draw per chunk repeated over it, as Picard's script does."""
    n = M if chunk is None else -(-M // chunk)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
    flip = torch.randint(0, 2, (n,), generator=g).bool()
    cy, cx = torch.randint(0, H, (n,), generator=g), torch.randint(0, W, (n,), generator=g)
    if chunk is not None:
        dy, dx, flip, cy, cx = (t.repeat_interleave(chunk)[:M] for t in (dy, dx, flip, cy, cx))
    return torch.randint(0, N, (M,), generator=g), dy, dx, flip, cy, cx


def check(images, params, device, *, dtype, channels_last=False, pad=PAD, cutout=CUTOUT, mean=MEAN, std=STD):
    images = images.to(device)
    params = [p.to(device) for p in params]
    got = augment_triton(images, *params, mean, std, pad=pad, cutout=cutout, dtype=dtype,
                         channels_last=channels_last)
    want = augment_reference(images, *params, mean, std, pad=pad, cutout=cutout, dtype=dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert got.shape == want.shape and got.dtype == dtype and got.is_contiguous(memory_format=fmt)
    assert torch.equal(got.contiguous().view(BITS[dtype]), want.view(BITS[dtype]))  # bits, so ±0 too
    return got


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("chunk", [None, 5], ids=["per_image", "per_chunk"])
def test_matches_reference(triton_device, dtype, channels_last, chunk):
    g = torch.Generator().manual_seed(DTYPES.index(dtype) * 4 + 2 * channels_last + (chunk is None))
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    check(images, draw(17, 40, 32, 32, g, chunk=chunk), triton_device, dtype=dtype,
          channels_last=channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
def test_edges(triton_device, dtype):
    """Offsets 0 and 2·pad, both flips, cutouts on every border and corner, partly and wholly outside."""
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    rows = [(dy, dx, f, cy, cx) for dy, dx in [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)] for f in (0, 1)
            for cy, cx in [(0, 0), (31, 31), (0, 31), (-3, 16), (34, 5), (16, 16), (NO_CUT, NO_CUT), (-4, -4)]]
    dy, dx, flip, cy, cx = torch.tensor(rows).T
    index = torch.arange(len(rows)) % 3
    check(images, (index, dy, dx, flip.bool(), cy, cx), triton_device, dtype=dtype)


def test_padding_is_zero_and_flip_mirrors(triton_device):
    images = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    images[..., 0] = 0  # first column dark
    one = torch.ones(1, dtype=torch.int64)
    zero, no_cut = 0 * one, NO_CUT * one
    x = check(images, (zero, zero, zero, one.bool(), no_cut, no_cut), triton_device, dtype=torch.float32)[0]
    # offset 0 (the crop starts 4 pixels into the padding), then mirrored: padding on top and on the
    # right, source column 0 lands on output column 31 − 4
    assert torch.all(x[:, :4] == 0) and torch.all(x[:, :, 28:] == 0)
    assert torch.all(x[:, 4:, 27] < 0) and torch.all(x[:, 4:, :27] > 0)


@pytest.mark.parametrize("cutout", [0, 1, 7, 40], ids=lambda c: f"cutout{c}")
def test_cutout_sizes(triton_device, cutout):
    """0 disables it; odd sizes cut 2·(size//2); a size past the image clips."""
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    check(images, draw(9, 8, 32, 32, g), triton_device, dtype=torch.float16, cutout=cutout)


@pytest.mark.parametrize("C,H,W", [(1, 5, 7), (3, 20, 24), (2, 16, 16)])
def test_other_image_shapes(triton_device, C, H, W):
    """Masked tails: C·H·W not a power of two, or not a multiple of the 1024-element block."""
    g = torch.Generator().manual_seed(C * H * W)
    images = torch.randint(0, 256, (6, C, H, W), dtype=torch.uint8, generator=g)
    mean, std = (0.5, 0.25, 0.125)[:C], (0.2, 0.3, 0.4)[:C]
    for channels_last in (False, True):
        check(images, draw(5, 6, H, W, g, pad=2), triton_device, dtype=torch.float32, pad=2, cutout=4,
              mean=mean, std=std, channels_last=channels_last)


def test_any_image_strides_and_param_dtypes(triton_device):
    """uint8 images stored channels-last; int32 params and a uint8 flip read the same."""
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=g)
    index, dy, dx, flip, cy, cx = draw(11, 10, 32, 32, g)
    want = check(images, (index, dy, dx, flip, cy, cx), triton_device, dtype=torch.float16)
    nhwc = images.contiguous(memory_format=torch.channels_last)
    narrow = (index.int(), dy.int(), dx.int(), flip.to(torch.uint8), cy.int(), cx.int())
    got = augment_triton(nhwc.to(triton_device), *(p.to(triton_device) for p in narrow), MEAN, STD,
                         pad=PAD, cutout=CUTOUT, dtype=torch.float16)
    assert torch.equal(got, want)


def test_empty_batch(triton_device):
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device=triton_device)
    none = torch.zeros(0, dtype=torch.int64, device=triton_device)
    out = augment_triton(images, none, none, none, none.bool(), none, none, MEAN, STD, pad=PAD,
                         cutout=CUTOUT, dtype=torch.float16)
    assert out.shape == (0, 3, 32, 32)


def test_dispatcher(triton_device, monkeypatch):
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=g).to(triton_device)
    params = [p.to(triton_device) for p in draw(4, 5, 32, 32, g)]
    kw = dict(pad=PAD, cutout=CUTOUT, dtype=torch.float16)
    want = augment_reference(images, *params, MEAN, STD, **kw)
    assert torch.equal(augment(images, *params, MEAN, STD, **kw), want)  # the kernel (GPU / interpreter)
    torch_nhwc = augment(images, *params, MEAN, STD, channels_last=True, impl="torch", **kw)
    assert torch_nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(torch_nhwc, want)
    if triton_device.type == "cpu":  # without the interpreter a CPU tensor takes the reference
        monkeypatch.delenv("TRITON_INTERPRET")
        assert torch.equal(augment(images, *params, MEAN, STD, **kw), want)
    with pytest.raises(ValueError):
        augment(images, *params, MEAN, STD, impl="cuda", **kw)


@pytest.mark.parametrize("pad", [1, 2, 4])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_reflect_padding_matches_reference(triton_device, pad, channels_last):
    g = torch.Generator().manual_seed(pad + 10 * channels_last)
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=g)
    index, dy, dx, flip, cy, cx = draw(40, 10, 32, 32, g, pad=pad)
    dy[:4], dx[:4] = torch.tensor([0, 0, 2 * pad, 2 * pad]), torch.tensor([0, 2 * pad, 0, 2 * pad])  # corners
    params = [p.to(triton_device) for p in (index, dy, dx, flip, cy, cx)]
    for cutout in (0, 8):
        got = augment_triton(images.to(triton_device), *params, MEAN, STD, pad=pad, cutout=cutout,
                             dtype=torch.float16, channels_last=channels_last, reflect=True)
        want = augment_reference(images.to(triton_device), *params, MEAN, STD, pad=pad, cutout=cutout,
                                 dtype=torch.float16, reflect=True)
        assert torch.equal(got.contiguous().view(torch.int16), want.view(torch.int16))
