"""Jobs: built from a protocol and a frozen, plain Options (never a command line's Namespace); a
strategy is decided in one registry; an explicit pack is capped by the seeds left and, on a CPU, by the
memory a seed needs."""

import dataclasses
import inspect
import json
import types

import pytest
import torch

from fastseed import FastseedError
from fastseed.engine import autopack, train_pack
from fastseed.engine.pack import DEFAULT_STRATEGY, STRATEGIES, Fused, get_strategy, register_strategy
from fastseed.jobs import CifarJob, FinetuneJob, Options, make_job
from fastseed.models import create_model, set_dtype
from fastseed.recipe.presets import get_preset

SMOKE = get_preset("smoke")


def test_options_are_frozen_plain_values_that_travel_as_json():
    options = Options(device="cpu", pack=4, strategy="streams", loader_threads=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.pack = 8
    assert Options(**json.loads(json.dumps(options.to_dict()))) == options  # what a pool's worker receives


def test_a_job_is_made_for_the_protocols_data_set():
    assert isinstance(make_job(SMOKE, Options(device="cpu")), CifarJob)
    with pytest.raises(FastseedError, match="needs --weights PATH"):
        make_job(get_preset("imagenet-rn50"), Options(device="cpu"))  # an ImageNet job, asking its file
    # (a CifarProtocol validates its data set, so a recipe of another kind stands in for one)
    with pytest.raises(FastseedError, match="no job trains data set 'mnist'"):
        make_job(types.SimpleNamespace(name="digits", dataset="mnist"), Options(device="cpu"))


def test_the_default_strategy_is_decided_once():
    job = make_job(SMOKE, Options(device="cpu"))
    assert job.strategy is get_strategy(DEFAULT_STRATEGY) and DEFAULT_STRATEGY == "fused"
    assert inspect.signature(train_pack).parameters["strategy"].default == DEFAULT_STRATEGY
    assert list(STRATEGIES) == ["sequential", "fused", "streams"]
    assert [(s.together, s.graphs) for s in STRATEGIES.values()] == [(False, False), (True, True), (True, True)]


def test_a_registered_strategy_trains_through_every_layer(real_cifar_root, monkeypatch):
    """One decorator makes a strategy exist for train_pack, the jobs and the command line's choices."""
    monkeypatch.setitem(STRATEGIES, "fused-again", None)  # removed again after the test
    register_strategy("fused-again", together=True, graphs=False)(lambda models, device: Fused(models))
    from fastseed.data.cifar import to_tensors
    from fastseed.data.synthetic import make_cifar_like
    tiny = SMOKE.variant(width=0.0625, train_size=100, test_size=100, batch_size=50, chunk_size=50, epochs=1,
                         eval_batch_size=100)
    data = to_tensors(make_cifar_like(100, 100, seed=3), "cpu")
    new = train_pack(tiny, [1, 2], data, "cpu", strategy="fused-again", dtype="float64")
    ref = train_pack(tiny, [1, 2], data, "cpu", strategy="fused", dtype="float64")
    assert [r.predictions for r in new] == [r.predictions for r in ref]
    assert new[1].pack == {"strategy": "fused-again", "size": 2, "slot": 1, "seeds": [1, 2]}
    assert make_job(tiny, Options(device="cpu", strategy="fused-again")).together
    from fastseed.scan import parse
    assert parse(["--strategy", "fused-again"]).strategy == "fused-again"


@pytest.mark.parametrize("options,phrase", [
    (Options(device="cpu", pack=4), "--pack: not for imagenet-rn50"),
    (Options(device="cpu", strategy="fused"), "--strategy: not for imagenet-rn50"),
    (Options(device="cpu", graphs=False), "--no-graphs: not for imagenet-rn50"),
    (Options(device="cpu", weights="/no/such/file.pth"), "--weights /no/such/file.pth: no such file"),
    (Options(device="cpu", weights="w.pth", dtype="float64"), "--dtype float64"),
])
def test_options_an_imagenet_job_cannot_use_are_refused(options, phrase):
    with pytest.raises(FastseedError, match=phrase.replace("/", ".")):
        FinetuneJob(get_preset("imagenet-rn50"), options)


def test_an_explicit_pack_is_capped_by_the_seeds_left_and_by_a_cpus_memory(monkeypatch):
    lines = []
    job = make_job(SMOKE, Options(device="cpu", pack=100000))
    per_seed = autopack.seed_bytes(SMOKE, torch.float32)
    monkeypatch.setattr(autopack, "available_memory", lambda: 100 * per_seed)
    assert job.pack_size(remaining=3, log=lines.append) == 3
    assert job.pack_size(remaining=10**12, log=lines.append) == 80  # 80 % of memory for 100 seeds
    assert lines[-1].startswith("--pack 100000: capped at 80: a seed needs about")
    assert make_job(SMOKE, Options(device="cpu")).pack_size(remaining=10**12, log=lines.append) == 1  # auto
    assert make_job(SMOKE, Options(device="cpu", pack=5, strategy="sequential")).pack_size(10, lines.append) == 5


def test_the_memory_of_a_seed_is_its_activations_and_four_copies_of_its_weights():
    """Against an independent count: the estimate is linear in the batch (activations) plus 4 × the
    parameter bytes of the real model, counted here on the CPU (and a few per-channel statistics
    BatchNorm saves whatever the batch)."""
    weights = sum(p.numel() * p.element_size() for p in set_dtype(create_model(SMOKE), torch.float32).parameters())
    at = lambda batch: autopack.seed_bytes(SMOKE.variant(batch_size=batch), torch.float32)
    one, two, three = at(100), at(200), at(300)
    assert two - one == three - two > 0  # activations grow with the batch, exactly linearly
    assert 4 * weights <= 2 * one - two <= 1.02 * 4 * weights  # what does not grow with it
    assert at(500) > 20 * weights  # picard's batch of 500: activations dominate
    assert autopack.seed_bytes(SMOKE, torch.float16) < autopack.seed_bytes(SMOKE, torch.float32)
