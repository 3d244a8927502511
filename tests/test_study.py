"""The Python API (fastseed.study), for a notebook: a study of a training function run from Python —
in one process, with two workers, until its interval is narrow, against another study until the
difference is decided (two functions, two knob settings) — its records as a DataFrame, a seed
replayed, stores merged, and the report with its tables as DataFrames and its figures as matplotlib
figures, writing the files the command line writes. Bad input raises before anything runs. (Its Ray
path is in test_train_ray.py.)"""

import sys
import types
import uuid
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from fastseed import FastseedError, scan, study
from fastseed.report import __main__ as report_command
from fastseed.store import Store

REPO = Path(__file__).resolve().parents[1]
FOREST = "examples.digits_sklearn:train"


@pytest.fixture
def forest_store(tmp_path, monkeypatch):
    """Six seeds of the random-forest example (5 trees: a fraction of a second a seed), made in this process."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "forest.sqlite"
    assert scan.main(["--train", FOREST, "--set", "n_estimators=5", "--seeds", "6", "--device", "cpu",
                      "--no-progress", "--keep", "logits", "--out", str(out)]) == 0
    return out


def test_the_report_from_python_has_dataframes_and_figures_and_writes_the_command_lines_files(forest_store, tmp_path):
    s = study.load(forest_store)
    frame = s.frame()
    assert list(frame["seed"]) == list(range(6)) and (frame["metric"] == frame["test_acc"]).all()
    assert {"extra.log_loss", "extra.mean_depth"} <= set(frame.columns) and "predictions" not in frame.columns
    assert s.protocol == "examples.digits_sklearn:train+n_estimators=5" and s.decision is None

    r = s.report(out=tmp_path / "api", boot=200)
    assert isinstance(r.tables["summary"], pd.DataFrame) and r.tables["summary"].at[0, "n"] == 6
    assert r.tables["seeds"]["seed"].tolist() == list(range(6)) and "extra.log_loss" in r.tables["seeds"]
    assert isinstance(r.figures["distribution"], Figure) and "calibration" in r.figures
    assert "accuracy_vs_epoch" not in r.figures  # no curves: left out, and the page says why
    assert "Left out, as the records do not support them" in r.markdown
    assert report_command.main([str(forest_store), "--out", str(tmp_path / "cli"), "--boot", "200"]) == 0
    api, cli = tmp_path / "api", tmp_path / "cli"
    assert sorted(p.name for p in api.iterdir()) == sorted(p.name for p in cli.iterdir())
    for name in ("summary.csv", "seeds.csv", "images.csv", "extra_metrics.csv", "report.md"):
        assert (api / name).read_bytes() == (cli / name).read_bytes(), name
    assert r.path == api and str(api) in repr(r)


def test_a_function_defined_in_a_notebook_or_a_lambda_is_refused_with_what_to_do(monkeypatch, tmp_path):
    notebook = types.ModuleType("__main__")  # a kernel's __main__: no file
    exec("def train(seed, device):\n    return 1.0\n", notebook.__dict__)
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    with pytest.raises(FastseedError, match="train is defined in this notebook .* move it to a .py file"):
        study.spec_of(notebook.train)
    with pytest.raises(FastseedError, match="a function defined at the top of a module"):
        study.spec_of(lambda seed, device: 1.0)
    name = f"nb_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def train(seed, device, lr: float = 0.1):\n    return lr\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    assert study.spec_of(module.train) == f"{name}:train" and study.spec_of("a.b:c") == "a.b:c"


def test_bad_input_raises_in_one_line_before_any_process(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    with pytest.raises(FastseedError, match="unknown knob 'n_estimator' .*did you mean n_estimators"):
        study.run(FOREST, set={"n_estimator": 3}, out=tmp_path / "x.sqlite")
    with pytest.raises(FastseedError, match="give train .* or protocol"):
        study.run()
    with pytest.raises(FastseedError, match="no store at"):
        study.load(tmp_path / "missing.sqlite")
    assert not (tmp_path / "x.sqlite").exists()


@pytest.mark.slow
def test_every_way_of_running_a_study_from_python(monkeypatch, tmp_path, capsys):
    """Two workers until ±1 pp; an A/B of two knob settings, and of two functions, each until decided;
    a replay; a merge; the report of two studies with its comparison."""
    monkeypatch.chdir(REPO)
    small = study.run(FOREST, set={"n_estimators": 3}, seeds=60, workers=2, until_ci=1.0, out=tmp_path / "small.sqlite")
    assert "95 % confidence sequence of the mean is ±" in small.decision
    assert "[cpu#0] seed 0:" not in capsys.readouterr().out  # one line per seed only with verbose=True
    n_small = len(small.frame())
    assert 10 <= n_small < 60

    big = study.run(FOREST, set={"n_estimators": 30}, seeds=60, versus=small, out=tmp_path / "big.sqlite")
    assert f"{FOREST} is better than {FOREST}+n_estimators=3: the whole interval is above 0" in big.decision
    # (30 trees: the function's default)
    mlp = study.run("examples.digits_mlp:train", set={"epochs": 2}, seeds=60, versus=big, margin=0.5,
                    out=tmp_path / "mlp.sqlite")
    assert mlp.decision is not None and " is worse than " in mlp.decision  # 2 epochs of an MLP vs 30 trees

    assert study.replay(big, 4).identical
    merged = study.merge(tmp_path / "all.sqlite", big)
    assert merged.frame().drop(columns="finished_at").equals(big.frame().drop(columns="finished_at"))

    r = study.report(small, merged, labels=["3 trees", "30 trees"], out=tmp_path / "ab", boot=200)
    compare = r.tables["compare"]
    assert compare.at[0, "a"] == "3 trees" and compare.at[0, "diff"] < 0 and compare.at[0, "ci_high"] < 0
    assert isinstance(r.figures["ensembles"], Figure) and (tmp_path / "ab" / "report.html").exists()
    with Store.open(small.path) as store:
        assert store.progress(0, 60)[1] == 0  # no claim left by the workers
    with pytest.raises(FastseedError, match="--gpus all: no CUDA GPU is visible"):  # the command line's line
        study.run(FOREST, gpus="all", seeds=2, out=tmp_path / "gpu.sqlite")
