"""A user's training function as a recipe (`--train package.module:function`): its knobs are its keyword
arguments, typed and checked by the knob machinery every recipe uses; its protocol covers its file's
sha256, its name and every knob, and is rebuilt from a store's JSON without importing the module; its
seed hands out fastseed's streams by name; its result becomes a record (a NaN metric: diverged), and
an exception in it is the user's own traceback. Built-in recipes likewise refuse a `--set` of a knob
nothing reads. All in this process, on toy functions: the studies themselves are in test_train_scan.py."""

import dataclasses
import json
import math
import sys
import uuid

import numpy as np
import pytest
import torch

from fastseed import FastseedError, UserCodeError, scan
from fastseed.engine.function import parse_result, train_function
from fastseed.jobs import Options, make_job
from fastseed.recipe.function import function_protocol
from fastseed.recipe.overrides import resolve, resolve_variant
from fastseed.recipe.protocol import protocol_from_json
from fastseed.seeds import Seed, Streams
from fastseed.store.record import Metric

TOY = '''
from typing import Literal

import numpy as np


def train(seed, device, lr: float = 0.1, epochs: int = 3, widths: tuple[int, ...] = (8, 4), limit: int | None = None,
          mode: Literal["fast", "slow"] = "fast", label="x", scale=2, bias: float = 1, *args, **kwargs):
    rng = seed.numpy("noise")
    labels = np.arange(30) % 3
    predictions = np.where(rng.random(30) < 0.2, (labels + 1) % 3, labels)
    return {"metric": float(100 * (predictions == labels).mean()), "name": "accuracy", "unit": "%",
            "bounds": (0, 100), "predictions": predictions, "labels": labels, "extra": {"lr": lr}}


def broken(seed, device, at: int = 2):
    values = [1.0, 2.0]
    return values[seed.value + at]
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A module of the user's in a folder of their own (the current directory, as for `python -m`):
    its name, its file."""
    name = f"toy_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(TOY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, path
    sys.modules.pop(name, None)


def test_the_knobs_are_the_keyword_arguments_typed_from_annotation_or_default(toy):
    name, _ = toy
    p = function_protocol(f"{name}:train")
    assert p.knobs == {"lr": 0.1, "epochs": 3, "widths": (8, 4), "limit": None, "mode": "fast", "label": "x",
                       "scale": 2, "bias": 1.0}  # *args, **kwargs are no knobs; an int default of a float: 1.0
    assert p.signature == ("lr: float", "epochs: int", "widths: tuple[int, ...]", "limit: int | None",
                           "mode: Literal['fast', 'slow']", "label: str", "scale: int", "bias: float")
    assert p.name == f"{name}:train" and p.train == f"{name}:train" and len(p.train_digest) == 64
    assert p.default_store.name == f"{name}_train@{p.train_digest[:8]}.sqlite"
    assert json.loads(p.to_json())["lr"] == 0.1 and p.hash == function_protocol(f"{name}:train").hash


@pytest.mark.parametrize("signature, phrase", [
    ("seed, device, lr", "argument lr has no default"),
    ("seed, device, sizes=[1, 2]", "argument sizes: list is not a knob type (use a tuple"),
    ("seed, device, sizes: list[int] = (1,)", "use a tuple"),
    ("seed, device, table: dict = None", "dict is not a knob type"),
    ("seed, device, limit=None", "limit = None: annotate its type"),
    ("seed, device, name: str = 'mine'", "argument name has the name of one of fastseed's own knobs"),
    ("seed", "must take (seed, device, **knobs)"),
    ("seed, device, mode: 'Literal[1, \"a\"]' = 1", "Literal[...] of strings or of ints only"),
    ("seed, device, lr: float = 'fast'", "the default of lr must be a number"),
])
def test_a_signature_fastseed_cannot_read_is_refused_in_one_line(tmp_path, monkeypatch, signature, phrase):
    name = f"bad_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(f"from typing import Literal\n\n\ndef train({signature}):\n    return 1.0\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FastseedError) as e:
        function_protocol(f"{name}:train")
    assert phrase in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith(f"--train {name}:train")


def test_set_changes_the_hash_and_the_store_and_a_set_of_the_default_changes_nothing(toy):
    name, _ = toy
    base = function_protocol(f"{name}:train")
    same = resolve(None, ["lr=0.1", "mode=fast"], train=f"{name}:train").protocol
    assert same == base and same.hash == base.hash and same.name == base.name
    changed = resolve(None, ["lr=0.3", "widths=16,8", "limit=5"], train=f"{name}:train").protocol
    assert changed.knobs["lr"] == 0.3 and changed.knobs["widths"] == (16, 8) and changed.knobs["limit"] == 5
    assert changed.hash != base.hash and changed.name == f"{name}:train+limit=5,lr=0.3,widths=(16,8)"
    assert changed.default_store != base.default_store
    fixed = resolve_variant(None, train=f"{name}:train", fix=("noise",), fix_seed=4).protocol
    assert fixed.fixed == ("noise",) and fixed.name == f"{name}:train[fix_seed=4,fixed=noise]"


@pytest.mark.parametrize("argv, phrase", [
    (["--set", "epoch=2"], "unknown knob 'epoch' of {name}:train (did you mean epochs"),
    (["--set", "epochs=2.5"], "epochs must be an integer, got '2.5'"),
    (["--set", "mode=medium"], "mode must be one of fast, slow, got medium"),
    (["--set", "train_digest=abc"], "train_digest is filled in by fastseed"),
    (["--set", "model=resnet9"], "a training function builds its own model"),
    (["--augment", "image"], "--augment: not a knob of a training function"),
    (["--fix", "Init"], "--fix Init: a stream name is lowercase"),
    (["--preset", "smoke"], "--train and --preset: give one"),
    (["--seeds", "3", "--dtype", "float64", "--device", "cpu"], "--dtype: not for {name}:train"),
    (["--seeds", "3", "--gpus", "all"], "--gpus all: no CUDA GPU is visible to torch"),  # this machine has none
])
def test_a_bad_knob_or_flag_is_one_line_and_exit_2(toy, capsys, argv, phrase):
    name, _ = toy
    code = scan.main(["--train", f"{name}:train", *argv, "--out", "never.sqlite"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and phrase.format(name=name) in err, err
    assert not (toy[1].parent / "never.sqlite").exists()


def test_a_protocol_file_names_the_function_and_show_protocol_lists_its_knobs(toy, capsys):
    name, path = toy
    (path.parent / "mine.toml").write_text(f'train = "{name}:train"\nname = "toy-study"\n[set]\nlr = 0.5\n'
                                           f'widths = [2, 2]\n')
    assert scan.main(["--protocol", "mine.toml", "--set", "epochs=7", "--show-protocol"]) == 0
    out = capsys.readouterr().out
    assert "protocol toy-study+epochs=7" in out and f"based on the training function {name}:train" in out
    lines = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert "file mine.toml (default: 0.1)" in lines["lr"] and "[float]" in lines["lr"]
    assert "--set (default: 3)" in lines["epochs"] and "2,2" in lines["widths"] and "default" in lines["mode"]
    assert lines["train_digest"].split()[1] == function_protocol(f"{name}:train").train_digest


def test_the_protocol_is_rebuilt_from_its_json_without_importing_the_module(toy, monkeypatch):
    """A report (or merge) reads a store of a training function where its module cannot be imported."""
    name, _ = toy
    p = resolve(None, ["mode=slow", "limit=none"], train=f"{name}:train").protocol
    text = p.to_json()
    monkeypatch.setattr("fastseed.usercode.load", lambda *a: pytest.fail("the module was imported"))
    monkeypatch.setattr(sys, "path", [s for s in sys.path if s not in (str(toy[1].parent), "")])
    q = protocol_from_json(text)
    assert q == p and q.hash == p.hash and q.knobs == p.knobs and q.to_json() == text
    assert q.check_knob("mode", "medium") == "mode must be one of fast, slow, got medium"  # its types, from the JSON


def test_an_edited_file_is_a_new_protocol_and_the_old_one_is_refused_in_one_line(toy):
    name, path = toy
    before = function_protocol(f"{name}:train")
    path.write_text(TOY + "\n# an edit\n")
    after = function_protocol(f"{name}:train")
    assert after.hash != before.hash and after.train_digest != before.train_digest
    with pytest.raises(FastseedError, match=f"{path.name} changed since this protocol was made"):
        make_job(before, Options(device="cpu"))


def test_streams_draw_what_the_engine_draws_and_new_names_are_new_streams():
    """seeds.py is frozen: a built-in name draws exactly what Seed draws; a user's name is an addition."""
    s, ref = Streams(3407), Seed(3407)
    for stream, counter in (("init", ()), ("order", (3,)), ("augment", (21,))):
        assert s.key(stream, *counter) == ref.key(stream, *counter)
        assert torch.equal(torch.rand(5, generator=s.torch(stream, *counter)),
                           torch.rand(5, generator=ref.generator(stream, *counter)))
        assert np.array_equal(s.numpy(stream, *counter).random(3), ref.numpy(stream, *counter).random(3))
    assert s.key("forest") not in {ref.key(n) for n in ("init", "order", "augment", "head", "dropout")}
    assert s.integer("forest") == Streams(3407).integer("forest") != Streams(3408).integer("forest")
    assert all(0 <= Streams(v).integer("forest") < 2**31 for v in range(200))
    assert s.used == {"init", "order", "augment", "forest"}
    fixed = Streams(5, fixed={"forest"}, fix_seed=9)
    assert fixed.integer("forest") == Streams(9).integer("forest") and fixed.key("noise") == Streams(5).key("noise")
    with pytest.raises(ValueError, match="stream name"):
        s.torch("Bad Name")
    torch.manual_seed(1)
    with Streams(7).torch_default("init"):
        inside = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(3))  # the global generator is as it was
    with Seed(7).torch_default("init"):
        assert torch.equal(inside, torch.rand(3))


def test_a_result_becomes_the_fields_of_a_record():
    labels = np.array([0, 1, 2, 1])
    logits = np.eye(3)[[0, 2, 2, 1]] * 3.0
    fields = parse_result({"metric": 75.0, "name": "accuracy", "unit": "%", "bounds": (0, 100), "loss": 0.4,
                           "labels": labels, "logits": torch.tensor(logits), "eval_curve": [(0, 50.0, 1.0), (1, 75.0)],
                           "train_curve": [(0, 1.2, 40.0), (1, 0.7)], "curves": {"lr": [(0, 0.1), (1, 0.05)]},
                           "extra": {"f1": np.float32(0.5)}}, "toy, seed 0", keep_logits=True)
    assert fields["status"] == "ok" and fields["test_acc"] == 75.0 and fields["test_loss"] == 0.4
    assert np.frombuffer(fields["predictions"], np.uint8).tolist() == [0, 2, 2, 1]  # the logits' argmax
    assert np.frombuffer(fields["labels"], np.uint16).tolist() == [0, 1, 2, 1] and fields["logits"] is not None
    assert fields["headline_epoch"] == 1 and fields["eval_curve"][1][:2] == [1, 75.0]
    assert math.isnan(fields["eval_curve"][1][2]) and math.isnan(fields["train_curve"][1][2])
    metrics = fields["metrics"]
    assert Metric.of(metrics) == Metric("accuracy", "%", True, (0.0, 100.0), 1.0)
    assert metrics["extra"] == {"f1": 0.5} and metrics["curves"] == {"lr": [[0, 0.1], [1, 0.05]]}
    assert metrics["examples"] == "predictions"
    bare = parse_result(0.25, "toy, seed 0", keep_logits=False)
    assert bare["test_acc"] == 0.25 and bare["predictions"] == b"" and Metric.of(bare["metrics"]).name == "metric"
    assert parse_result({"metric": float("nan"), "name": "loss", "higher_is_better": False}, "w", False)["status"] \
        == "diverged"
    right = parse_result({"metric": 1.0, "correct": np.array([True, False])}, "w", False)
    assert right["predictions"] == b"\x01\x00" and right["metrics"]["examples"] == "correct"


@pytest.mark.parametrize("result, phrase", [
    ({"metric": 1.0, "acc": 2}, "unknown key 'acc'"),
    ({"metrc": 1.0}, "(did you mean metric?)"),
    ({"name": "accuracy"}, "the result has no metric"),
    ("high", "metric must be a number, got str 'high'"),
    ({"metric": 1.0, "predictions": [0, 1]}, "predictions and logits need the labels"),
    ({"metric": 1.0, "predictions": [0, 1], "labels": [0, 1, 1]}, "predictions hold 2 test examples, the labels 3"),
    ({"metric": 1.0, "predictions": [0.5, 1.0], "labels": [0, 1]}, "predictions must be a non-empty 1-D array"),
    ({"metric": 1.0, "bounds": (1, 0)}, "bounds must be (low, high)"),
    ({"metric": 101.0, "bounds": (0, 100)}, "metric 101 is outside its bounds [0, 100]"),
    ({"metric": 1.0, "correct": [1, 0]}, "correct must be a 1-D array of booleans"),
    ({"metric": 1.0, "correct": [True], "labels": [0]}, "predictions with labels, or correct, not both"),
    ({"metric": 1.0, "eval_curve": [(0,)]}, "eval_curve must be a list of (epoch, value, value) rows"),
])
def test_a_result_fastseed_cannot_read_is_one_line_naming_the_key(result, phrase):
    with pytest.raises(FastseedError) as e:
        parse_result(result, "toy:train, seed 3", keep_logits=False)
    assert phrase in str(e.value) and str(e.value).startswith("toy:train, seed 3: ") and "\n" not in str(e.value)


def test_an_exception_in_the_function_is_its_own_traceback(toy):
    name, path = toy
    p = function_protocol(f"{name}:broken")
    job = make_job(p, Options(device="cpu"))
    records = []
    with pytest.raises(UserCodeError) as e:
        job.train([0, 1], records.append, stop_flag=False)  # seed 0 reads values[2]
    assert records == [] and str(e.value) == f"{name}:broken raised IndexError for seed 0: list index out of range"
    text = e.value.traceback_text
    assert text.startswith("Traceback") and f'File "{path}", line ' in text and "return values[seed.value + at]" in text
    assert "fastseed" not in text  # the user's frames, not fastseed's


def test_a_fixed_stream_the_function_never_draws_is_refused(toy):
    name, _ = toy
    p = resolve_variant(None, train=f"{name}:train", fix=("init",)).protocol
    job = make_job(p, Options(device="cpu"))
    with pytest.raises(FastseedError, match="--fix init: .* drew no init stream \\(it drew noise\\)"):
        train_function(p, job.function, 0, job.device)
    drawn = train_function(resolve_variant(None, train=f"{name}:train", fix=("noise",)).protocol, job.function, 0,
                           job.device)
    assert drawn.metrics["streams"] == ["noise"] and drawn.provenance["fixed"] == ["noise"]


# ---- built-in recipes: a knob nothing reads is refused -------------------------------------------------
USER_MODEL = "from torch import nn\n\n\ndef make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))\n"


@pytest.mark.parametrize("preset, sets, phrase", [
    ("smoke", ["width=0.5"], "nothing reads width in this protocol: a user model (it takes no knobs)"),
    ("resnet18-exp1", ["celu_alpha=0.2"], "nothing reads celu_alpha in this protocol: model resnet18 does not read it"),
    ("resnet18-exp1", ["width=0.5"], "model resnet18 does not read it"),
    ("picard-short", ["whiten_bias_epochs=2"], "model resnet9 does not read it"),
    ("fast94", ["celu_alpha=0.3"], "model airbench94 does not read it"),
    ("smoke", ["optimizer=adam", "momentum=0.5"], "nothing reads momentum in this protocol: it is read only with "
                                                  "optimizer sgd"),
    ("smoke", ["augment=image", "chunk_size=100"], "chunk_size in this protocol: it is read only with augment chunk"),
    ("smoke", ["schedule=constant", "lr_warmup_epochs=3"], "it is read only with schedule picard"),
    ("smoke", ["augment=none", "cutout=4"], "augment none draws no crop, flip or cutout"),
    ("smoke", ["lookahead_decay=0.9"], "it is read only with lookahead"),
    ("smoke", ["fix_seed=3"], "it is read only with fixed streams"),
])
def test_a_set_of_a_knob_nothing_reads_is_refused_in_one_line(tmp_path, monkeypatch, preset, sets, phrase):
    model = None
    if preset == "smoke" and sets == ["width=0.5"]:
        name = f"net_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(USER_MODEL)
        monkeypatch.chdir(tmp_path)
        model = f"{name}:make"
    with pytest.raises(FastseedError) as e:
        resolve(preset, sets, model=model)
    assert phrase in str(e.value) and "another store for the same training" in str(e.value)


def test_a_knob_that_is_read_is_still_set_and_the_presets_keep_their_hashes():
    assert resolve("picard-short", ["celu_alpha=0.2"]).protocol.celu_alpha == 0.2
    assert resolve("fast94", ["whiten_bias_epochs=2"]).protocol.whiten_bias_epochs == 2
    p = resolve("smoke", ["optimizer=adam", "lr=0.001"]).protocol  # momentum is the preset's, not a change
    assert p.optimizer == "adam" and p.momentum == 0.9
    assert dataclasses.replace(p, name="x").unread()["momentum"] == "it is read only with optimizer sgd"
