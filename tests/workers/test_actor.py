"""What a Ray actor runs, without Ray (the class runs as it is): it loads the data it is handed on its
first call, backs off to smaller packs when memory runs out and still returns every seed, returns a
queued pack untrained once halted, and turns a refusal into the same one line on every call.

A tiny CIFAR protocol (real CIFAR-10, 100 images, one epoch: milliseconds a seed)."""

import dataclasses

import numpy as np
import pytest
import torch

from fastseed import FastseedError, engine
from fastseed.data.cifar import load_cifar10
from fastseed.jobs import Options
from fastseed.recipe.presets import get_preset
from fastseed.store.record import Record
from fastseed.workers.actor import Trainer

TINY = get_preset("smoke").variant(width=0.0625, train_size=100, test_size=100, batch_size=50, chunk_size=50,
                                   epochs=1, eval_batch_size=100)


@pytest.fixture(scope="module")
def data(real_cifar_root):
    return load_cifar10(real_cifar_root)  # as the driver reads it, before it ships it


def trainer(**options) -> Trainer:
    options = Options(device="cpu", **options).to_dict()
    return Trainer(TINY.to_json(), options, threads=None, seeds_left=4, workers=1)


def test_an_actor_loads_the_data_it_is_handed_and_says_what_it_trains(data):
    actor = trainer(pack=2)
    ready = actor.prepare(4, data)
    assert np.array_equal(ready["labels"], data.test_y[:100])
    assert ready["pack"] == 2 and ready["describe"] == "strategy fused, pack 2" and ready["device"] == "cpu"
    assert ready["training"] is None and ready["code"]["fastseed"]
    back = actor.train([5, 6], data)
    records = [Record(**row) for row in back["records"]]  # plain data, as it travels
    assert [r.seed for r in records] == [5, 6] and back["pack"] is None
    assert all(r.status == "ok" and r.pack["size"] == 2 and len(r.predictions) == 100 for r in records)


def test_out_of_memory_halves_the_pack_and_every_seed_still_comes_back(data, monkeypatch):
    real, sizes = engine.train_pack, []

    def tight(protocol, seeds, *args, **kwargs):  # memory for one seed at a time
        sizes.append(len(seeds))
        if len(seeds) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(protocol, seeds, *args, **kwargs)

    monkeypatch.setattr(engine, "train_pack", tight)
    actor = trainer(pack=4)
    back = actor.train([0, 1, 2, 3], data)
    assert sorted(row["seed"] for row in back["records"]) == [0, 1, 2, 3]
    assert back["pack"] == 1 and sizes == [4, 2, 1, 1, 1, 1]
    assert actor.news(0) == ["out of memory: backing off to packs of 2", "out of memory: backing off to packs of 1"]


def test_a_halted_actor_returns_a_queued_pack_untrained(data):
    actor = trainer()
    actor.halt()
    assert actor.train([0, 1], data) == {"records": [], "pack": None}
    assert actor.hello()["training"] is None


def test_an_actor_halted_mid_seed_returns_the_seeds_before_it_and_raises_nothing(data, monkeypatch):
    """A long seed (ImageNet) halted by a Ctrl-C checkpoints and raises the engine's SeedStopped: the
    actor returns what it committed before it, so the driver releases the rest (not an actor failure)."""
    from fastseed.engine.checkpoint import SeedStopped
    actor = trainer(pack=1)
    actor.prepare(3, data)
    train = actor.job.train

    def halted_on_the_second(seeds, commit, stop_flag, on_progress=None):  # one seed after another, as ImageNet's
        for seed in seeds:
            if seed == 2:
                actor.halt()
                raise SeedStopped(seed, 40, 100, None)
            train([seed], commit, stop_flag, on_progress)

    monkeypatch.setattr(actor.job, "train", halted_on_the_second)
    back = actor.train([1, 2, 3], data)
    assert [r["seed"] for r in back["records"]] == [1] and back["pack"] is None
    assert actor.hello()["training"] is None


def test_an_actor_that_cannot_build_its_job_refuses_every_call_in_one_line(data):
    actor = trainer(weights="/nowhere/rn50.pth")
    for call in (lambda: actor.prepare(4, data), actor.hello, lambda: actor.train([0], data)):
        with pytest.raises(FastseedError, match=r"^--weights: only for the imagenet-\* presets, not smoke\["):
            call()


def test_an_actor_reads_its_own_data_when_none_is_shipped(real_cifar_root):
    actor = trainer(data_dir=str(real_cifar_root))
    assert actor.prepare(1, None)["labels"].shape == (100,)
    assert dataclasses.asdict(Record(**actor.train([9], None)["records"][0]))["seed"] == 9
