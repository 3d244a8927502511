"""The ImageNet data path: indexing (cold and cached) and DALI train / eval throughput on synthetic JPEGs.

Full mode (GPU): 16 classes x 64 train / 16 val JPEGs of ImageNet's typical size (500x375 +-25 %, q 90),
batch 128, bf16 NCHW on the GPU, decode "mixed"; the number that matters is images/s (extra_info), the
feed rate a fine-tuning run needs (a ResNet50 step of 128 at bf16 on an H100 wants roughly 3,000/s).
Quick mode (CPU, CI): the same code at toy size, so the suite never rots; those timings mean nothing.
Each round builds a fresh pipeline and takes its first batch outside the timing (DALI's build and
prefetch), then times the remaining batches; bench/imagenet_loader.py compares with a PIL DataLoader.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from fastseed.data.imagenet import eval_batches, index_imagenet, train_batches
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.seeds import Seed


@pytest.fixture(scope="module")
def sizes(quick):
    if quick:
        return dict(classes=4, train_per_class=8, val_per_class=4, batch=4, steps=6, threads=2)
    return dict(classes=16, train_per_class=64, val_per_class=16, batch=128, steps=24, threads=8)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory, sizes):
    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet_folder(root, sizes["classes"], sizes["train_per_class"], sizes["val_per_class"],
                          size=(500, 375), quality=90, seed=0, corrupt=3)
    return root


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(benchmark, make, device, quick, images_per_round):
    """Time draining make() after its first batch; record images/s (median round)."""
    def setup():
        batches = make()
        next(batches)  # the pipeline build and its prefetch stay outside the timing
        sync(device)
        return (batches,), {}

    def drain(batches):
        for x, _ in batches:
            pass
        sync(device)
    benchmark.pedantic(drain, setup=setup, rounds=2 if quick else 5, iterations=1)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                                images_per_round=images_per_round, images_per_s=images_per_round / seconds)


@pytest.mark.parametrize("cached", [False, True], ids=["cold", "cached"])
def test_index(benchmark, imagenet_root, tmp_path, cached):
    cache = tmp_path / "cache"
    if cached:
        index_imagenet(imagenet_root, "train", cache_dir=cache)

    def setup():
        if not cached:
            shutil.rmtree(cache, ignore_errors=True)
        return (), {}
    index = benchmark.pedantic(lambda: index_imagenet(imagenet_root, "train", cache_dir=cache), setup=setup,
                               rounds=3, iterations=1)
    assert len(index.skipped) == 3
    benchmark.extra_info.update(files=len(index) + len(index.skipped),
                                files_per_s=(len(index) + len(index.skipped)) / benchmark.stats.stats.median)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_train_pipeline(benchmark, imagenet_root, sizes, device, quick, layout):
    index = index_imagenet(imagenet_root, "train")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    b, steps = sizes["batch"], sizes["steps"]
    make = lambda: train_batches(index, Seed(0), 1, b, steps, device, dtype, layout=layout,  # noqa: E731
                                 num_threads=sizes["threads"])
    throughput(benchmark, make, device, quick, b * (steps - 1))


def test_eval_pipeline(benchmark, imagenet_root, sizes, device, quick):
    index = index_imagenet(imagenet_root, "val")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    b = max(1, len(index) // 4)
    make = lambda: eval_batches(index, b, device, dtype, num_threads=sizes["threads"])  # noqa: E731
    throughput(benchmark, make, device, quick, len(index) - b)


@pytest.mark.slow
def test_training_throughput_script_runs(tmp_path):
    """bench/imagenet_train.py (the GPU session's training-throughput and 50-seed projection script) at
    toy size on the CPU, so it cannot rot between GPU sessions: every preset, both phases, evaluation."""
    import importlib.util
    import json
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("imagenet_train", Path(__file__).with_name("imagenet_train.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path), "--quick"]) == 0
    runs = json.loads((tmp_path / "imagenet_train.json").read_text())["runs"]
    assert [r["preset"] for r in runs] == ["imagenet-rn50", "imagenet-dino-rn50", "imagenet-dino-vits16"]
    for r in runs:
        assert r["status"] == "ok" and [p["phase"] for p in r["phases"]] == ["head", "full"]
        assert all(p["images_per_s"] > 0 and p["timed_steps"] == 1 for p in r["phases"]) and r["eval_images_per_s"] > 0
    fake = {"phases": [{"images_per_s": 4000.0}, {"images_per_s": 3000.0}], "eval_images_per_s": 10000.0}
    hours = script.projection("imagenet-rn50", fake)["seed_hours"]  # 2,000·128/4,000 + 24,000·64/3,000 + 14 evals
    assert hours == pytest.approx((2000 * 128 / 4000 + 24000 * 64 / 3000 + 14 * 50000 / 10000) / 3600)
