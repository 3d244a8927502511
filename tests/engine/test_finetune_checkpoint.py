"""Long ImageNet seeds survive: stopped (the first Ctrl-C) or killed (SIGKILL) mid-run, a seed resumes
from its checkpoint and ends with the record of an uninterrupted run, bit for bit on the CPU. The real
ResNet50 on a few synthetic JPEGs, two phases of 3 steps whose cosine steps every step (so a scheduler,
an optimizer or a data position restored wrongly changes every later loss)."""

import dataclasses
import logging
import os
import signal
import sys
import textwrap

import pytest
import torch

import fastseed.engine.checkpoint as checkpoint
from fastseed import FastseedError
from fastseed.data.imagenet import index_imagenet
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.engine.checkpoint import SeedStopped
from fastseed.engine.finetune import ImagenetData, train_finetune
from fastseed.models.imagenet import build_backbone
from fastseed.recipe.presets import PRESETS
from fastseed.replay import COMPARED
from processes import Process

SEED = 5


def protocol_for_tests():
    base = PRESETS["imagenet-rn50"].variant(classes=3, limit_batch=4, eval_batch_size=4, image_size=64)
    phases = tuple(dataclasses.replace(p, steps=3, eval_every=2, sched_every=1, t_max=3) for p in base.phases)
    return dataclasses.replace(base, phases=phases)  # validation after global steps 2, 3, 5 and 6


PROTOCOL = protocol_for_tests()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet_folder(root, classes=3, train_per_class=4, val_per_class=2, size=(120, 90))
    return ImagenetData(index_imagenet(root, "train"), index_imagenet(root, "val"))


def make_backbone():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_backbone("resnet50")


@pytest.fixture(scope="module")
def backbone():
    return make_backbone()


@pytest.fixture(scope="module")
def uninterrupted(data, backbone):
    """The reference run. It is asked to stop after its last step, when there is nothing left to save
    time on: it must return its record all the same."""
    progress = []
    record = train_finetune(PROTOCOL, SEED, data, backbone, "cpu", on_progress=lambda *a: progress.append(a),
                            should_stop=lambda: progress[-1][0] == 6)
    return record, progress


def assert_same_outcome(record, reference):
    assert record.status == "ok"
    for field in COMPARED:
        assert getattr(record, field) == getattr(reference, field), field


def stop_at(step):
    """on_progress and should_stop hooks that ask to stop after global step `step`, and what they saw."""
    seen = []
    return seen, {"on_progress": lambda done, total: seen.append(done), "should_stop": lambda: seen[-1] == step}


def test_progress_is_reported_after_every_step_and_a_stop_after_the_last_keeps_the_record(uninterrupted):
    record, progress = uninterrupted
    assert progress == [(s, 6) for s in range(1, 7)]
    assert record.status == "ok" and [e[0] for e in record.eval_curve] == [2, 3, 5, 6]


def test_stopped_and_resumed_three_times_the_record_equals_an_uninterrupted_run(data, backbone, uninterrupted,
                                                                                   tmp_path):
    """Stops inside phase 1 (before its first validation), at the phase boundary, and inside phase 2
    (the optimizer has momentum, the loss sums are half-way): each writes a checkpoint at that step and
    the next run continues from it."""
    path = tmp_path / "seed.pt"
    for step, trained, position in ((1, [1], (0, 1)), (3, [2, 3], (0, 3)), (4, [4], (1, 1))):
        seen, hooks = stop_at(step)
        with pytest.raises(SeedStopped) as stopped:
            train_finetune(PROTOCOL, SEED, data, backbone, "cpu", checkpoint=path, **hooks)
        assert (stopped.value.step, stopped.value.total, stopped.value.checkpoint) == (step, 6, path)
        assert seen == trained  # each run continues where the last stopped, and stops at once
        state = torch.load(path, weights_only=True)
        assert (state["phase"], state["step"]) == position
    seen = []
    record = train_finetune(PROTOCOL, SEED, data, backbone, "cpu", checkpoint=path,
                            on_progress=lambda done, total: seen.append(done))
    assert seen == [5, 6]  # the resumed run trains only what was left
    assert_same_outcome(record, uninterrupted[0])
    assert path.exists()  # the caller removes it once the record is committed


