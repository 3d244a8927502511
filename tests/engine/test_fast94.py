"""fast94 (airbench94) in the pack engine: the recipe's numbers, its per-step schedule and lookahead, its
augmentation and test-time augmentation against plain references, a seed's run independent of its
pack, --fix, and learning on real CIFAR-10 at small scale."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastseed.data.cifar import load_cifar10, to_tensors
from fastseed.data.synthetic import make_cifar_like
from fastseed.engine import step as step_module
from fastseed.engine.plan import plan_epoch
from fastseed.engine.schedule import lookahead_decay, sgd_hyperparameters, step_lr_multiplier
from fastseed.engine.optim import Lookahead, ScheduledSGD
from fastseed.engine.step import packed_loss
from fastseed.engine.train import build, init_model, train_pack, tta_logits
from fastseed.recipe.presets import get_preset
from fastseed.seeds import Seed

FAST94 = get_preset("fast94")
# 200 images in batches of 50: 4 steps an epoch, 2.5 epochs = 10 steps (4 + 4 + 2); lookahead every 3
# steps (3, 6, 9: step 10 is dropped by the final copy); the whitening bias trains in epoch 0 only
TINY = FAST94.variant(train_size=200, test_size=100, batch_size=50, eval_batch_size=50, width=0.0625,
                      epochs=3, train_epochs=2.5, whiten_bias_epochs=1, lookahead_every=3)
REL = 1e-9


@pytest.fixture(scope="module")
def data():
    return to_tensors(make_cifar_like(200, 100, seed=2), "cpu")


# --- the recipe's numbers -------------------------------------------------------------------------------

def test_fast94_is_airbench94():
    p = FAST94
    assert (p.model, p.batch_size, p.train_epochs, p.epochs, p.drop_last) == ("airbench94", 1024, 9.9, 10, True)
    assert (p.lr, p.momentum, p.nesterov, p.weight_decay, p.bias_scaler) == (11.5, 0.85, True, 0.0153, 64.0)
    assert (p.hyper_units, p.loss_reduction, p.ce_weight, p.lsce_weight, p.lsce_eps) == ("per1024", "sum", 0, 1, 0.2)
    assert (p.schedule, p.lr_triangle) == ("triangle", (0.2, 0.23, 0.07))
    assert (p.lookahead_every, p.lookahead_decay, p.lookahead_power, p.whiten_bias_epochs) == (5, 0.95, 3.0, 3)
    assert (p.augment, p.crop_pad, p.pad_mode, p.flip_rule, p.cutout) == ("image", 2, "reflect", "alternate", 0)
    assert p.mean == (0.4914, 0.4822, 0.4465) and p.std == (0.2470, 0.2435, 0.2616)
    assert (p.bn_eps, p.logit_scale, p.dtype) == (1e-12, pytest.approx(1 / 9), "float16")
    assert p.bn_momentum == pytest.approx(0.4)  # airbench's 0.6 is the weight of the old statistics
    assert (p.tta, p.eval_epochs, p.headline_epoch, p.eval_batch_size) == (2, (9,), 9, 2000)
    assert "2404.00498" in p.source and "airbench" in p.source


def test_sgd_hyperparameters_are_airbenchs_in_torch_units():
    hyper = sgd_hyperparameters(FAST94)
    lr, decay = hyper["other"]
    assert lr == pytest.approx(11.5 / (1024 * (1 + 1 / 0.15)), rel=1e-12) == pytest.approx(1.5 / 1024, rel=1e-12)
    # decay per step (lr · wd): 0.0153 per 1,024 examples at batch 1,024, ÷ (1 + 1/(1 − 0.85)); the same
    # for BatchNorm biases, whose lr alone is 64×
    assert lr * decay == pytest.approx(0.0153 / (1 + 1 / 0.15), rel=1e-12)
    bias_lr, bias_decay = hyper["bn_bias"]
    assert bias_lr == pytest.approx(64 * lr, rel=1e-12) and bias_lr * bias_decay == pytest.approx(lr * decay, rel=1e-12)


def test_steps_and_triangle_schedule_knots():
    assert (FAST94.steps_per_epoch(50_000), FAST94.total_steps(50_000)) == (48, 476)  # ceil(48 · 9.9)
    total, top = 476, int(0.23 * 476)
    assert top == 109
    knots = np.interp(np.arange(total), [0, top, total], [0.2, 1.0, 0.07])
    got = [step_lr_multiplier(FAST94, s, total) for s in range(total)]
    np.testing.assert_allclose(got, knots, rtol=0, atol=1e-12)
    assert got[0] == 0.2 and got[top] == 1.0 and max(got) == 1.0 and got[-1] == pytest.approx(0.07 + 0.93 / 367)
    for t in (5, 100, 475, 476):
        assert lookahead_decay(FAST94, t, total) == pytest.approx(0.95 ** 5 * (t / total) ** 3, rel=1e-12)


def test_loss_is_summed_label_smoothing_and_reported_per_image():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 30, 10, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (2, 30), generator=g)
    loss = packed_loss(FAST94, logits, y)
    want = torch.stack([F.cross_entropy(logits[k], y[k], label_smoothing=0.2, reduction="sum") for k in range(2)])
    assert torch.allclose(loss, want, rtol=1e-12)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    (want_grad,) = torch.autograd.grad(want.sum(), logits)
    assert torch.allclose(grad, want_grad, rtol=1e-12)


# --- augmentation ---------------------------------------------------------------------------------------

def test_alternating_flip_rule():
    """Each image's flip is drawn once; odd epochs flip exactly the images even epochs do not."""
    plans = [plan_epoch(FAST94, Seed(3), e, 5000) for e in range(4)]
    f0 = plans[0].flip
    assert 2300 < int(f0.sum()) < 2700  # a fair coin per image
    assert torch.equal(plans[1].flip, ~f0) and torch.equal(plans[2].flip, f0) and torch.equal(plans[3].flip, ~f0)
    assert not torch.equal(plan_epoch(FAST94, Seed(4), 0, 5000).flip, f0)
    assert not torch.any(plan_epoch(FAST94.variant(flip=False), Seed(3), 1, 5000).flip)


