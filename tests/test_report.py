"""python -m fastseed.report end to end: on a real smoke scan, on 10^4 synthetic seeds, on several
stores (comparison, init/order factors), and on bad input (one line, exit code 2)."""

import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image
from scipy import stats

from fastseed.figures import DPI, SIZES
from fastseed.report import main
from fastseed.stats.synthetic import (balanced_labels, make_record, predictions_for, synthetic_store,
                                      write_store)
from fastseed.store import Store

REPO = Path(__file__).resolve().parents[1]
SINGLE_FIGURES = {"accuracy_vs_epoch", "distribution", "curves", "best_of_n", "transfer", "ensembles"}
SINGLE_TABLES = {"stores", "summary", "extremes", "best_of_n", "transfer", "selection", "ensembles"}


def report(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv) -> str:
    code, out, err = report(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("fastseed.report: error: ") and err.count("\n") == 1, err
    return err


def check_report(out: Path, figures: set, tables: set) -> str:
    """Every figure a decodable PNG of its size, embedded in report.html and linked from report.md;
    every table a CSV, in both documents; the HTML needs nothing outside itself."""
    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert {p.stem for p in out.glob("*.png")} == figures
    for name in figures:
        png = out / f"{name}.png"
        pixels = image.imread(png)
        w, h = SIZES[name]
        assert pixels.shape[:2] == (round(h * DPI), round(w * DPI)), name
        assert base64.b64encode(png.read_bytes()).decode() in html, name
        assert f"]({name}.png)" in md
    assert {p.stem for p in out.glob("*.csv")} == tables | {"seeds"}
    for name in tables:
        assert len(pd.read_csv(out / f"{name}.csv")) > 0, name
        assert f"<table id='{name}'>" in html and f"({name}.csv)" in md, name
    assert "http://" not in html and "https://" not in html and html.rstrip().endswith("</html>")
    return md


# ---- a real smoke scan ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_store(real_cifar_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "smoke.sqlite"
    env = {k: v for k, v in os.environ.items() if k != "FASTSEED_DATA"}
    run = subprocess.run([sys.executable, "-m", "fastseed.scan", "--preset", "smoke", "--seeds", "3",
                          "--device", "cpu", "--data-dir", str(real_cifar_root), "--out", str(out),
                          "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return out


def test_report_of_a_real_smoke_scan(smoke_store, tmp_path, capsys):
    code, stdout, _ = report(capsys, smoke_store, "--out", tmp_path / "r")
    assert code == 0 and "report.html" in stdout
    check_report(tmp_path / "r", SINGLE_FIGURES, SINGLE_TABLES)
    with Store.open(smoke_store) as store:
        acc = 100 * np.array([r.test_acc for r in store.records()])
    summary = pd.read_csv(tmp_path / "r" / "summary.csv").iloc[0]
    assert summary["n"] == 3 and summary["protocol"] == "smoke" and str(summary["headline_epoch"]) == "3"
    assert summary["mean"] == pytest.approx(acc.mean()) and summary["std"] == pytest.approx(acc.std(ddof=1))
    # the stored predictions, scored against the stored labels, give back the stored accuracies
    ens = pd.read_csv(tmp_path / "r" / "ensembles.csv").set_index("k")
    assert ens.at[1, "mean"] == pytest.approx(acc.mean(), abs=1e-9)
    seeds = pd.read_csv(tmp_path / "r" / "seeds.csv")
    halves = (seeds["val_acc"] + seeds["test_half_acc"]) / 2
    np.testing.assert_allclose(halves, seeds["acc"], atol=1e-9)  # two equal halves of 10,000


# ---- 10^4 synthetic seeds ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_report(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("big")
    store = synthetic_store(root / "big.sqlite", 10_000, diverged=4)
    assert main([str(store), "--out", str(root / "report")]) == 0
    return store, root / "report"


def test_report_of_ten_thousand_seeds(big_report):
    store, out = big_report
    md = check_report(out, SINGLE_FIGURES, SINGLE_TABLES)
    with Store.open(store) as s:
        acc = 100 * np.array([r.test_acc for r in s.records() if r.status == "ok"])
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert (summary["n"], summary["diverged"]) == (9996, 4)
    for column, value in [("mean", acc.mean()), ("std", acc.std(ddof=1)), ("min", acc.min()),
                          ("max", acc.max()), ("median", np.median(acc)),
                          ("q05", np.quantile(acc, 0.05)), ("q95", np.quantile(acc, 0.95))]:
        assert summary[column] == pytest.approx(value), column
    assert summary["ci_low"] < acc.mean() < summary["ci_high"]
    assert "4 diverged seed(s)" in md and "9996, 9997, 9998, 9999" in md
    extremes = pd.read_csv(out / "extremes.csv")
    assert extremes[extremes.side == "best"]["acc"].iloc[0] == pytest.approx(acc.max())
    assert "trying 10 seeds buys" in md and "10,000 seeds" not in md.split("trying")[1].split(".")[0]
    assert list(pd.read_csv(out / "ensembles.csv")["k"]) == [1, 2, 3, 5, 10]
    assert len(pd.read_csv(out / "seeds.csv")) == 10_000


# ---- several stores ------------------------------------------------------------------------------

def test_two_recipes_are_compared(tmp_path, capsys):
    a = synthetic_store(tmp_path / "a.sqlite", 40, mean=0.905, protocol="recipe-a", seed=1, epochs=4)
    b = synthetic_store(tmp_path / "b.sqlite", 30, mean=0.900, protocol="recipe-b", seed=2, epochs=4)
    err = refused(capsys, a, b, "--out", tmp_path / "r")
    assert "different protocols" in err and "--label" in err
    assert not (tmp_path / "r").exists()
    code, _, _ = report(capsys, a, b, "--label", "A", "B", "--out", tmp_path / "r")
    assert code == 0
    check_report(tmp_path / "r", SINGLE_FIGURES, SINGLE_TABLES | {"compare"})
    c = pd.read_csv(tmp_path / "r" / "compare.csv").iloc[0]
    acc = {}
    for label, path in (("A", a), ("B", b)):
        with Store.open(path) as s:
            acc[label] = 100 * np.array([r.test_acc for r in s.records()])
    assert (c["a"], c["b"]) == ("A", "B")
    assert c["diff"] == pytest.approx(acc["A"].mean() - acc["B"].mean())
    assert c["welch_p"] == pytest.approx(stats.ttest_ind(acc["A"], acc["B"], equal_var=False).pvalue)
    assert c["mwu_p"] == pytest.approx(stats.mannwhitneyu(acc["A"], acc["B"]).pvalue)


def test_init_and_order_experiments_are_recognised_from_provenance(tmp_path, capsys):
    paths = [synthetic_store(tmp_path / f"{name}.sqlite", 30, fixed=fixed, seed=i, epochs=4, n_images=500)
             for i, (name, fixed) in enumerate([("both", ()), ("order-fixed", ("order",)),
                                                 ("init-fixed", ("init",))])]
    code, _, _ = report(capsys, *paths, "--out", tmp_path / "r")  # one protocol: no labels needed
    assert code == 0
    check_report(tmp_path / "r", SINGLE_FIGURES, SINGLE_TABLES | {"compare", "factors"})
    f = pd.read_csv(tmp_path / "r" / "factors.csv").set_index("experiment")
    assert f.at["exp2", "label"] == "order-fixed" and f.at["exp3", "label"] == "init-fixed"
    var = {}
    for path in paths:
        with Store.open(path) as s:
            var[path.stem] = np.var([100 * r.test_acc for r in s.records()], ddof=1)
    assert f.at["exp2", "share"] == pytest.approx(var["order-fixed"] / var["both"])


# ---- small and bad input -------------------------------------------------------------------------

def test_one_seed_gives_the_table_and_a_note(tmp_path, capsys):
    labels = balanced_labels(1000)
    rec = make_record(7, predictions_for(0.9, labels, np.random.default_rng(0)), labels, epochs=4)
    store = write_store(tmp_path / "one.sqlite", [rec], labels)
    code, _, err = report(capsys, store)
    assert code == 0, err
    out = tmp_path / "one-report"  # the default: beside the store
    md = check_report(out, {"accuracy_vs_epoch", "distribution", "curves"}, {"stores", "summary"})
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["n"] == 1 and summary["mean"] == pytest.approx(100 * rec.test_acc)
    assert np.isnan(summary["std"]) and "one finished seed (7)" in md


def test_only_diverged_seeds_give_a_note(tmp_path, capsys):
    labels = balanced_labels(100)
    rng = np.random.default_rng(0)
    recs = [make_record(s, predictions_for(0.9, labels, rng), labels, epochs=4, diverged=True)
            for s in range(3)]
    store = write_store(tmp_path / "dead.sqlite", recs, labels)
    code, _, err = report(capsys, store, "--out", tmp_path / "r")
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "no finished run" in md and "3 diverged seed(s)" in md


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert "no store at" in refused(capsys, tmp_path / "missing.sqlite")
    (tmp_path / "notes.txt").write_text("not a store")
    assert "not a fastseed store" in refused(capsys, tmp_path / "notes.txt")
    empty = write_store(tmp_path / "empty.sqlite", [], balanced_labels(10))
    assert "holds no records" in refused(capsys, empty, "--out", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    one = synthetic_store(tmp_path / "one.sqlite", 3, n_images=100, epochs=2)
    assert "--label names 2 store(s)" in refused(capsys, one, "--label", "a", "b")
    assert "given twice" in refused(capsys, one, one)
    assert "--top" in refused(capsys, one, "--top", "0")
    (tmp_path / "file").write_text("")
    assert "is a file" in refused(capsys, one, "--out", tmp_path / "file")
    assert "unrecognized arguments" in refused(capsys, one, "--bogus")


def test_command_line_entry_point(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fastseed.report", str(tmp_path / "nope.sqlite")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("fastseed.report: error: no store at")
    assert run.stderr.count("\n") == 1 and run.stdout == ""
