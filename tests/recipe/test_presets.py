"""The Picard presets are PROTOCOLS.md §1, knob by knob."""

import pytest

from fastseed import FastseedError
from fastseed.engine.schedule import lr_multiplier
from fastseed.recipe.presets import PRESETS, get_preset
from fastseed.recipe.protocol import CifarProtocol


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
        assert lr_multiplier(p, e) == pytest.approx(picard_lambda(e, long), abs=1e-12), e
    assert lr_multiplier(p, 3) == pytest.approx(0.51)
    assert lr_multiplier(p, 21) == pytest.approx(0.5 / 19 + 0.01)


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
    assert p.hash == CifarProtocol.from_json(p.to_json()).hash
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


def test_dino_resnet50_has_its_own_phases():
    """PROTOCOLS.md §2 (imagenet_ssl.py, "ftlr 0.04"): 4,000 head steps at lr 0.1 (T_max 4,000), then
    24,000 full steps at batch 128, lr 0.04, T_max 24,000, eta_min 1e-4 -- not the ViT's phases."""
    head, full = get_preset("imagenet-dino-rn50").phases
    assert (head.train, head.steps, head.batch_size, head.lr, head.t_max, head.eta_min, head.sched_every) == (
        "head", 4000, 128, 0.1, 4000, 0.001, 1)
    assert (head.lsce_weight, head.lsce_eps, head.eval_every) == (1.0, 0.1, 1000)
    assert (full.train, full.steps, full.batch_size, full.lr, full.t_max, full.eta_min, full.sched_every) == (
        "all", 24000, 128, 0.04, 24000, 1e-4, 1)
    assert (full.lsce_weight, full.eval_every) == (0.0, 2000)
    vit_head, vit_full = get_preset("imagenet-dino-vits16").phases
    assert (vit_head.steps, vit_head.lr, vit_full.steps, vit_full.lr, vit_full.t_max) == (2000, 0.01, 26000, 1e-4, 26000)
    assert get_preset("imagenet-dino-rn50").headline_epoch == 28000


def test_resnet50_presets_start_their_heads_as_the_original():
    assert get_preset("imagenet-rn50").head_rule == get_preset("imagenet-dino-rn50").head_rule == "kaiming-a0"
    assert get_preset("imagenet-dino-vits16").head_rule == "normal-1e-5"


def test_resnet18_study_measures_its_test_loss_as_the_original():
    for i in (1, 2, 3):
        p = get_preset(f"resnet18-exp{i}")
        assert (p.test_loss, p.eval_batch_size) == ("batch_mean", 128)  # 79 batches, the last of 16 images


def test_resnet18_exp2_reuses_one_permutation_and_exp3_says_it_does_not_chain_adam():
    e2, e3 = get_preset("resnet18-exp2"), get_preset("resnet18-exp3")
    assert (e2.fixed, e2.order_rule) == (("order",), "once")
    assert get_preset("resnet18-exp1").order_rule == e3.order_rule == "per_epoch"
    assert "chains one Adam optimizer's state across its runs" in e3.source and "fresh Adam" in e3.source


def test_unknown_preset_suggests_the_closest_names():
    with pytest.raises(FastseedError, match="did you mean picard-short"):
        get_preset("picard-shrt")