def test_translate_is_drawn_per_image_per_epoch():
    a, b = plan_epoch(FAST94, Seed(3), 0, 5000), plan_epoch(FAST94, Seed(3), 1, 5000)
    for t in (a.dy, a.dx):
        assert t.shape == (5000,) and set(t.tolist()) == {0, 1, 2, 3, 4}  # translate by −2 … 2
    assert not torch.equal(a.dy, b.dy) and not torch.equal(a.order, b.order)
    assert a.order.shape == (4096,) and len(set(a.order.tolist())) == 4096  # 4 full batches of 1,024
    assert torch.all(a.cy < -1000)  # no cutout


def test_training_batch_is_a_reflect_padded_translate_of_the_image(data):
    """The engine's batch for fast94 against numpy's reflect pad, crop and mirror, image by image."""
    p = TINY
    plan = plan_epoch(p, p.seed(5), 1, 200)
    idx = plan.order[:20]
    params = [getattr(plan, k)[idx] for k in ("dy", "dx", "flip", "cy", "cx")]
    x = step_module.augment_pack(p, data.train_x, idx[None], [t[None] for t in params], torch.float64)[0]
    for b, i in enumerate(idx.tolist()):
        mean, std = np.array(p.mean)[:, None, None], np.array(p.std)[:, None, None]
        img = (data.train_x[i].double().numpy() / 255 - mean) / std
        img = np.pad(img, ((0, 0), (2, 2), (2, 2)), mode="reflect")
        dy, dx = plan.dy[i].item(), plan.dx[i].item()
        img = img[:, dy: dy + 32, dx: dx + 32]
        want = img[:, :, ::-1] if plan.flip[i] else img
        np.testing.assert_allclose(x[b].numpy(), want, rtol=0, atol=1e-12)


