"""ImageNet backbones: architectures, safe weight loading with key mapping, seeded heads."""

import os
import pickle

import pytest
import torch

from fastseed import FastseedError
from fastseed.models.imagenet import FEATURES, build_backbone, load_backbone, make_head, map_keys
from fastseed.recipe.presets import PRESETS
from fastseed.seeds import Seed


@pytest.fixture(scope="module")
def nets():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {name: build_backbone(name) for name in FEATURES}


def _checkpoint(name, net):
    """A weight file laid out the way each project publishes it."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    if name == "resnet50":  # torchvision: the whole classifier, 1000-way fc included
        state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
        return state
    if name == "dino_resnet50":  # dino_resnet50_pretrain.pth: the backbone alone
        return state
    # a full DINO training checkpoint: teacher and student, "backbone." prefixes, projection heads
    teacher = {f"backbone.{k}": v for k, v in state.items()}
    teacher["head.mlp.0.weight"] = torch.randn(8, 384)
    student = {f"module.{k}": torch.zeros_like(v) for k, v in teacher.items()}
    return {"teacher": teacher, "student": student, "epoch": 100}


@pytest.mark.parametrize("name", list(FEATURES))
def test_weights_round_trip_through_each_published_layout(nets, name, tmp_path):
    path = tmp_path / f"{name}.pth"
    torch.save(_checkpoint(name, nets[name]), path)
    loaded, report = load_backbone(name, path)
    want = nets[name].state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want) and report.loaded == len(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert report.unexpected == ()
    assert len(report.dropped) == {"resnet50": 2, "dino_resnet50": 0, "dino_vits16": 1}[name]
    assert not any(k.startswith(("fc.", "head.")) for k in got)


@pytest.mark.parametrize("name", ["resnet50", "dino_vits16"])
def test_features_have_the_documented_width(nets, name):
    net = nets[name].eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, FEATURES[name])


def test_checkpoint_of_another_architecture_is_a_clear_error(nets, tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(nets["dino_vits16"].state_dict(), path)
    with pytest.raises(FastseedError, match=r"does not fit backbone resnet50: missing conv1\.weight"):
        load_backbone("resnet50", path)


def test_wrong_shape_is_a_clear_error(nets, tmp_path):
    state = dict(nets["resnet50"].state_dict())
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(FastseedError, match=r"shape of conv1\.weight \(64, 3, 3, 3\) vs \(64, 3, 7, 7\)"):
        load_backbone("resnet50", path)


class Payload:
    """Unpickling this runs a shell command: what a malicious .pth would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, container):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    payload = {"conv1.weight": torch.zeros(1), "x": Payload(marker)}
    if container == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(FastseedError, match="refused by safe loading"):
        load_backbone("resnet50", path)
    assert not marker.exists()


def test_not_a_weight_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(FastseedError, match="not a readable PyTorch weight file|refused by safe loading"):
        load_backbone("resnet50", path)
    with pytest.raises(FastseedError, match="does not exist"):
        load_backbone("resnet50", tmp_path / "absent.pth")


def test_map_keys_strips_wrappers_and_drops_classifiers():
    state = {"module.backbone.conv1.weight": 1, "fc.weight": 2, "backbone.layer1.0.bn1.bias": 3, "head.last": 4}
    mapped, dropped = map_keys(state)
    assert mapped == {"conv1.weight": 1, "layer1.0.bn1.bias": 3}
    assert sorted(dropped) == ["fc.weight", "head.last"]


def test_head_init_follows_the_protocol_and_the_head_stream():
    rule = PRESETS["imagenet-rn50"].head_rule
    heads = {s: make_head("resnet50", 1000, Seed(s).torch_default("head"), rule) for s in (1, 1, 2)}
    again = make_head("resnet50", 1000, Seed(1).torch_default("head"), rule)
    assert torch.equal(heads[1].weight, again.weight) and torch.equal(heads[1].bias, again.bias)
    assert not torch.equal(heads[1].weight, heads[2].weight)
    assert abs(heads[1].bias.std().item() - 1.0) < 0.1  # normal(0, 1) bias
    vit = make_head("dino_vits16", 1000, Seed(1).torch_default("head"), PRESETS["imagenet-dino-vits16"].head_rule)
    assert abs(vit.weight.std().item() - 1e-5) < 1e-6 and torch.count_nonzero(vit.bias) == 0


@pytest.mark.parametrize("preset", ["imagenet-rn50", "imagenet-dino-rn50"])
def test_resnet50_heads_are_kaiming_uniform_with_a_zero_as_the_original(preset):
    """PROTOCOLS.md §2: torch.nn.init.kaiming_uniform_(weight) with its default a = 0: U(±√(6/2048)),
    gain √2 · √(3/fan_in) -- not nn.Linear's a = √5, whose bound 1/√2048 is 2.45× smaller."""
    head = make_head("resnet50", 1000, Seed(3).torch_default("head"), PRESETS[preset].head_rule)
    bound = (6 / 2048) ** 0.5
    assert bound == pytest.approx(0.054127, abs=1e-6)
    w = head.weight.abs()
    assert w.max() <= bound and w.max() > 0.999 * bound
    assert w.mean().item() == pytest.approx(bound / 2, rel=0.01)  # uniform on [−b, b]: E|w| = b/2
    legacy = make_head("resnet50", 1000, Seed(3).torch_default("head"), "kaiming-a-sqrt5")
    assert legacy.weight.abs().max() <= 1 / 2048 ** 0.5 < bound / 2.4  # what fastseed had before
