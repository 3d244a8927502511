"""Pack strategies: a seed's record and weights do not depend on its pack, its partners or its slot;
a diverging seed is marked and does not disturb its partners. Float64 on the CPU, so "the same"
means a relative difference of at most 1e-9 (grouped and plain convolutions round differently)."""

import math

import pytest
import torch

from fastseed.data.cifar import to_tensors
from fastseed.data.synthetic import make_cifar_like
from fastseed.engine import train
from fastseed import FastseedError
from fastseed.engine.pack import Fused, fuse, fusion_problem
from fastseed.engine.train import init_model, train_pack
from fastseed.recipe.presets import get_preset
from fastseed.seeds import Seed

TINY = get_preset("smoke").variant(train_size=200, batch_size=100, chunk_size=100, epochs=2,
                                   lr_warmup_epochs=2, lr_decay_end=3, eval_batch_size=100, width=0.0625)
REL = 1e-9


@pytest.fixture(scope="module")
def data():
    return to_tensors(make_cifar_like(200, 100, seed=2), "cpu")


def alone(data, seed, **kw):
    models = []
    kw.setdefault("strategy", "sequential")  # the reference: one plain model
    (record,) = train_pack(TINY, [seed], data, "cpu", dtype="float64", models_out=models, **kw)
    return record, models[0]


def assert_same_run(a, b, model_a, model_b):
    assert (a.seed, a.status, a.headline_epoch, a.predictions) == (b.seed, b.status, b.headline_epoch, b.predictions)
    for x, y in [(a.test_acc, b.test_acc), (a.test_loss, b.test_loss)]:
        assert x == pytest.approx(y, rel=REL)
    for ca, cb in [(a.eval_curve, b.eval_curve), (a.train_curve, b.train_curve)]:
        assert [row[0] for row in ca] == [row[0] for row in cb]
        assert sum(ca, []) == pytest.approx(sum(cb, []), rel=REL)
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        diff = (sa[name].double() - sb[name].double()).abs().max().item()
        assert diff <= REL * max(sb[name].double().abs().max().item(), 1e-30), name


@pytest.fixture(scope="module")
def reference(data):
    return {s: alone(data, s) for s in (7, 2)}


@pytest.mark.parametrize("strategy,layout", [("fused", [3, 7, 11, 2]), ("fused", [7, 40, 2, 5]),
                                             ("streams", [2, 9, 8, 7])])
def test_seed_result_independent_of_pack(data, reference, strategy, layout):
    models = []
    records = train_pack(TINY, layout, data, "cpu", dtype="float64", strategy=strategy, models_out=models)
    assert [r.seed for r in records] == layout
    for seed in (7, 2):
        k = layout.index(seed)
        assert records[k].pack == {"strategy": strategy, "size": 4, "slot": k, "seeds": layout}
        assert_same_run(records[k], reference[seed][0], models[k], reference[seed][1])


def test_diverging_seed_is_marked_and_isolated(data, reference, monkeypatch):
    def poisoned(protocol, seed):
        model = init_model(protocol, seed)
        if seed.value == 666:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))
        return model

    monkeypatch.setattr(train, "init_model", poisoned)
    models = []
    records = train_pack(TINY, [7, 666, 2], data, "cpu", dtype="float64", strategy="fused", models_out=models)
    bad = records[1]
    assert bad.status == "diverged" and math.isnan(bad.test_acc) and bad.eval_curve == []
    assert len(bad.train_curve) == 1 and math.isnan(bad.train_curve[0][1])
    for k, seed in ((0, 7), (2, 2)):
        assert records[k].status == "ok"
        assert_same_run(records[k], reference[seed][0], models[k], reference[seed][1])


def test_fused_model_is_k_models_side_by_side():
    models = [init_model(TINY, Seed(s)).double() for s in range(3)]
    fused = Fused(models)
    x = torch.randn(3, 4, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        got = fused.forward_train(x)
        want = torch.stack([m(x[k]) for k, m in enumerate(models)])
    assert got.shape == (3, 4, 10) and torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    convs = [m for m in fused.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.groups == 3 for c in convs)
    assert sum(p.numel() for p in fused.parameters()) == 3 * sum(p.numel() for p in models[0].parameters())


@pytest.mark.parametrize("preset", ["smoke", "fast94"])
def test_built_in_models_fuse(preset):
    model = init_model(get_preset(preset).variant(width=0.125), Seed(0))
    assert fusion_problem(model) is None


class ScaledConv(torch.nn.Conv2d):
    """A Conv2d subclass computes something else in its forward: fuse() must not swap it for a plain conv."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_fuse_packs_layers_by_exact_type_only():
    net = torch.nn.Sequential(ScaledConv(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))
    with pytest.raises(FastseedError, match=r"cannot pack layer 0 \(ScaledConv\): it has parameters of its own"):
        fuse([net, net])
    assert "ScaledConv" in fusion_problem(net)