# --- optimiser, lookahead, evaluation -------------------------------------------------------------------

@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-13), (torch.float32, 1e-6), (torch.float16, 2e-3)])
def test_scheduled_sgd_matches_torch_sgd(dtype, rel):
    g = torch.Generator().manual_seed(1)
    shapes = [(4, 3, 3, 3), (4,), (10, 4)]
    start = [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    ref = [torch.nn.Parameter(t.clone()) for t in start]
    groups = lambda ps: [dict(params=ps[:1], lr=0.05, weight_decay=5e-3), dict(params=ps[1:], lr=0.2, weight_decay=0.1)]
    opt = ScheduledSGD(groups(ours), momentum=0.85, nesterov=True, device="cpu")
    torch_opt = torch.optim.SGD(groups(ref), lr=0.0, momentum=0.85, nesterov=True)
    bases = [group["lr"] for group in torch_opt.param_groups]
    for step, multiplier in enumerate([0.2, 0.5, 1.0, 0.7, 0.3, 0.1]):
        grads = [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]
        for a, b, gr in zip(ours, ref, grads):
            a.grad, b.grad = gr.clone(), gr.clone()
        if step == 3:  # a parameter without a gradient (frozen) is skipped: no decay, no momentum
            ours[1].grad = ref[1].grad = None
        opt.set_lr_multiplier(multiplier)
        for group, base in zip(torch_opt.param_groups, bases):
            group["lr"] = base * multiplier
        opt.step()
        torch_opt.step()
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        assert (a.double() - b.double()).abs().max() <= rel * b.double().abs().max()


def test_lookahead_against_a_hand_computation():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).double()
    w0 = {k: v.clone() for k, v in net.state_dict().items()}
    look = Lookahead(net)
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.add_(2.0)
        net[1].num_batches_tracked.add_(7)
    w1 = {k: v.clone() for k, v in net.state_dict().items()}
    look.update(0.25)  # slow = w0 + 0.75 (w1 − w0); weights = slow
    for k, v in net.state_dict().items():
        want = w1[k] if k.endswith("num_batches_tracked") else w0[k] + 0.75 * (w1[k] - w0[k])
        assert torch.allclose(v, want, rtol=1e-15, atol=1e-15), k
    slow = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[0].bias.add_(5.0)  # steps after the last update: dropped by finish()
    look.finish()
    assert all(torch.equal(v, slow[k]) for k, v in net.state_dict().items())


def test_tta_level_2_against_a_plain_reference():
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(10, 3 * 32 * 32, generator=g, dtype=torch.float64)
    forward = lambda v: (v.flatten(1) @ weight.T)[None]  # a pack of one linear "net"
    x = torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64)
    f = lambda img: img.reshape(-1) @ weight.T.numpy()
    for b in range(4):
        img = x[b].numpy()
        padded = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="reflect")
        views = [img, padded[:, :32, :32], padded[:, 2:, 2:]]
        mirrored = [(f(v) + f(v[:, :, ::-1].copy())) / 2 for v in views]
        want = 0.5 * mirrored[0] + 0.25 * mirrored[1] + 0.25 * mirrored[2]
        np.testing.assert_allclose(tta_logits(forward, x, 2)[0, b].numpy(), want, rtol=1e-12)
        np.testing.assert_allclose(tta_logits(forward, x, 1)[0, b].numpy(), mirrored[0], rtol=1e-12)
        np.testing.assert_allclose(tta_logits(forward, x, 0)[0, b].numpy(), f(img), rtol=1e-12)


def test_fused_pack_keeps_frozen_weights_frozen_and_bias_groups_per_kind(data):
    pack, opt = build(TINY, [Seed(1), Seed(2)], "cpu", torch.float64, "fused", images=data.train_x)
    assert isinstance(opt, ScheduledSGD)
    model = pack.model
    assert not model.whiten.weight.requires_grad and model.whiten.bias.requires_grad
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not b.weight.requires_grad for b in bns)
    (bias_group, other_group) = opt.param_groups
    assert {id(p) for p in bias_group["params"]} == {id(b.bias) for b in bns}
    trained = {id(p) for p in pack.parameters() if p.requires_grad}
    assert {id(p) for p in other_group["params"]} == trained - {id(b.bias) for b in bns}
    assert bias_group["lr"] == pytest.approx(64 * other_group["lr"])
    # both seeds got the same whitening, fitted to the data
    w = model.whiten.weight
    assert torch.equal(w[:24], w[24:]) and w.abs().max() > 1


