"""The FLOP count of a picard-short seed equals the count written out from the architecture."""

from fastseed.engine.flops import seed_flops
from fastseed.recipe.presets import get_preset


def by_hand(batch=500):
    """2·H·W·Cin·Cout·9 per image per conv forward; backward = grad input + grad weight (2× forward),
    except the first conv, whose input needs no gradient (1× forward)."""
    convs = [(32, 3, 64), (16, 64, 128), (8, 128, 128), (8, 128, 128), (8, 128, 256), (4, 256, 256),
             (2, 256, 256), (2, 256, 256)]  # (spatial size at the conv, c_in, c_out)
    forward = [2 * s * s * ci * co * 9 for s, ci, co in convs] + [2 * 256 * 10]
    step = sum(f * batch * (2 if i == 0 else 3) for i, f in enumerate(forward))
    return step, sum(forward)


def test_picard_short_flops_match_the_architecture():
    f = seed_flops(get_preset("picard-short"))
    step, image = by_hand()
    assert f.train_step == step and f.eval_image == image
    assert (f.steps, f.evals, f.test_images) == (22 * 100, 6, 10_000)
    assert f.total == step * 2200 + image * 10_000 * 6
    assert 0.48e15 < f.total < 0.49e15
    assert sum(f.per_layer.values()) == f.train_step and len(f.per_layer) == 9
    assert "PFLOP" in f.table()
