"""Issue #13 items 1-3 at the command line: `--set`, `--protocol FILE`, `--model package.module:factory`
and `--show-protocol` reach the scan. A --set protocol is stored under its own hash and its own default
store, and one equal to the preset is the preset's; bad input is one line and exit 2, before any data;
a user's model file trains with every strategy that can hold it (fused chosen only when it fuses) and
replays, and a changed file is refused.

The scans run in this process (`scan.main`) on the real CIFAR-10, read once for the module; the tiny
recipe (500 images, one epoch) keeps each seed well under a second."""

import re
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from fastseed import replay, scan
from fastseed.data import cifar
from fastseed.recipe.overrides import resolve_protocol
from fastseed.recipe.presets import get_preset
from fastseed.recipe.protocol import protocol_from_json
from fastseed.store import Store

SMOKE = get_preset("smoke")
TINY = ["train_size=500", "test_size=500", "batch_size=250", "chunk_size=250", "epochs=1", "lr_warmup_epochs=0",
        "lr_decay_end=1", "eval_batch_size=500"]
SETS = [x for s in TINY for x in ("--set", s)]
SHORT = ["train_size=500", "test_size=500", "epochs=1"]  # one step of 500 images: a short name
SHORT_SETS = [x for s in SHORT for x in ("--set", s)]

NETS = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, extra=None):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                                  nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.extra = extra if extra is not None else nn.Identity()
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.extra(self.body(x)))


def make():
    return Net()


def make_layernorm():
    return Net(extra=nn.LayerNorm(32))