# --- the training loop ----------------------------------------------------------------------------------

def test_loop_steps_schedule_and_lookahead_as_the_package(data, monkeypatch):
    events = []
    set_lr, update, finish = ScheduledSGD.set_lr_multiplier, Lookahead.update, Lookahead.finish
    monkeypatch.setattr(ScheduledSGD, "set_lr_multiplier", lambda self, m: (events.append(("lr", m)), set_lr(self, m)))
    monkeypatch.setattr(Lookahead, "update", lambda self, d: (events.append(("look", d)), update(self, d)))
    monkeypatch.setattr(Lookahead, "finish", lambda self: (events.append(("finish",)), finish(self)))
    set_frozen = ScheduledSGD.set_frozen
    monkeypatch.setattr(ScheduledSGD, "set_frozen",
                        lambda self, p, frozen: (events.append(("frozen", frozen)), set_frozen(self, p, frozen)))
    (record,) = train_pack(TINY, [1], data, "cpu", dtype="float64")
    want, done = [("lr", 1.0)], 0  # the optimiser is built at multiplier 1
    for epoch, steps in enumerate((4, 4, 2)):  # 2.5 epochs of 4 steps
        want.append(("frozen", epoch >= 1))  # the whitening bias, switched at each epoch's start
        for _ in range(steps):
            want.append(("lr", step_lr_multiplier(TINY, done, 10)))  # before each step
            done += 1
            if done in (3, 6, 9):  # after every 3rd step
                want.append(("look", lookahead_decay(TINY, done, 10)))
    want.append(("finish",))
    assert events == want
    assert [row[0] for row in record.train_curve] == [0, 1, 2] and record.eval_curve[0][0] == 2
    assert record.headline_epoch == 2 and record.train_curve[0][1] < 3  # per-image loss, ~ln 10 at first


def test_whitening_weights_frozen_and_its_bias_trains_for_the_first_epochs_only(data, monkeypatch):
    p = TINY.variant(lookahead_every=0)  # lookahead would also average the bias after it is frozen
    biases, set_frozen = [], ScheduledSGD.set_frozen
    monkeypatch.setattr(ScheduledSGD, "set_frozen",  # at each epoch's start: the bias as it is
                        lambda self, p, frozen: (biases.append(p.detach().clone()), set_frozen(self, p, frozen)))
    models = []
    train_pack(p, [4], data, "cpu", dtype="float64", models_out=models)
    fitted = build(p, [Seed(4)], "cpu", torch.float64, images=data.train_x[:200])[0].model.whiten.weight
    assert torch.equal(models[0].whiten.weight, fitted)
    assert torch.all(biases[0] == 0) and torch.any(biases[1] != 0)  # trained in epoch 0 …
    assert torch.equal(biases[2], biases[1]) and torch.equal(models[0].whiten.bias, biases[1])  # … only
    models = []
    train_pack(p.variant(whiten_bias_epochs=0), [4], data, "cpu", dtype="float64", models_out=models)
    assert torch.all(models[0].whiten.bias == 0)


