"""Seed streams are frozen: these golden values change only if every stored result would change."""

import pytest
import torch

from fastseed.engine.plan import plan_epoch
from fastseed.models import create_model
from fastseed.recipe.presets import get_preset
from fastseed.seeds import STREAMS, Seed


def test_keys_are_frozen():
    s = Seed(3407)
    assert s.key("init") == 0x98C1238940AA6D6B
    assert s.key("order", 0) == 0x11A5EB0A7E5FDBFC
    assert s.key("augment", 21) == 0x191A517C6846D05A


def test_draws_are_frozen():
    s = Seed(3407)
    assert torch.randn(3, generator=s.generator("init")).tolist() == pytest.approx(
        [0.8885276317596436, -1.0427438020706177, -0.37632980942726135], abs=1e-7)
    assert Seed(0).numpy("order", 1).integers(0, 1000, 4).tolist() == [809, 946, 566, 701]


def test_picard_epoch_plan_is_frozen():
    plan = plan_epoch(get_preset("picard-short"), Seed(3407), 0, 50000)
    assert plan.order[:8].tolist() == [22273, 11581, 5255, 420, 14508, 9408, 19047, 6872]
    firsts = [t[::500][:4].tolist() for t in (plan.dy, plan.dx, plan.flip, plan.cy, plan.cx)]
    assert firsts == [[7, 4, 0, 0], [6, 6, 3, 5], [False] * 4, [8, 14, 27, 29], [26, 4, 15, 0]]


def test_initial_weights_are_frozen():
    with Seed(3407).torch_default("init"):
        model = create_model(get_preset("picard-short"))
    assert model.features[0][0].weight.flatten()[:3].tolist() == pytest.approx(
        [0.13771334290504456, 0.03300929069519043, -0.06693676114082336], abs=1e-7)
    assert model.head.weight.flatten()[:2].tolist() == pytest.approx(
        [-0.04986139386892319, -0.003003351390361786], abs=1e-7)


def test_streams_are_distinct_and_counter_keyed():
    s = Seed(7)
    keys = {s.key(stream, epoch, step) for stream in STREAMS for epoch in range(5) for step in range(5)}
    assert len(keys) == len(STREAMS) * 25
    assert Seed(7).key("order", 3) == Seed(7).key("order", 3)
    assert Seed(7).key("order", 3) != Seed(8).key("order", 3)


def test_draws_ignore_the_global_generator():
    torch.manual_seed(1)
    a = torch.rand(4, generator=Seed(5).generator("augment", 2))
    torch.manual_seed(2)
    torch.rand(100)  # global activity between draws
    b = torch.rand(4, generator=Seed(5).generator("augment", 2))
    assert torch.equal(a, b)


def test_torch_default_restores_the_global_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with Seed(9).torch_default("init"):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with Seed(9).torch_default("init"):
        assert torch.equal(torch.rand(3), inside)


def test_fixed_stream_draws_from_the_reference_seed():
    a, b = Seed(1, fixed={"init"}, fix_seed=0), Seed(2, fixed={"init"}, fix_seed=0)
    assert a.key("init") == b.key("init") == Seed(0).key("init")
    assert a.key("order", 0) != b.key("order", 0)


@pytest.mark.parametrize("bad", [dict(value=-1), dict(value=1.5), dict(value=1, fixed={"colour"})])
def test_bad_seeds_are_refused(bad):
    with pytest.raises(ValueError):
        Seed(**bad)
