"""Training: determinism per seed, independence of the pack, divergence, the recipe's optimiser."""

import copy
import math

import pytest
import torch

from fastseed.data.cifar import to_tensors
from fastseed.data.synthetic import make_cifar_like
from fastseed.engine import train_pack
from fastseed.engine.schedule import lr_multiplier
from fastseed.engine.optim import ScheduledSGD
from fastseed.engine.train import build
from fastseed.recipe.presets import get_preset
from fastseed.seeds import Seed

TINY = get_preset("smoke").variant(train_size=400, batch_size=100, chunk_size=100, epochs=3,
                                   lr_warmup_epochs=2, lr_decay_end=3, eval_batch_size=100)


@pytest.fixture(scope="module")
def data():
    return to_tensors(make_cifar_like(400, 200, seed=1), "cpu")


def outcome(r):
    """Everything of a record that the training decides (not wall time, not timestamps)."""
    return (r.seed, r.status, r.test_acc, r.test_loss, r.headline_epoch, r.eval_curve, r.train_curve,
            r.predictions)


def test_same_seed_twice_gives_identical_records(data):
    a, b = train_pack(TINY, [4], data, "cpu")[0], train_pack(TINY, [4], data, "cpu")[0]
    assert outcome(a) == outcome(b)
    assert a.protocol == TINY.name and a.protocol_hash == TINY.hash
    assert len(a.predictions) == 200 and len(a.eval_curve) == 3 and a.headline_epoch == 2


def test_two_seeds_differ(data):
    a, b = train_pack(TINY, [1, 2], data, "cpu")
    assert a.train_curve != b.train_curve and a.predictions != b.predictions


def test_seed_result_independent_of_pack(data):
    alone = train_pack(TINY, [7], data, "cpu", dtype="float64", strategy="sequential")[0]
    packed = train_pack(TINY, [3, 7], data, "cpu", dtype="float64", strategy="sequential")
    assert outcome(packed[1]) == outcome(alone)
    assert packed[1].pack == {"strategy": "sequential", "size": 2, "slot": 1, "seeds": [3, 7]}


def test_seed_result_independent_of_global_rng(data):
    torch.manual_seed(0)
    a = train_pack(TINY, [5], data, "cpu")[0]
    torch.manual_seed(999)
    torch.rand(1000)
    b = train_pack(TINY, [5], data, "cpu")[0]
    assert outcome(a) == outcome(b)


def test_smoke_learns_the_synthetic_classes(data):
    r = train_pack(TINY, [0], data, "cpu")[0]
    assert r.status == "ok" and r.test_acc > 0.3  # 10 classes: chance is 0.1
    assert r.train_curve[-1][1] < r.train_curve[0][1]


def test_diverged_seed_is_marked_and_partners_unharmed(data):
    blowup = TINY.variant(lr=1e30)
    (bad,) = train_pack(blowup, [0], data, "cpu")
    assert bad.status == "diverged" and math.isnan(bad.test_acc)
    assert not math.isfinite(bad.train_curve[-1][1]) and len(bad.predictions) == 200
    good = train_pack(TINY, [1], data, "cpu")[0]
    assert good.status == "ok" and math.isfinite(good.test_acc)


def test_optimiser_and_schedule_are_the_recipe():
    """Picard's SGD (momentum 0.9, Nesterov, weight decay on every parameter) at lr 0.2 × the LambdaLR
    multiplier of each epoch, from a device tensor: the same updates as torch.optim.SGD + LambdaLR."""
    p = get_preset("picard-short").variant(width=0.0625)
    pack, opt = build(p, [Seed(0)], torch.device("cpu"), torch.float64)
    group = opt.param_groups[0]
    assert isinstance(opt, ScheduledSGD) and len(opt.param_groups) == 1
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.2, 0.9, True, 1e-3)
    assert len(group["params"]) == len(list(pack.model.parameters()))  # weight decay on every parameter
    ref = copy.deepcopy(pack)
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(torch_opt, lambda e: lr_multiplier(p, e))
    g = torch.Generator().manual_seed(0)
    for epoch in range(p.epochs):
        opt.set_lr_multiplier(lr_multiplier(p, epoch))
        for a, b in zip(pack.parameters(), ref.parameters()):
            a.grad = torch.randn(a.shape, generator=g, dtype=a.dtype)
            b.grad = a.grad.clone()
        opt.step()
        torch_opt.step()
        sched.step()
    for a, b in zip(pack.parameters(), ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-15)


def test_record_carries_provenance(data):
    r = train_pack(TINY, [0], data, "cpu")[0]
    prov = r.provenance
    assert prov["torch"] == torch.__version__ and prov["device_type"] == "cpu" and prov["dtype"] == "float32"
    assert prov["fastseed"] and "commit" in prov and prov["started_at"] <= prov["finished_at"]
    assert r.wall_time_s > 0
