"""The batched augmentation equals a plain per-image reading of PROTOCOLS.md §1."""

import numpy as np
import pytest
import torch

from fastseed.kernels.augment import augment_reference, normalize

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def one_image(img, dy, dx, flip, cy, cx, pad=4, cutout=8):
    """Normalise, zero-pad (after normalising), crop, mirror, cut out — one image, by the text."""
    x = (img.astype(np.float64) / 255 - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    x = x[:, dy: dy + 32, dx: dx + 32]
    if flip:
        x = x[:, :, ::-1]
    x = x.copy()
    h = cutout // 2
    x[:, np.clip(cy - h, 0, 32): np.clip(cy + h, 0, 32), np.clip(cx - h, 0, 32): np.clip(cx + h, 0, 32)] = 0
    return x


@pytest.mark.parametrize("batch", [1, 13, 64])
def test_augment_matches_per_image_reading(batch):
    g = torch.Generator().manual_seed(batch)
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=g)
    index = torch.randint(0, 100, (batch,), generator=g)
    dy, dx = torch.randint(0, 9, (batch,), generator=g), torch.randint(0, 9, (batch,), generator=g)
    flip = torch.randint(0, 2, (batch,), generator=g).bool()
    cy, cx = torch.randint(0, 32, (batch,), generator=g), torch.randint(0, 32, (batch,), generator=g)
    got = augment_reference(images, index, dy, dx, flip, cy, cx, MEAN, STD, pad=4, cutout=8,
                            dtype=torch.float64).numpy()
    for b in range(batch):
        want = one_image(images[index[b]].numpy(), dy[b].item(), dx[b].item(), flip[b].item(), cy[b].item(),
                         cx[b].item())
        np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-12)


def test_edges_pad_with_zero_and_cutout_clips():
    images = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    one = torch.zeros(1, dtype=torch.int64)
    x = augment_reference(images, one, one, one, one.bool(), one, one, MEAN, STD, pad=4, cutout=8,
                          dtype=torch.float32)
    assert torch.all(x[0, :, :4, :] == 0) and torch.all(x[0, :, :, :4] == 0)  # padding and corner cutout
    assert torch.all(x[0, :, 4:, 4:] > 0)


def test_half_output_and_plain_normalize():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    idx = torch.arange(5)
    centre = torch.full((5,), 4)
    no_cut = torch.full((5,), -100)
    x = augment_reference(images, idx, centre, centre, torch.zeros(5, dtype=torch.bool), no_cut, no_cut,
                          MEAN, STD, pad=4, cutout=8, dtype=torch.float16)
    assert x.dtype == torch.float16
    assert torch.allclose(x.float(), normalize(images, MEAN, STD, torch.float32), atol=1e-2)


@pytest.mark.parametrize("pad", [1, 2, 4])
def test_reflect_padding_matches_numpy_reflect(pad):
    """airbench's translate: reflect-pad (np.pad/F.pad "reflect": the border pixel is not repeated)."""
    g = torch.Generator().manual_seed(pad)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g)
    index = torch.randint(0, 20, (30,), generator=g)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, 30), generator=g)
    flip = torch.randint(0, 2, (30,), generator=g).bool()
    no_cut = torch.full((30,), -100)
    got = augment_reference(images, index, dy, dx, flip, no_cut, no_cut, MEAN, STD, pad=pad, cutout=0,
                            dtype=torch.float64, reflect=True).numpy()
    for b in range(30):
        x = (images[index[b]].numpy().astype(np.float64) / 255 - np.array(MEAN)[:, None, None]) \
            / np.array(STD)[:, None, None]
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")[:, dy[b]: dy[b] + 32, dx[b]: dx[b] + 32]
        want = x[:, :, ::-1] if flip[b] else x
        np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-12)
