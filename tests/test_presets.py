"""The Picard presets are PROTOCOLS.md §1, knob by knob."""

import pytest

from fastseed import FastseedError
from fastseed.presets import PRESETS, Protocol, get_preset


def picard_lambda(e, long=False):
    """PROTOCOLS.md §1, written out independently."""
    if e < 4:
        return 0.5 * e / 3 + 0.01
    if long and e >= 22:
        return 0.01
    return 0.5 * (22 - e) / 19 + 0.01


@pytest.mark.parametrize("name,epochs,long", [("picard-short", 22, False), ("picard-long", 45, True)])
def test_lr_multiplier_matches_protocol_at_every_epoch(name, epochs, long):
    p = get_preset(name)
    assert p.epochs == epochs
    for e in range(epochs):
        assert p.lr_multiplier(e) == pytest.approx(picard_lambda(e, long), abs=1e-12), e
    assert p.lr_multiplier(3) == pytest.approx(0.51)
    assert p.lr_multiplier(21) == pytest.approx(0.5 / 19 + 0.01)


def test_picard_short_recipe():
    p = get_preset("picard-short")
    assert (p.lr, p.momentum, p.nesterov, p.weight_decay) == (0.2, 0.9, True, 1e-3)
    assert (p.batch_size, p.eval_batch_size, p.train_size, p.test_size) == (500, 100, None, None)
    assert (p.ce_weight, p.lsce_weight, p.lsce_eps) == (1.0, 2.0, 0.2)
    assert (p.augment, p.chunk_size, p.crop_pad, p.flip, p.cutout) == ("chunk", 500, 4, True, 8)
    assert p.mean == (0.4914, 0.4822, 0.4465) and p.std == (0.2023, 0.1994, 0.2010)
    assert (p.dtype, p.celu_alpha, p.logit_scale, p.bn_eps, p.bn_momentum) == ("float16", 0.1, 0.1, 1e-5, 0.1)


def test_eval_schedule_and_headline_epoch():
    short, long = get_preset("picard-short"), get_preset("picard-long")
    assert short.eval_epochs == (0, 1, 6, 11, 16, 21) and short.headline_epoch == 21
    assert long.eval_epochs == tuple(range(45)) and long.headline_epoch == 41  # curves, script's headline
    assert long.picard_eval_epochs[-1] == 41


def test_smoke_shares_the_code_path_at_tiny_scale():
    s, p = get_preset("smoke"), get_preset("picard-short")
    assert s.model == p.model and s.augment == "chunk" and s.nesterov and s.lsce_weight == 2.0
    assert s.width < 1 and s.train_size < 50000 and s.epochs < p.epochs


def test_hash_identifies_the_recipe():
    p = get_preset("picard-short")
    assert p.hash == Protocol.from_json(p.to_json()).hash
    assert len({q.hash for q in PRESETS.values()}) == len(PRESETS)
    image = p.variant(augment="image")
    assert image.name == "picard-short[augment=image]" and image.hash != p.hash
    assert p.variant(augment="chunk") is p


def test_unknown_preset_is_one_line_error():
    with pytest.raises(FastseedError, match="unknown preset 'nope'") as e:
        get_preset("nope")
    assert "\n" not in str(e.value)


def test_invalid_protocol_is_refused():
    with pytest.raises(FastseedError):
        get_preset("picard-short").variant(augment="sideways")
