"""ImageNet crop windows and flips from the seed's counter-based stream: torchvision's RandomResizedCrop
rule exactly (checked on hand-made draws), its distribution (checked against torchvision's own sampler),
and a pure function of (seed, phase, step)."""

import numpy as np
import pytest
import torch
from scipy import stats

from fastseed.data.crops import ATTEMPTS, crop_windows, step_augment
from fastseed.seeds import Seed


def draws(n, scale, ratio, top=0.5, left=0.5):
    """Uniforms for n images whose every attempt draws the same (scale, ratio, top, left) uniforms."""
    return torch.tensor([scale, ratio, top, left], dtype=torch.float64)[:, None, None].expand(4, n, ATTEMPTS).clone()


def test_first_fitting_attempt_wins_and_is_placed_by_its_uniforms():
    u = draws(1, 0.99999, 1.0)  # attempt 0: the whole area at ratio 4/3 is 115 px wide > 100: does not fit
    u[:, 0, 1] = torch.tensor([(0.25 - 0.08) / 0.92, 0.5, 0.5, 0.0])  # attempt 1: a quarter, ratio 1
    # 50 x 50 at top floor(0.5 * 51) = 25, left 0
    assert crop_windows([100], [100], u).tolist() == [[25, 0, 50, 50]]


@pytest.mark.parametrize("height, width, window", [
    (10, 100, [0, 43, 10, 13]),   # wide strip: full height, width round(10 * 4/3) = 13, centred
    (100, 10, [43, 0, 13, 10]),   # tall strip: full width, height round(10 / (3/4)) = 13, centred
    (100, 90, [0, 0, 100, 90]),   # ratio inside (3/4, 4/3): the whole image
])
def test_no_fitting_attempt_falls_back_to_the_centred_crop(height, width, window):
    u = draws(1, 0.99999, 1.0)
    u[1, 0, ::2] = 0.0  # every other attempt at ratio 3/4: tall windows, which do not fit either
    assert crop_windows([height], [width], u).tolist() == [window]


def test_a_step_draws_from_its_own_augment_stream_in_the_documented_order():
    seed, heights, widths = Seed(11), [375, 500, 64], [500, 375, 1000]
    windows, flips = step_augment(seed, 1, 7, heights, widths)
    g = seed.generator("augment", 1, 7)
    u = torch.rand((4, 3, ATTEMPTS), generator=g, dtype=torch.float64)
    assert torch.equal(windows, crop_windows(heights, widths, u))
    assert torch.equal(flips, torch.rand(3, generator=g, dtype=torch.float64) < 0.5)
    again, other = step_augment(seed, 1, 7, heights, widths), step_augment(seed, 1, 8, heights, widths)
    assert torch.equal(again[0], windows) and not torch.equal(other[0], windows)
    top, left, h, w = windows.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= torch.tensor(heights)).all()
    assert (left + w <= torch.tensor(widths)).all() and (h > 0).all() and (w > 0).all()


def torchvision_windows(height, width, n):
    from torchvision.transforms import RandomResizedCrop
    image = torch.zeros(1, height, width)  # get_params looks at the size only
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.tensor([RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])


def our_windows(height, width, n, batch=200):
    return torch.cat([step_augment(Seed(0), 0, s, [height] * batch, [width] * batch)[0] for s in range(n // batch)])


@pytest.mark.parametrize("height, width", [(375, 500), (500, 375), (120, 400), (64, 1000)])
def test_windows_are_distributed_as_torchvision_draws_them(height, width):
    """Two-sample tests (n = 4,000 each) on the window's area share, log aspect ratio, centre and the
    share of centred fallbacks; the strips make most attempts fail (64 x 1000: nearly all)."""
    n = 4000
    ours, theirs = our_windows(height, width, n).double(), torchvision_windows(height, width, n).double()

    def features(wins):
        top, left, h, w = wins.T
        return {"area": h * w / (height * width), "log_aspect": torch.log(w / h),
                "centre_y": (top + h / 2) / height, "centre_x": (left + w / 2) / width}
    a, b = features(ours), features(theirs)
    for name in a:
        if a[name].std() > 0 or b[name].std() > 0:
            assert stats.ks_2samp(a[name].numpy(), b[name].numpy(), method="asymp").pvalue > 1e-3, name
    fallback = crop_windows([height], [width], draws(1, 0.99999, 1.0))[0]
    k = [int((wins == fallback).all(1).sum()) for wins in (ours, theirs)]
    table = np.array([k, [n - k[0], n - k[1]]])
    assert k[0] == k[1] == 0 or stats.fisher_exact(table).pvalue > 1e-3
    if (height, width) == (64, 1000):
        assert min(k) > 0.9 * n  # the fallback is exercised


def test_flips_are_fair_coins():
    flips = torch.cat([step_augment(Seed(2), 0, s, [100] * 500, [100] * 500)[1] for s in range(8)])
    assert stats.binomtest(int(flips.sum()), len(flips), 0.5).pvalue > 1e-3