def test_a_stop_without_a_checkpoint_path_stops_and_saves_nothing(data, backbone, tmp_path):
    seen, hooks = stop_at(1)
    with pytest.raises(SeedStopped) as stopped:
        train_finetune(PROTOCOL, SEED, data, backbone, "cpu", **hooks)
    assert stopped.value.checkpoint is None and seen == [1]


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from fastseed.data.imagenet import index_imagenet
    from fastseed.engine.finetune import ImagenetData, train_finetune
    from fastseed.models.imagenet import build_backbone
    from fastseed.recipe.protocol import Finetune

    root, path = Path(sys.argv[1]), sys.argv[2]
    protocol = Finetune.from_json(sys.argv[3])
    data = ImagenetData(index_imagenet(root, "train"), index_imagenet(root, "val"))
    torch.manual_seed(0)
    backbone = build_backbone("resnet50")
    # a checkpoint after every step; a slow step, so the kill lands mid-run
    train_finetune(protocol, int(sys.argv[4]), data, backbone, "cpu", checkpoint=path, checkpoint_every_s=0,
                   on_progress=lambda done, total: time.sleep(1.0))
    print("finished")
""")


@pytest.mark.slow
def test_killed_with_sigkill_after_a_checkpoint_the_seed_resumes_in_a_new_process(data, backbone, uninterrupted,
                                                                                  tmp_path):
    path = tmp_path / "seed.pt"
    root = os.path.dirname(os.path.dirname(os.path.dirname(data.train.files[0])))
    # this process's thread count: the rest of the seed trains here and must give the same sums
    with Process([sys.executable, "-c", CHILD, root, path, PROTOCOL.to_json(), SEED], tmp_path, name="child",
                 one_thread=False) as child:
        child.wait_until(path.exists, "a checkpoint", timeout=300)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL and "finished" not in child.stdout_text()
    state = torch.load(path, weights_only=True)
    killed_at = 3 * state["phase"] + state["step"]
    assert 1 <= killed_at < 6
    record = train_finetune(PROTOCOL, SEED, data, backbone, "cpu", checkpoint=path)
    assert_same_outcome(record, uninterrupted[0])


@pytest.fixture(scope="module")
def stopped_checkpoint(data, backbone, tmp_path_factory):
    """A checkpoint of seed SEED written at step 1."""
    path = tmp_path_factory.mktemp("stopped") / "seed.pt"
    with pytest.raises(SeedStopped):
        train_finetune(PROTOCOL, SEED, data, backbone, "cpu", checkpoint=path, **stop_at(1)[1])
    return path


@pytest.mark.parametrize("other", ["seed", "protocol_hash", "weights", "val"])
def test_a_checkpoint_of_another_run_is_refused_in_one_line(other, stopped_checkpoint, data, backbone):
    protocol, seed, run_data = PROTOCOL, SEED, data
    if other == "seed":
        seed = SEED + 1
    elif other == "protocol_hash":
        protocol = dataclasses.replace(PROTOCOL, phases=(dataclasses.replace(PROTOCOL.phases[0], lr=0.5),
                                                         PROTOCOL.phases[1]))
    elif other == "weights":
        protocol = dataclasses.replace(PROTOCOL, weights="0f" * 32)
    else:  # one validation image fewer
        val = data.val
        run_data = ImagenetData(data.train, dataclasses.replace(val, files=val.files[:-1], labels=val.labels[:-1],
                                                                sizes=val.sizes[:-1]))
    before = stopped_checkpoint.read_bytes()
    with pytest.raises(FastseedError) as refused:
        train_finetune(protocol, seed, run_data, backbone, "cpu", checkpoint=stopped_checkpoint)
    message = str(refused.value)
    assert "\n" not in message and f"{other} " in message and str(stopped_checkpoint) in message
    assert stopped_checkpoint.read_bytes() == before  # refused, never deleted


def test_a_failed_checkpoint_write_is_a_warning_and_training_goes_on(data, backbone, tmp_path, monkeypatch,
                                                                     caplog):
    protocol = dataclasses.replace(PROTOCOL, phases=PROTOCOL.phases[:1])
    path, calls, real = tmp_path / "seed.pt", [], os.replace

    def replace(src, dst):  # the second save fails, as on a full disk
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(src, dst)
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with caplog.at_level(logging.WARNING):
        record = train_finetune(protocol, SEED, data, backbone, "cpu", checkpoint=path, checkpoint_every_s=0)
    assert record.status == "ok" and [e[0] for e in record.eval_curve] == [2, 3] and len(calls) == 3
    assert "not written" in caplog.text and "No space left" in caplog.text
    assert torch.load(path, weights_only=True)["step"] == 3 and os.listdir(tmp_path) == ["seed.pt"]