def assert_same_run(a, b, model_a, model_b):
    assert (a.seed, a.status, a.headline_epoch, a.predictions) == (b.seed, b.status, b.headline_epoch, b.predictions)
    assert [a.test_acc, a.test_loss] == pytest.approx([b.test_acc, b.test_loss], rel=REL)
    assert sum(a.train_curve, []) == pytest.approx(sum(b.train_curve, []), rel=REL)
    assert sum(a.eval_curve, []) == pytest.approx(sum(b.eval_curve, []), rel=REL)
    sa, sb = model_a.state_dict(), model_b.state_dict()
    for name in sb:
        diff = (sa[name].double() - sb[name].double()).abs().max().item()
        assert diff <= REL * max(sb[name].double().abs().max().item(), 1e-30), name


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fused", "streams"])
def test_seed_result_independent_of_pack(data, strategy):
    """Per-step lr, lookahead, bias groups, frozen layers, TTA: seed 7 in a pack of 3 is seed 7 alone."""
    alone = []
    (ref,) = train_pack(TINY, [7], data, "cpu", dtype="float64", strategy="sequential", models_out=alone)
    models = []
    records = train_pack(TINY, [3, 7, 2], data, "cpu", dtype="float64", strategy=strategy, models_out=models)
    assert records[1].pack == {"strategy": strategy, "size": 3, "slot": 1, "seeds": [3, 7, 2]}
    assert_same_run(records[1], ref, models[1], alone[0])
    assert records[0].train_curve != records[1].train_curve


def test_fix_holds_only_the_fixed_streams():
    a, b = (plan_epoch(FAST94.variant(fixed=("augment",)), FAST94.variant(fixed=("augment",)).seed(s), 1, 5000)
            for s in (1, 2))
    assert torch.equal(a.flip, b.flip) and torch.equal(a.dy, b.dy) and not torch.equal(a.order, b.order)
    p = TINY.variant(fixed=("init",))
    wa, wb = init_model(p, p.seed(1)).state_dict(), init_model(p, p.seed(2)).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    q = TINY.variant(fixed=("order",))
    assert torch.equal(plan_epoch(q, q.seed(1), 2, 200).order, plan_epoch(q, q.seed(2), 2, 200).order)
    assert not torch.equal(plan_epoch(q, q.seed(1), 2, 200).flip, plan_epoch(q, q.seed(2), 2, 200).flip)


def test_everything_fixed_makes_two_seeds_one_run(data):
    p = TINY.variant(fixed=("augment", "init", "order"), fix_seed=5)
    a, b = train_pack(p, [1, 2], data, "cpu", strategy="fused", dtype="float64")
    assert sum(a.train_curve, []) == pytest.approx(sum(b.train_curve, []), rel=REL) and a.predictions == b.predictions


@pytest.mark.slow
def test_learns_real_cifar10_at_small_scale(real_cifar_root):
    """The first 5,000 training images, 2 epochs of 20 batches of 250, 1/8 width, on 1,000 test images."""
    data = to_tensors(load_cifar10(real_cifar_root), "cpu")
    p = FAST94.variant(train_size=5000, test_size=1000, batch_size=250, eval_batch_size=500, width=0.125,
                       epochs=2, train_epochs=2.0, whiten_bias_epochs=1)
    (r,) = train_pack(p, [0], data, "cpu")
    assert r.status == "ok" and r.test_acc > 0.25  # chance is 0.1
    assert r.train_curve[1][1] < r.train_curve[0][1] and math.isfinite(r.test_loss)


def test_flops_match_the_architecture_and_the_paper():
    """By hand: 2·H·W·Cin·Cout·k² per image per conv at its output size; backward = 2× forward, except
    the whitening conv (frozen weights, input needs no gradient: forward only). Paper: 0.36 PFLOPs."""
    from fastseed.engine.flops import seed_flops
    convs = [(31, 24, 64), (15, 64, 64), (15, 64, 256), (7, 256, 256), (7, 256, 256), (3, 256, 256)]
    whiten = 2 * 31 * 31 * 3 * 24 * 4
    forward = whiten + sum(2 * s * s * a * b * 9 for s, a, b in convs) + 2 * 256 * 10
    f = seed_flops(FAST94)
    assert f.train_step == 1024 * (3 * forward - 2 * whiten)
    assert (f.steps, f.evals, f.eval_image) == (476, 1, 6 * forward)  # 6 test-time views
    assert 0.35e15 < f.total < 0.37e15
