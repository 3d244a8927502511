"""The GPU sessions' standalone measurement scripts, run at CPU scale so they cannot rot between GPU
sessions. On a CPU every kernel is deterministic, so the non-determinism script must find none."""

import importlib.util
import json
from pathlib import Path

import pytest

from fastseed.recipe.presets import get_preset


def load(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_nondeterminism_script_finds_none_on_the_cpu(cifar_root, tmp_path, monkeypatch):
    script = load("nondeterminism")
    # smoke on a fifth of its training and test images: the script's code path, a fifth of its time
    monkeypatch.setattr(script, "get_preset", lambda name: get_preset(name).variant(train_size=1000, test_size=2000))
    argv = [str(tmp_path), "--preset", "smoke", "--device", "cpu", "--data-dir", str(cifar_root),
            "--repeats", "2", "--deterministic-repeats", "1", "--other-seeds", "2"]
    assert script.main(argv) == 0
    result = json.loads((tmp_path / "nondeterminism.json").read_text())
    same, other = result["same_seed"]["summary"], result["other_seeds"]["summary"]
    assert same["n"] == 2 and same["std"] == 0.0 and same["distinct_predictions"] == 1
    assert result["same_seed_deterministic"]["runs"][0]["predictions_sha256"] == \
        result["same_seed"]["runs"][0]["predictions_sha256"]
    assert other["distinct_predictions"] == 2 and result["std_ratio"] == 0.0
    assert (tmp_path / "nondeterminism.log").read_text().count("distinct prediction vectors") == 3
