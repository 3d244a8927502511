"""Holding sources of randomness fixed: --fix init / order / augment, and --deterministic."""

import pytest
import torch

from fastseed.data.cifar import to_tensors
from fastseed.data.synthetic import make_cifar_like
from fastseed.engine import train_pack
from fastseed.engine.plan import plan_epoch
from fastseed.engine.train import init_model
from fastseed.recipe.presets import get_preset

SMOKE = get_preset("smoke")
TINY = SMOKE.variant(train_size=200, batch_size=100, chunk_size=100, epochs=2, lr_warmup_epochs=2,
                     lr_decay_end=3, eval_batch_size=100, width=0.0625)


def same_init(protocol, a, b):
    wa, wb = init_model(protocol, protocol.seed(a)).state_dict(), init_model(protocol, protocol.seed(b)).state_dict()
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def same(protocol, a, b, field, epoch=0):
    pa, pb = plan_epoch(protocol, protocol.seed(a), epoch, 5000), plan_epoch(protocol, protocol.seed(b), epoch, 5000)
    return torch.equal(getattr(pa, field), getattr(pb, field))


@pytest.mark.parametrize("fixed,init,order,augment", [
    ((), False, False, False),
    (("init",), True, False, False),
    (("order",), False, True, False),
    (("init", "order"), True, True, False),
    (("augment", "init", "order"), True, True, True),
])
def test_fixed_streams_hold_only_their_factor(fixed, init, order, augment):
    p = SMOKE.variant(fixed=fixed)
    assert same_init(p, 1, 2) is init
    assert same(p, 1, 2, "order") is order and same(p, 1, 2, "order", epoch=3) is order
    assert same(p, 1, 2, "dy") is augment and same(p, 1, 2, "cy") is augment


def test_fixed_streams_are_a_distinct_protocol_named_for_them():
    p = SMOKE.variant(fixed=("init",), fix_seed=7)
    assert p.hash != SMOKE.hash and p.name == "smoke[fix_seed=7,fixed=init]"
    assert same_init(p, 1, 2) and same_init(SMOKE, 7, 7)
    w7 = init_model(SMOKE, SMOKE.seed(7)).state_dict()
    assert all(torch.equal(w7[k], v) for k, v in init_model(p, p.seed(1)).state_dict().items())


def test_records_show_what_was_fixed():
    data = to_tensors(make_cifar_like(200, 100, seed=1), "cpu")
    p = TINY.variant(fixed=("augment", "init", "order"), fix_seed=3)
    a, b = train_pack(p, [1, 2], data, "cpu", strategy="fused", dtype="float64")
    assert a.provenance["fixed"] == ["augment", "init", "order"] and a.provenance["fix_seed"] == 3
    # every stream the engine draws from is fixed: the two runs are the same run
    assert sum(a.train_curve, []) == pytest.approx(sum(b.train_curve, []), rel=1e-9)
    assert a.predictions == b.predictions


def test_deterministic_mode_is_scoped_to_the_run():
    data = to_tensors(make_cifar_like(200, 100, seed=1), "cpu")
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    (a,) = train_pack(TINY.variant(deterministic=True), [4], data, "cpu")
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    (b,) = train_pack(TINY, [4], data, "cpu")
    assert a.train_curve == b.train_curve and a.predictions == b.predictions  # the CPU is deterministic anyway
