"""Your own CIFAR model (`--model package.module:factory`): imported from the current directory, its
source digest in the protocol, refused in one line when it is not a 10-class model, trained by every
strategy that can hold it, and refused by `fused` (naming the layer) when it has a layer fused cannot pack."""

import sys
import textwrap
import uuid

import pytest
import torch

from fastseed import FastseedError
from fastseed.data.cifar import to_tensors
from fastseed.data.synthetic import make_cifar_like
from fastseed.engine import train_pack
from fastseed.engine.pack import choose_strategy, draws_in_training, fusion_problem
from fastseed.models import create_model
from fastseed.recipe.overrides import resolve_protocol
from fastseed.recipe.protocol import CifarProtocol

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    """conv-BN-ReLU twice, a grouped conv, GroupNorm, pooling, a two-layer head with a bias."""

    def __init__(self, extra=None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False), nn.GroupNorm(2, 8),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.extra = extra if extra is not None else nn.Identity()
        self.head = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.extra(self.body(self.stem(x))))


def make():
    return Net()


def make_layernorm():
    return Net(extra=nn.LayerNorm(32))


class Lookup(nn.Module):  # an embedding of the first feature's bucket, added to the features
    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(4, 32)

    def forward(self, x):
        return x + self.table(x[:, 0].clamp(0, 3).long())


def make_embedding():
    return Net(extra=Lookup())


class Scale(nn.Module):  # a layer with its own learnable parameter
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.gain * x


def make_scale():
    return Net(extra=Scale())


class ChannelSoftmax(nn.Module):  # parameter-free, but mixes every channel, hence every seed once fused
    def forward(self, x):
        return x.softmax(-1) * 32


def make_mixer():
    return Net(extra=ChannelSoftmax())


def make_dropout():
    return Net(extra=nn.Dropout(0.5))


def seven_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7))


def not_a_module():
    return 3


def broken():
    raise ValueError("the factory is broken")