'''


@pytest.fixture(scope="module")
def cifar10(real_cifar_root):
    return cifar.load_cifar10(real_cifar_root)


@pytest.fixture
def here(tmp_path, monkeypatch, cifar10):
    """The current directory is a temp dir holding a module of user nets (its import name is returned);
    CIFAR-10 comes from the module's one read (the job still copies it onto the device)."""
    name = f"user_nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the model loader puts the current directory first
    monkeypatch.setattr(cifar, "load_cifar10", lambda *a, **kw: cifar10)
    yield name
    sys.modules.pop(name, None)


def run(capsys, *argv):
    code = scan.main(["--preset", "smoke", "--device", "cpu", "--no-progress", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def store_of(out: str) -> Path:
    """The store the scan named in its last line (`… N of M seeds in PATH; …`)."""
    return Path(re.search(r" seeds in (\S+); ", out.splitlines()[-1]).group(1))


def stored_protocol(path: Path):
    with Store.open(path) as store:
        protocol = protocol_from_json(store.protocol_json)
        assert protocol.hash == store.protocol_hash and protocol.name == store.protocol
        return protocol, [r.seed for r in store.records()]


def test_a_set_is_its_own_protocol_in_its_own_store_and_one_equal_to_the_preset_is_the_preset(here, capsys):
    code, out, err = run(capsys, *SETS, "--set", "lr=0.3", "--seeds", 2)
    assert code == 0, err
    want = resolve_protocol("smoke", TINY + ["lr=0.3"])
    path = store_of(out)  # its own default store, named for it: no collision with the base's
    assert path.parent == Path("results") and path.name.startswith("smoke+batch_size=250,chunk_size=250,")
    assert path.name.endswith(f"-{want.hash[:12]}.sqlite")  # a name too long for a file: cut, told apart by its hash
    protocol, seeds = stored_protocol(path)
    assert protocol == want and protocol.hash == want.hash and protocol.lr == 0.3 and seeds == [0, 1]

    shown = run(capsys, *SETS, "--set", "lr=0.3", "--show-protocol")
    assert shown[0] == 0 and shown[1].startswith(f"protocol {want.name}  (hash {want.hash[:12]})")
    assert "--set (preset: 0.2)" in next(line for line in shown[1].splitlines() if line.startswith("lr "))

    # the preset's own lr is no change: smoke itself (its name, hash and store); the flag variants keep
    # the names they always had, in a file name without brackets
    assert run(capsys, "--set", "lr=0.2", "--show-protocol")[1].startswith(f"protocol smoke  (hash {SMOKE.hash[:12]})")
    same = scan.parse(["--preset", "smoke", "--set", "lr=0.2"])
    assert scan.out_path(same, scan.resolved(same).protocol) == Path("results/smoke.sqlite")
    code, out, err = run(capsys, *SHORT_SETS, "--augment", "image", "--seeds", 1)
    image = resolve_protocol("smoke", SHORT + ["augment=image"])
    assert code == 0 and image.name == "smoke+epochs=1,test_size=500,train_size=500[augment=image]"
    assert store_of(out) == Path("results/smoke+epochs=1,test_size=500,train_size=500_augment=image_.sqlite")
    assert stored_protocol(store_of(out))[0] == image

    # a protocol file with the same knobs is the same recipe under the file's name; replay replays it
    Path("tiny.toml").write_text('base = "smoke"\nname = "tiny-smoke"\n[set]\n'
                                 + "".join(f"{s.replace('=', ' = ')}\n" for s in TINY + ["lr=0.3"]))
    code, out, err = run(capsys, "--protocol", "tiny.toml", "--seeds", 1, "--out", "file.sqlite")
    protocol = stored_protocol(Path("file.sqlite"))[0]
    assert code == 0 and protocol.name == "tiny-smoke" and {**vars(protocol), "name": ""} == {**vars(want), "name": ""}
    assert replay.main([str(path), "--seed", "1"]) == 0 and "identical" in capsys.readouterr().out


@pytest.mark.parametrize("argv,phrase", [
    (["--set", "lr=fast"], "--set lr=fast: lr must be a number, got 'fast'"),
    (["--set", "lrate=0.3"], "unknown knob 'lrate' of smoke (did you mean lr"),
    (["--set", "lr"], "--set lr: expected KEY=VALUE"),
    (["--protocol", "absent.toml"], "--protocol absent.toml: no such file"),
    (["--model", "no_such_module_here:make"], "no module no_such_module_here"),
    (["--model", "{nets}:make_layernorm", "--strategy", "fused"],
     "--strategy fused: the fused strategy cannot pack layer extra (LayerNorm)"),
    (["--set", "augment=image", "--show-protocol", "--fix", "head"], "--fix head: smoke draws no head stream"),
])
def test_bad_overrides_are_one_line_exit_2_before_any_data(argv, phrase, here, capsys, monkeypatch):
    monkeypatch.setattr(cifar, "load_cifar10", lambda *a, **kw: pytest.fail("the data was loaded"))
    code, _, err = run(capsys, *(a.format(nets=here) for a in argv), *SETS, "--seeds", 1)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("fastseed.scan: error:"), err
    assert phrase in err
    assert not Path("results").exists()


def test_show_protocol_touches_no_data_and_no_store(here, capsys, monkeypatch):
    monkeypatch.setattr(cifar, "load_cifar10", lambda *a, **kw: pytest.fail("the data was loaded"))
    code, out, err = run(capsys, "--model", f"{here}:make", "--set", "cutout=0", "--show-protocol",
                         "--data-dir", "/no/such/folder")
    assert code == 0 and err == ""
    assert f"model               {here}:make" in out and "--model (preset: resnet9)" in out
    assert "cutout              0                         --set (preset: 8)" in out
    assert "model_digest" in out and not Path("results").exists() and not list(Path(".").glob("*.sqlite*"))


def test_a_user_model_trains_with_every_strategy_that_holds_it_and_replays(here, capsys):
    code, out, err = run(capsys, *SETS, "--model", f"{here}:make", "--seeds", 2, "--pack", 2)
    assert code == 0, err
    assert "strategy fused, pack 2" in out  # it fuses: fused is the default
    path = store_of(out)
    protocol, seeds = stored_protocol(path)
    assert protocol.model == f"{here}:make" and len(protocol.model_digest) == 64 and seeds == [0, 1]
    for strategy in ("streams", "sequential"):
        code, out, err = run(capsys, *SETS, "--model", f"{here}:make", "--seeds", 1, "--pack", 1,
                             "--strategy", strategy, "--out", f"{strategy}.sqlite")
        assert code == 0 and f"strategy {strategy}" in out, err
    with Store.open(path) as store:
        assert all(r.status == "ok" and r.pack["strategy"] == "fused" for r in store.records())
    assert replay.main([str(path), "--seed", "1"]) == 0  # its fused pack of two, again
    assert "identical" in capsys.readouterr().out

    # a LayerNorm model does not fuse: without --strategy it trains with streams, and says why
    code, out, err = run(capsys, *SETS, "--model", f"{here}:make_layernorm", "--seeds", 1, "--out", "ln.sqlite")
    assert code == 0 and "strategy streams, pack 1" in out, err
    assert "trains with strategy streams: the fused strategy cannot pack layer extra (LayerNorm)" in out

    # the model file changes: a replay of the store is refused in one line; a scan makes another protocol
    Path(f"{here}.py").write_text(Path(f"{here}.py").read_text() + "\n# edited\n")
    sys.modules.pop(here, None)
    assert replay.main([str(path), "--seed", "0"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note:")]  # a dirty tree
    assert len(err) == 1 and err[0].startswith("fastseed.replay: error:") and "changed since this protocol" in err[0]
    code, out, err = run(capsys, *SETS, "--model", f"{here}:make", "--seeds", 1, "--out", path)
    assert code == 2 and "holds protocol" in err and len(err.splitlines()) == 1
