"""The recipe types: one base for CIFAR Protocols and ImageNet Finetunes, every knob checked alone and
with the others in one line naming it, and a JSON that comes back as the same recipe."""

import dataclasses
import json

import pytest

from fastseed import FastseedError
from fastseed.recipe.presets import get_preset
from fastseed.recipe.protocol import Finetune, Phase, CifarProtocol, Recipe, protocol_from_json

SMOKE, RN50 = get_preset("smoke"), get_preset("imagenet-rn50")


def test_protocol_and_finetune_share_one_base():
    assert issubclass(CifarProtocol, Recipe) and issubclass(Finetune, Recipe)
    for method in ("to_json", "from_json", "variant", "seed", "validate"):
        assert method not in vars(Finetune) and method not in vars(CifarProtocol)  # one definition, on the base
    assert RN50.seed(5).value == 5 and SMOKE.variant(lr=0.3).name == "smoke[lr=0.3]"


@pytest.mark.parametrize("change,message", [
    (dict(lr=-0.1), "lr must be > 0, got -0.1"),
    (dict(lr=float("nan")), "lr must be a number"),
    (dict(epochs=0), "epochs must be >= 1, got 0"),
    (dict(epochs=2.5), "epochs must be an integer, got 2.5"),
    (dict(augment="sideways"), "augment must be one of chunk, image, none, got sideways"),
    (dict(nesterov="yes"), "nesterov must be true or false"),
    (dict(lsce_eps=1.5), "lsce_eps must be in \\[0, 1\\], got 1.5"),
    (dict(batch_size=5001), "batch_size must be <= the 5,000 training images, got 5001"),
    (dict(train_size=50001), "train_size must be <= 50,000"),
    (dict(fixed=("head",)), "fixed must be streams among augment, init, order"),
    (dict(epochs=6), "lr_decay_end must be >= 5"),
    (dict(lr_warmup_epochs=1), "lr_warmup_epochs must be 0 or >= 2"),
    (dict(model="resnet10"), "model must be one of"),
    (dict(name=""), "name must be a non-empty name"),
    (dict(eval_rule="last", headline_rule="picard"), "the headline epoch 1 is not evaluated"),
])
def test_a_bad_knob_is_one_line_naming_it_and_what_it_allows(change, message):
    with pytest.raises(FastseedError, match=message) as e:
        dataclasses.replace(SMOKE, **change)
    assert "\n" not in str(e.value) and str(e.value).startswith("protocol ")


@pytest.mark.parametrize("change,message", [
    (dict(classes=1), "classes must be >= 2"),
    (dict(head_init="xavier"), "head_init must be one of kaiming-a0"),
    (dict(fixed=("init",)), "fixed must be streams among augment, head, order"),
    (dict(phases=()), "needs at least one phase"),
])
def test_a_bad_finetune_knob_is_one_line(change, message):
    with pytest.raises(FastseedError, match=message) as e:
        dataclasses.replace(RN50, **change)
    assert "\n" not in str(e.value)


def test_a_bad_phase_knob_is_named_with_its_phase():
    head = dataclasses.replace(RN50.phases[0], lr=0.0)
    with pytest.raises(FastseedError, match="head.lr must be > 0, got 0.0"):
        dataclasses.replace(RN50, phases=(head, RN50.phases[1]))
    with pytest.raises(FastseedError, match="full.t_max must be >= 1"):
        dataclasses.replace(RN50, phases=(RN50.phases[0], dataclasses.replace(RN50.phases[1], t_max="12")))


def test_json_brings_back_tuples_phases_and_optional_knobs():
    p = get_preset("fast94").variant(train_size=2000, fixed=("augment", "init"))
    q = CifarProtocol.from_json(p.to_json())
    assert q == p and isinstance(q.lr_triangle, tuple) and isinstance(q.mean, tuple) and q.fixed == ("augment", "init")
    f = protocol_from_json(RN50.to_json())
    assert isinstance(f, Finetune) and all(isinstance(ph, Phase) for ph in f.phases) and f == RN50


def test_json_of_unknown_knobs_or_not_json_is_refused_in_one_line():
    fields = json.loads(SMOKE.to_json())
    with pytest.raises(FastseedError, match="unknown knob\\(s\\) warp_speed"):
        CifarProtocol.from_json(json.dumps({**fields, "warp_speed": 9}))
    with pytest.raises(FastseedError, match="not valid JSON"):
        CifarProtocol.from_json("{nope")


def test_head_init_none_is_what_each_backbone_had_before():
    vit = get_preset("imagenet-dino-vits16")
    assert vit.head_init is None and vit.head_rule == "normal-1e-5"
    assert dataclasses.replace(RN50, head_init=None).head_rule == "kaiming-a-sqrt5"
    assert RN50.head_rule == get_preset("imagenet-dino-rn50").head_rule == "kaiming-a0"


def test_knobs_added_now_stay_out_of_the_json_at_their_default():
    for key in ("order_rule", "test_loss", "model_digest"):
        assert key not in json.loads(SMOKE.to_json())
    assert json.loads(SMOKE.variant(order_rule="once").to_json())["order_rule"] == "once"