NOT_CALLABLE = 1
'''


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """A fresh module of user nets in a temp dir, the current directory: its import name."""
    name = f"user_nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader adds the current directory; undo it
    yield name
    sys.modules.pop(name, None)


TINY = ["train_size=200", "test_size=100", "batch_size=100", "chunk_size=100", "epochs=2", "lr_warmup_epochs=0",
        "lr_decay_end=2", "eval_batch_size=100"]


@pytest.fixture(scope="module")
def data():
    return to_tensors(make_cifar_like(200, 100, seed=3), "cpu")


def test_user_model_is_imported_from_the_current_directory_and_its_digest_is_in_the_protocol(nets, tmp_path):
    p = resolve_protocol("smoke", TINY, model=f"{nets}:make")
    assert p.model == f"{nets}:make" and len(p.model_digest) == 64
    assert p.name.startswith("smoke+") and f"model={nets}:make" in p.name
    again = CifarProtocol.from_json(p.to_json())
    assert again == p and again.hash == p.hash
    assert type(create_model(p)).__name__ == "Net"
    # editing the file makes another protocol: the recorded digest no longer matches, and says so
    (tmp_path / f"{nets}.py").write_text(textwrap.dedent(NETS) + "\n# edited\n")
    with pytest.raises(FastseedError, match="changed since this protocol was made"):
        create_model(p)


@pytest.mark.parametrize("factory,message", [
    ("seven_classes", "must return 10 logits per image"),
    ("not_a_module", "returned a int, not a torch nn.Module"),
    ("broken", "ValueError: the factory is broken"),
    ("NOT_CALLABLE", "is not callable"),
    ("absent", "has no absent"),
])
def test_a_factory_that_is_not_a_10_class_model_is_refused_in_one_line(nets, factory, message):
    with pytest.raises(FastseedError, match=message) as e:
        resolve_protocol("smoke", model=f"{nets}:{factory}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec,message", [("no_such_module_here:make", "no module no_such_module_here"),
                                          ("resnt9", "model must be one of .*resnet9.* or package.module:factory"),
                                          ("not a module:make", "expected package.module:factory"),
                                          ("mod:", "expected package.module:factory")])
def test_a_model_that_cannot_be_found_is_refused_in_one_line(nets, spec, message):
    with pytest.raises(FastseedError, match=message) as e:
        resolve_protocol("smoke", model=spec)
    assert "\n" not in str(e.value)


def records_agree(a, b):
    assert a.predictions == b.predictions and a.status == b.status == "ok"
    assert sum(a.train_curve, []) == pytest.approx(sum(b.train_curve, []), rel=1e-9)
    assert sum(a.eval_curve, []) == pytest.approx(sum(b.eval_curve, []), rel=1e-9)


def test_user_model_trains_with_every_strategy_and_its_seeds_do_not_depend_on_the_pack(nets, data):
    p = resolve_protocol("smoke", TINY, model=f"{nets}:make")
    assert fusion_problem(create_model(p)) is None and choose_strategy(p, None, print).name == "fused"
    alone = [train_pack(p, [s], data, "cpu", dtype="float64")[0] for s in (4, 9)]
    for strategy in ("fused", "streams"):
        packed = train_pack(p, [9, 4], data, "cpu", dtype="float64", strategy=strategy)
        records_agree(packed[1], alone[0])
        records_agree(packed[0], alone[1])
    assert alone[0].train_curve != alone[1].train_curve
    assert alone[0].train_curve[-1][1] < alone[0].train_curve[0][1]  # it learns


@pytest.mark.parametrize("factory,layer", [("make_layernorm", "extra (LayerNorm)"),
                                           ("make_embedding", "extra.table (Embedding)"),
                                           ("make_scale", "extra (Scale): it has parameters of its own (gain)")])
def test_fused_refuses_a_layer_it_cannot_pack_naming_it(nets, data, factory, layer):
    p = resolve_protocol("smoke", TINY, model=f"{nets}:{factory}")
    with pytest.raises(FastseedError, match=r"cannot pack layer " + layer.replace("(", r"\(").replace(")", r"\)")) as e:
        train_pack(p, [1, 2], data, "cpu", strategy="fused")
    assert "--strategy streams" in str(e.value) and "\n" not in str(e.value)
    model = create_model(p)
    said = []
    assert "cannot pack layer" in fusion_problem(model) and choose_strategy(p, None, said.append).name == "streams"
    assert said == [f"{p.model} trains with strategy streams: {fusion_problem(model)}"]
    records = train_pack(p, [1, 2], data, "cpu", strategy="streams")  # the others still train it
    assert all(r.status == "ok" for r in records)


def test_fuse_refuses_a_layer_with_a_parameter_of_its_own(nets):
    """Before the refusal, fuse() kept seed 0's copy of such a layer and trained it for every seed."""
    p = resolve_protocol("smoke", TINY, model=f"{nets}:make_scale")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        models = [create_model(p) for _ in range(2)]
    with torch.no_grad():
        models[1].extra.gain.fill_(3.0)
    with pytest.raises(FastseedError, match="extra"):
        from fastseed.engine.pack import fuse
        fuse(models)


def test_code_that_mixes_channels_is_caught_by_the_numeric_check(nets):
    p = resolve_protocol("smoke", TINY, model=f"{nets}:make_mixer")
    problem = fusion_problem(create_model(p))
    assert problem is not None and "does not keep the seeds" in problem and "--strategy streams" in problem


def test_a_model_with_dropout_trains_each_seed_alone_from_its_own_stream(nets, data):
    """Dropout draws from torch's global generator while training: a seed trained alone draws from its
    own `dropout` stream (the same record again, whatever the global state, and in a one-after-another
    pack), and a pack that would share one generator between its seeds is refused in one line."""
    p = resolve_protocol("smoke", TINY, model=f"{nets}:make_dropout")
    assert draws_in_training(create_model(p))
    assert not draws_in_training(create_model(resolve_protocol("smoke", TINY, model=f"{nets}:make")))
    first = train_pack(p, [4], data, "cpu", dtype="float64", strategy="sequential")[0]
    torch.manual_seed(12345)  # another global state before the same seed
    again = train_pack(p, [4], data, "cpu", dtype="float64", strategy="sequential")[0]
    records_agree(again, first)
    assert again.test_loss == first.test_loss
    paired = train_pack(p, [9, 4], data, "cpu", dtype="float64", strategy="sequential")
    records_agree(paired[1], first)
    assert paired[0].train_curve != first.train_curve
    said = []
    assert choose_strategy(p, None, said.append).name == "sequential"
    assert len(said) == 1 and "draws random numbers while training" in said[0]
    for asked in ("fused", "streams"):
        with pytest.raises(FastseedError, match=rf"^--strategy {asked}: .* use --strategy sequential$"):
            choose_strategy(p, asked, said.append)
    assert choose_strategy(p, "sequential", said.append).name == "sequential"
