"""ImageNet fine-tuning (PROTOCOLS.md §2) at tiny scale on the CPU: the real ResNet50 on a few synthetic
JPEGs through the CPU DALI pipeline, two phases, records that replay bit-identically."""

import dataclasses

import pytest
import torch

from fastseed.data.imagenet import index_imagenet
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.engine.finetune import ImagenetData, train_finetune
from fastseed.models.imagenet import build_backbone
from fastseed.recipe.presets import PRESETS
from fastseed.recipe.protocol import Phase


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet_folder(root, classes=3, train_per_class=4, val_per_class=2, size=(120, 90), corrupt=1)
    return ImagenetData(index_imagenet(root, "train"), index_imagenet(root, "val"))


@pytest.fixture(scope="module")
def backbone():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_backbone("resnet50")


def tiny(name="imagenet-rn50", steps=2, batch=4):
    """The preset's code path at CPU scale: 3 classes, 64-pixel crops (ResNet50 takes any size)."""
    return PRESETS[name].variant(classes=3, limit_steps=steps, limit_batch=batch, eval_batch_size=4, image_size=64)


def test_phase_one_freezes_the_backbone_but_its_batchnorm_statistics_move(data, backbone):
    protocol = dataclasses.replace(tiny(), phases=PRESETS["imagenet-rn50"].phases[:1])
    models = []
    record = train_finetune(protocol, 0, data, backbone, "cpu", models_out=models)
    (model,) = models
    before, after = backbone.state_dict(), model.backbone.state_dict()
    weights = [k for k, v in before.items() if v.is_floating_point() and "running" not in k]
    stats = [k for k in before if "running_mean" in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)  # frozen
    assert sum(not torch.equal(before[k], after[k]) for k in stats) == len(stats)  # BN in train mode
    assert record.status == "ok" and [e[0] for e in record.eval_curve] == [2]


def test_a_seed_is_replayed_bit_identically_and_another_seed_differs(data, backbone):
    protocol = tiny()
    first, again, other = (train_finetune(protocol, s, data, backbone, "cpu") for s in (5, 5, 6))
    assert [e[0] for e in first.eval_curve] == [2, 4] and first.headline_epoch == 4
    assert [t[0] for t in first.train_curve] == [2, 4]
    for field in ("test_acc", "test_loss", "eval_curve", "train_curve", "predictions"):
        assert getattr(first, field) == getattr(again, field)
    assert first.train_curve != other.train_curve
    assert len(first.predictions) == len(data.val.files) and max(first.predictions) < 3
    assert first.provenance["skipped_images"] == 2  # one broken file per split, left out


def test_phase_two_trains_the_backbone_with_plain_cross_entropy(data, backbone):
    models = []
    train_finetune(tiny(steps=1), 0, data, backbone, "cpu", models_out=models)
    changed = [not torch.equal(v, models[0].backbone.state_dict()[k]) for k, v in backbone.state_dict().items()
               if v.is_floating_point()]
    assert all(changed)


def test_schedule_steps_as_the_protocol_says(data, backbone):
    """DINO phase 1 steps its cosine every step (T_max 2,000); RN50 phase 1 every 1,000 steps."""
    phase = Phase("head", "head", steps=3, batch_size=4, lr=0.01, t_max=4, eta_min=0.001, sched_every=2,
                  eval_every=3)
    protocol = dataclasses.replace(tiny(), phases=(phase,), limit_steps=None)
    lrs = []
    train_finetune(protocol, 0, data, backbone, "cpu", before_update=lambda opt: lrs.append(opt.param_groups[0]["lr"]))
    cosine = lambda t: 0.001 + (0.01 - 0.001) * (1 + torch.cos(torch.tensor(torch.pi * t / 4)).item()) / 2
    assert lrs == pytest.approx([0.01, 0.01, cosine(1)])  # the lr each step trained with


def test_rn50_phase_one_t_max_is_the_epoch_rule():
    head = PRESETS["imagenet-rn50"].phases[0]
    assert head.resolved_t_max(1_281_167) == 10  # 10,009 batches of 128 an epoch // 1,000
    assert head.resolved_t_max(500) == 1  # a tiny data set: never 0


def test_float16_autocast_is_refused_in_one_line(data, backbone):
    """No loss scaling in the fine-tunes: float16 gradients would underflow; bfloat16 needs none."""
    from fastseed import FastseedError
    from fastseed.engine.finetune import amp_dtype
    with pytest.raises(FastseedError, match="float16 autocast needs loss scaling") as refused:
        train_finetune(tiny(), 0, data, backbone, "cpu", dtype="float16")
    assert "\n" not in str(refused.value)
    assert amp_dtype(tiny(), torch.device("cpu")) == torch.float32  # CPU: no autocast
    assert amp_dtype(tiny(), torch.device("cuda")) == torch.bfloat16  # the presets' own on a GPU
    with pytest.raises(FastseedError, match="float16"):
        amp_dtype(tiny().variant(dtype="float16"), torch.device("cuda"))
