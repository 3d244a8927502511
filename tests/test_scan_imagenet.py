"""`python -m fastseed.scan --preset imagenet-*` end to end on the CPU: the real architectures (random
weights saved as a weight file) on a few synthetic JPEGs at tiny scale, into a store the report reads
and the replay reproduces."""

import numpy as np
import pandas as pd
import pytest
import torch

from fastseed import replay, scan
from fastseed.report import __main__ as report
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.models.imagenet import build_backbone
from fastseed.recipe.presets import PRESETS
from fastseed.stats.runs import load_runs
from fastseed.store import Store

TINY = ["--classes", "3", "--limit-steps", "1", "--limit-batch", "4", "--device", "cpu", "--loader-threads", "2",
        "--no-progress"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet_folder(root, classes=3, train_per_class=3, val_per_class=2, size=(96, 72), corrupt=1)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """One random-init weight file per backbone, laid out as the published checkpoints."""
    folder, out = tmp_path_factory.mktemp("weights"), {}
    with torch.random.fork_rng():
        for i, name in enumerate(("resnet50", "dino_resnet50", "dino_vits16")):
            torch.manual_seed(i)
            state = build_backbone(name).state_dict()
            if name == "resnet50":
                state |= {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
            out[name] = folder / f"{name}.pth"
            torch.save(state, out[name])
    return out


def run_scan(capsys, *argv):
    code = scan.main([str(a) for a in argv])
    return code, *capsys.readouterr()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["imagenet-rn50", "imagenet-dino-rn50", "imagenet-dino-vits16"])
def test_each_preset_scans_end_to_end_and_the_report_reads_it(preset, root, weights, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    code, out, err = run_scan(capsys, "--preset", preset, "--weights", weights[PRESETS[preset].backbone],
                              "--data-dir", root, "--out", store, "--seeds", 2, *TINY)
    assert code == 0, err
    assert "skipped 1 unreadable file(s)" in out and "tensors loaded" in out
    with Store.open(store) as s:
        records, labels = s.records(), s.test_labels
    assert [r.seed for r in records] == [0, 1] and all(r.status == "ok" for r in records)
    assert [e[0] for e in records[0].eval_curve] == [1, 2] and records[0].headline_epoch == 2
    assert np.array_equal(np.sort(labels), [0, 0, 1, 1, 2, 2])
    assert records[0].provenance["val_images"] == 6
    # rerun: both seeds are done, nothing is trained again
    code, out, _ = run_scan(capsys, "--preset", preset, "--weights", weights[PRESETS[preset].backbone],
                            "--data-dir", root, "--out", store, "--seeds", 2, *TINY)
    assert code == 0 and "0 of 2 seeds to train" in out
    assert report.main([str(store), "--out", str(tmp_path / "r")]) == 0
    summary = pd.read_csv(tmp_path / "r" / "summary.csv").iloc[0]
    assert summary["n"] == 2
    with Store.open(store) as s:
        assert load_runs(s, "x").unit == "step"  # the figures' curves are drawn against training steps
    assert summary["mean"] == pytest.approx(100 * np.mean([r.test_acc for r in records]))


@pytest.mark.slow
def test_an_imagenet_seed_replays_bit_identically(root, weights, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    assert run_scan(capsys, "--preset", "imagenet-rn50", "--weights", weights["resnet50"], "--data-dir", root,
                    "--out", store, "--seeds", 1, *TINY)[0] == 0
    argv = [str(store), "--seed", "0", "--data-dir", str(root), "--loader-threads", "2"]
    assert replay.main(argv + ["--weights", str(weights["resnet50"])]) == 0
    assert "identical" in capsys.readouterr().out
    assert replay.main(argv + ["--weights", str(weights["dino_resnet50"])]) == 2  # not the scan's file
    assert "is not the file the scan used" in capsys.readouterr().err


def test_other_weights_are_another_protocol(root, weights, tmp_path, capsys):
    """The weight file's digest is part of the protocol: a store of one checkpoint refuses another."""
    store = tmp_path / "s.sqlite"
    assert run_scan(capsys, "--preset", "imagenet-rn50", "--weights", weights["resnet50"], "--data-dir", root,
                    "--out", store, "--seeds", 1, *TINY)[0] == 0
    torch.save(torch.load(weights["resnet50"]) | {"fc.bias": torch.ones(1000)}, tmp_path / "other.pth")
    code, _, err = run_scan(capsys, "--preset", "imagenet-rn50", "--weights", tmp_path / "other.pth",
                            "--data-dir", root, "--out", store, "--seeds", 1, *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds protocol" in err


def _crafted(tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": Payload()}, protocol=2))
    return path


@pytest.mark.parametrize("case", ["no-weights", "weights-for-cifar", "missing-file", "crafted-pickle",
                                  "wrong-architecture", "pack", "no-data", "too-many-classes"])
def test_bad_input_is_one_line_and_exit_2(case, root, weights, tmp_path, capsys):
    base = ["--preset", "imagenet-rn50", "--data-dir", root, "--out", tmp_path / "s.sqlite", "--seeds", 1, *TINY]
    argv, phrase = {
        "no-weights": (base, "needs --weights PATH"),
        "weights-for-cifar": (["--preset", "smoke", "--weights", weights["resnet50"], "--out", tmp_path / "s.sqlite"],
                              "only for the imagenet-* presets"),
        "missing-file": (base + ["--weights", tmp_path / "absent.pth"], "no such file"),
        "crafted-pickle": (base + ["--weights", _crafted(tmp_path)], "refused by safe loading"),
        "wrong-architecture": (base + ["--weights", weights["dino_vits16"]], "does not fit backbone resnet50"),
        "pack": (base + ["--weights", weights["resnet50"], "--pack", "4"], "one at a time"),
        "no-data": (["--preset", "imagenet-rn50", "--weights", weights["resnet50"], "--data-dir", tmp_path / "none",
                     "--out", tmp_path / "s.sqlite", *TINY[2:]], str(tmp_path / "none")),
        "too-many-classes": (base[:-len(TINY)] + TINY[2:] + ["--weights", weights["resnet50"]], "has 3"),
    }[case]
    code, _, err = run_scan(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and phrase in err, err
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "s.sqlite").exists()  # refused before any store is made
