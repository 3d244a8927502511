"""Epoch plans: Picard's chunk quirk, per-image mode, and the order of an epoch."""

import torch

from fastseed.engine.plan import plan_epoch
from fastseed.recipe.presets import get_preset
from fastseed.seeds import Seed

PICARD = get_preset("picard-short")
PARAMS = ("dy", "dx", "flip", "cy", "cx")


def chunk_params(plan, chunk):
    return torch.stack([getattr(plan, k).long() for k in PARAMS], 1).view(-1, chunk, len(PARAMS))


def test_chunk_augmentation_is_shared_within_chunks_of_500_in_dataset_order():
    plan = plan_epoch(PICARD, Seed(3), 0, 50000)
    chunks = chunk_params(plan, 500)  # (100 chunks, 500 images, 5 params), dataset order
    assert torch.all(chunks == chunks[:, :1])  # one crop/flip/cutout per chunk
    distinct = {tuple(c[0].tolist()) for c in chunks}
    assert len(distinct) > 90  # and chunks differ from each other
    assert chunks[:, 0, :2].min() >= 0 and chunks[:, 0, :2].max() <= 8
    assert chunks[:, 0, 3:].min() >= 0 and chunks[:, 0, 3:].max() <= 31
    assert 20 < chunks[:, 0, 2].sum() < 80  # flips happen about half the time


def test_augmentation_is_redrawn_every_epoch_and_shuffled_after():
    a, b = plan_epoch(PICARD, Seed(3), 0, 50000), plan_epoch(PICARD, Seed(3), 1, 50000)
    assert not torch.equal(a.dy, b.dy) and not torch.equal(a.order, b.order)
    assert torch.equal(a.order.sort().values, torch.arange(50000))  # one permutation of the epoch
    # a shuffled batch mixes many chunks, each image keeping its chunk's parameters
    assert len(set((a.order[:500] // 500).tolist())) > 50


def test_no_last_partial_batch():
    plan = plan_epoch(PICARD.variant(batch_size=300, chunk_size=300), Seed(0), 0, 1000)
    assert plan.order.shape == (900,) and len(set(plan.order.tolist())) == 900


def test_per_image_mode_draws_per_image():
    plan = plan_epoch(PICARD.variant(augment="image"), Seed(3), 0, 50000)
    chunks = chunk_params(plan, 500)
    assert not torch.all(chunks == chunks[:, :1])
    assert len({tuple(p.tolist()) for p in chunks[0]}) > 400


def test_plan_is_a_pure_function_of_seed_and_epoch():
    a, b = plan_epoch(PICARD, Seed(11), 4, 5000), plan_epoch(PICARD, Seed(11), 4, 5000)
    assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("order",) + PARAMS)
    c = plan_epoch(PICARD, Seed(12), 4, 5000)
    assert not torch.equal(a.order, c.order)


def test_resnet18_exp2_trains_every_epoch_of_every_run_in_one_permutation():
    """The original's exp 2: a Subset shuffled once, DataLoader(shuffle=False): the same batches in the
    same sequence in every epoch and every run (PROTOCOLS.md §3)."""
    exp2 = get_preset("resnet18-exp2")
    orders = [plan_epoch(exp2, exp2.seed(s), e, 50000).order for s in (0, 1, 3407) for e in (0, 1, 9)]
    assert all(torch.equal(o, orders[0]) for o in orders) and orders[0].shape == (50000,)
    assert torch.equal(orders[0].sort().values, torch.arange(50000)) and not torch.equal(orders[0], torch.arange(50000))


def test_fix_order_elsewhere_keeps_a_per_epoch_sequence_fixed_across_runs():
    fixed = PICARD.variant(fixed=("order",))
    a, b = (plan_epoch(fixed, fixed.seed(s), 0, 5000).order for s in (1, 2))
    c = plan_epoch(fixed, fixed.seed(1), 1, 5000).order
    assert torch.equal(a, b) and not torch.equal(a, c)  # the same in every run, new every epoch
    once = PICARD.variant(order_rule="once")  # one permutation per run, each run its own
    x, y = (plan_epoch(once, once.seed(1), e, 5000).order for e in (0, 5))
    assert torch.equal(x, y) and not torch.equal(x, plan_epoch(once, once.seed(2), 0, 5000).order)
