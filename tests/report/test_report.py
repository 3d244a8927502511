"""python -m fastseed.report end to end: on a real smoke scan, on 10^4 synthetic seeds, on several
stores (comparison, init/order factors), on a store with logits and a malformed row, and on bad input
(one line, exit code 2); and what a reader trips on (rug ticks, loss axis, signs, rounding)."""

import base64
import io
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image
from scipy import stats

from fastseed.report import figures, sections
from fastseed.report.document import Document, signed
from fastseed.report.figures import DPI, SIZES
from fastseed.recipe.presets import get_preset
from fastseed.report.__main__ import main
from fastseed.stats.calibration import reliability
from fastseed.stats.transfer import split_halves
from fastseed.stats.runs import load_runs
from fastseed.stats.synthetic import (balanced_labels, logits_for, make_record, predictions_for,
                                      synthetic_store, write_logits, write_store)
from fastseed.store import Store
from scans import SMALL

REPO = Path(__file__).resolve().parents[2]
SINGLE_FIGURES = {"accuracy_vs_epoch", "distribution", "curves", "best_of_n", "transfer", "ensembles",
                  "images_right"}
SINGLE_TABLES = {"stores", "summary", "extremes", "best_of_n", "best_of_n_bias", "transfer", "selection",
                 "ensembles", "testset", "images_kinds", "seed_dependent"}
FILES = {"seeds", "images"}  # CSVs with no table on the page


def report(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv) -> str:
    code, out, err = report(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("fastseed.report: error: ") and err.count("\n") == 1, err
    return err


def check_report(out: Path, figures: set, tables: set, files: set = FILES) -> str:
    """Every figure a decodable PNG of its size, embedded in report.html and linked from report.md;
    every table a CSV, in both documents; the HTML needs nothing outside itself; no CSV number
    carries float noise (27.310000000000002) and no text says "+-"."""
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
    assert {p.stem for p in out.glob("*.csv")} == tables | files
    for name in tables:
        assert len(pd.read_csv(out / f"{name}.csv")) > 0, name
        assert f"<table id='{name}'>" in html and f"({name}.csv)" in md, name
    for csv in out.glob("*.csv"):
        assert not re.search(r"\.\d*(?:0{7,}|9{7,})\d", csv.read_text()), csv.name
    assert "+-" not in md and "http://" not in html and "https://" not in html
    assert html.rstrip().endswith("</html>")
    return md


def runs_of(path, label: str = "x"):
    with Store.open(path) as store:
        return load_runs(store, label)


def load_figure_labels(path) -> str:
    """The y label of the training-loss panel of the curves figure of the store at `path`."""
    return figures.curves([runs_of(path)]).axes[0].get_ylabel()


# ---- a real smoke scan ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_store(smoke_scan) -> Path:
    """The session's real smoke scan (tests/conftest.py): smoke at small scale, 3 seeds."""
    return smoke_scan.out


@pytest.mark.slow
def test_report_of_a_real_smoke_scan(smoke_store, real_cifar_root, tmp_path, capsys):
    code, stdout, _ = report(capsys, smoke_store, "--out", tmp_path / "r", "--data-dir", real_cifar_root)
    assert code == 0 and "report.html" in stdout
    md = check_report(tmp_path / "r", SINGLE_FIGURES | {"seed_dependent"}, SINGLE_TABLES)
    with Store.open(smoke_store) as store:
        acc = 100 * np.array([r.test_acc for r in store.records()])
        labels = store.test_labels
    summary = pd.read_csv(tmp_path / "r" / "summary.csv").iloc[0]
    assert summary["n"] == 3 and summary["protocol"] == SMALL.name and str(summary["headline_epoch"]) == "3"
    assert summary["mean"] == pytest.approx(acc.mean()) and summary["std"] == pytest.approx(acc.std(ddof=1))
    # the stored predictions, scored against the stored labels, give back the stored accuracies
    ens = pd.read_csv(tmp_path / "r" / "ensembles.csv").set_index("k")
    assert ens.at[1, "mean"] == pytest.approx(acc.mean(), abs=1e-7)
    seeds = pd.read_csv(tmp_path / "r" / "seeds.csv")
    val, test = split_halves(labels)
    halves = (seeds["val_acc"] * len(val) + seeds["test_half_acc"] * len(test)) / len(labels)
    np.testing.assert_allclose(halves, seeds["acc"], atol=1e-7)  # the two halves make the test set (CSV: 10 digits)
    # per image: the share of seeds right averages to the mean accuracy; the variances add up
    images = pd.read_csv(tmp_path / "r" / "images.csv")
    n = SMALL.test_size
    assert len(images) == n and 100 * images["fraction_right"].mean() == pytest.approx(acc.mean())
    t = pd.read_csv(tmp_path / "r" / "testset.csv").iloc[0]
    assert t["observed"] == pytest.approx(acc.var(ddof=1), rel=1e-6)
    assert t["noise"] + t["distribution"] * (n - 1) / n == pytest.approx(t["observed"], rel=1e-6)
    assert "of the ±" in md.split("## Summary")[0]  # the headline comes first
    assert "CE + 2·LSCE(ε = 0.2)" in load_figure_labels(smoke_store)


# ---- 10^4 synthetic seeds ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_report(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("big")
    store = synthetic_store(root / "big.sqlite", 10_000, diverged=4)
    assert main([str(store), "--out", str(root / "report")]) == 0
    return store, root / "report"


@pytest.mark.slow
def test_report_of_ten_thousand_seeds(big_report):
    store, out = big_report
    md = check_report(out, SINGLE_FIGURES, SINGLE_TABLES)
    # the synthetic seeds differ on the distribution by their true accuracy's std, 0.23 pp
    t = pd.read_csv(out / "testset.csv").iloc[0]
    assert t["low"] < 0.23 ** 2 < t["high"] and t["std_low"] < 0.23 < t["std_high"]
    with Store.open(store) as s:
        acc = 100 * np.array([r.test_acc for r in s.records() if r.status == "ok"])
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert (summary["n"], summary["diverged"]) == (9996, 4)
    for column, value in [("mean", acc.mean()), ("std", acc.std(ddof=1)), ("min", acc.min()),
                          ("max", acc.max()), ("median", np.median(acc)),
                          ("q05", np.quantile(acc, 0.05)), ("q95", np.quantile(acc, 0.95))]:
        assert summary[column] == pytest.approx(value), column
    assert summary["ci_low"] < acc.mean() < summary["ci_high"] and summary["ci_method"] == "bootstrap"
    assert "4 diverged seed(s)" in md and "9996, 9997, 9998, 9999" in md
    extremes = pd.read_csv(out / "extremes.csv")
    best = extremes[extremes.side == "best"].iloc[0]
    assert best["acc"] == pytest.approx(acc.max()) and best["tail_of_n"] > 1e3 * best["normal_tail"]
    assert "lies that far out by chance with probability" in md
    head = md.split("## Summary")[0]  # the test-set sentence: the distribution's spread is an unlimited test set's
    assert "on an unlimited test set from the same distribution the seeds would differ by ±" in head
    assert "a fresh test set of the same 10,000 images would show about the same ±" in head
    assert "over seeds, for this test set's images" in head and "lie far below the others" not in md
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
    md = check_report(out, {"accuracy_vs_epoch", "distribution", "curves"}, {"stores", "summary"}, {"seeds"})
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["n"] == 1 and summary["mean"] == pytest.approx(100 * rec.test_acc)
    assert np.isnan(summary["std"]) and "one finished seed (7)" in md


def test_collapsed_runs_are_named_and_a_small_store_gets_a_t_interval(tmp_path):
    labels = balanced_labels(1000)
    rng = np.random.default_rng(3)
    recs = [make_record(s, predictions_for(0.1 if s in (4, 23) else 0.9, labels, rng), labels, epochs=4)
            for s in range(30)]                              # seeds 4 and 23 collapse to chance
    store = write_store(tmp_path / "c.sqlite", recs, labels)
    doc = Document("t")                                      # the summary section alone: the rest is
    sections.summary_section(doc, sections.open_runs([str(store)]), 200)  # tested above
    md = "\n".join(text for text, _ in doc.blocks)
    acc = 100 * np.array([r.test_acc for r in recs])
    rest = np.delete(acc, [4, 23])
    assert "synthetic: 2 run(s) of 30 lie far below the others, collapses by the test the stopping rules use" in md
    assert f"seeds 4 ({acc[4]:.2f} %), 23 ({acc[23]:.2f} %)" in md
    assert f"the other runs' mean is {rest.mean():.2f} %" in md and "1 in 10,000" in md
    summary = pd.read_csv(io.BytesIO(doc.files["summary.csv"])).iloc[0]
    lo, hi = stats.t.interval(0.95, 29, loc=acc.mean(), scale=stats.sem(acc))
    assert summary["ci_method"] == "t" and (summary["ci_low"], summary["ci_high"]) == pytest.approx((lo, hi))
    assert "Student's t up to 50 runs" in md


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


@pytest.mark.slow
def test_command_line_entry_point(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fastseed.report", str(tmp_path / "nope.sqlite")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("fastseed.report: error: no store at")
    assert run.stderr.count("\n") == 1 and run.stdout == ""


# ---- logits, notes, malformed rows -----------------------------------------------------------------

@pytest.fixture(scope="module")
def logits_report(tmp_path_factory) -> tuple[Path, Path]:
    """40 seeds of the ResNet-18 study's exp 3 (its real protocol JSON), images of unequal
    difficulty, logits kept by every finished seed but one, one diverged seed and one malformed row."""
    root = tmp_path_factory.mktemp("logits")
    store = synthetic_store(root / "exp3.sqlite", 40, n_images=1000, epochs=3, diverged=1, difficulty=1.5,
                            protocol="resnet18-exp3", protocol_json=get_preset("resnet18-exp3").to_json())
    runs = runs_of(store)
    rng = np.random.default_rng(0)
    write_logits(store, {int(s): logits_for(runs.predictions[i], rng) for i, s in enumerate(runs.seeds)
                         if runs.ok[i] and s != 5})
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("UPDATE records SET train_curve = 'not json' WHERE seed = 7")
    conn.close()
    empty = root / "no-cifar"
    empty.mkdir()
    assert main([str(store), "--out", str(root / "r"), "--data-dir", str(empty), "--boot", "200"]) == 0
    return store, root / "r"


def test_report_with_logits_shows_calibration_and_soft_votes(logits_report):
    store, out = logits_report
    md = check_report(out, SINGLE_FIGURES | {"calibration"}, SINGLE_TABLES | {"calibration", "soft_ensembles"})
    seeds = pd.read_csv(out / "seeds.csv").set_index("seed")
    assert 7 not in seeds.index and np.isnan(seeds.at[5, "ece"]) and np.isnan(seeds.at[39, "ece"])
    runs = runs_of(store)
    for i in (0, 3):  # the ECE in seeds.csv is that of the seed's own logits
        (_, logits), = runs.logits([i])
        assert seeds.at[int(runs.seeds[i]), "ece"] == pytest.approx(100 * reliability(logits, runs.labels).ece)
    cal = pd.read_csv(out / "calibration.csv").iloc[0]
    assert cal["runs"] == 37 and cal["mean"] == pytest.approx(seeds["ece"].mean())
    soft = pd.read_csv(out / "soft_ensembles.csv").set_index("k")
    assert list(soft.index) == [1, 2, 3, 5, 10] and soft.at[1, "soft_minus_hard"] == pytest.approx(0, abs=1e-9)
    assert "the soft vote over the majority vote of the same seeds" in md


def test_report_notes_exp3_and_the_malformed_row(logits_report):
    _, out = logits_report
    md = (out / "report.md").read_text()
    assert "fresh Adam" in md and "previous run's Adam moments" in md
    assert "1 malformed row(s) skipped: seed 7 (" in md
    assert "images not drawn: no CIFAR-10 in" in md
    assert len(pd.read_csv(out / "images.csv")) == 1000


def test_ensemble_text_is_the_table(logits_report):
    _, out = logits_report
    md = (out / "report.md").read_text()
    t = pd.read_csv(out / "ensembles.csv").set_index("k")
    said = re.search(r"majority vote over one seed gains k = 2: (\S+) pp; k = 3: (\S+) pp", md)
    assert said and said.groups() == (signed(t.at[2, "gain"]), signed(t.at[3, "gain"]))
    assert "gains nothing" not in md


def test_skipped_rows_the_store_reports_are_listed(tmp_path):
    runs = runs_of(synthetic_store(tmp_path / "s.sqlite", 3, n_images=50, epochs=2))
    runs.skipped_rows = [(12, "invalid JSON in eval_curve"), (None, "no seed")]
    doc = Document("t")
    sections.summary_section(doc, [runs], 100)
    text = "\n".join(m for m, _ in doc.blocks)
    assert "2 malformed row(s) skipped: seed 12 (invalid JSON in eval_curve), seed ? (no seed)." in text


def test_rug_ticks_lie_below_the_histogram(tmp_path):
    runs = runs_of(synthetic_store(tmp_path / "s.sqlite", 200, n_images=500, epochs=2))
    ax = figures.distribution([runs]).axes[0]
    rug = [c for c in ax.collections if len(c.get_segments()) == runs.n_ok]
    assert len(rug) == 1
    ys = np.concatenate([seg[:, 1] for seg in rug[0].get_segments()])
    bars = [p.get_y() for p in ax.patches]
    assert ys.max() < 0 <= min(bars) and ax.get_ylim()[0] <= ys.min()
    assert all(t >= 0 for t in ax.get_yticks())


def test_signed_numbers_never_read_plus_minus():
    assert [signed(v) for v in (0.41, -0.7, -0.001, 0.004, np.nan)] == ["+0.41", "−0.70", "0.00", "0.00", "—"]


def test_the_kde_is_scipys_on_tied_accuracies():
    rng = np.random.default_rng(6)
    x = np.round(rng.normal(90, 0.3, 5000), 2)  # accuracies on a 0.01 % grid: many ties
    grid = np.linspace(88, 92, 300)
    np.testing.assert_allclose(figures.kde(x, grid), stats.gaussian_kde(x)(grid), rtol=1e-9, atol=1e-12)


def test_logits_of_fewer_classes_than_the_labels_are_not_calibrated(tmp_path):
    from fastseed.report import evidence
    runs = runs_of(synthetic_store(tmp_path / "s.sqlite", 4, n_images=50, epochs=2))
    runs.logits = lambda rows: ((int(i), np.zeros((50, 5), np.float16)) for i in rows)  # a top-5
    doc = Document("t")
    assert evidence.calibration_section(doc, [runs], np.random.default_rng(0)) == {} and doc.blocks == []


def test_the_stopping_rule_a_scan_recorded_is_stated_in_the_summary(tmp_path, capsys):
    """A scan with --until-ci records its rule and decision in the store's meta (tests/test_scan_stopping.py);
    the report states them; a store without one says nothing of a rule."""
    from fastseed.store import STOPPING_NOTE
    from fastseed.workers.stopping import Stopping
    path = synthetic_store(tmp_path / "s.sqlite", 30, mean=0.9, std=0.01, n_images=1000, epochs=3)
    rule = Stopping.until_width(path, 0, 100, half_width=1.0)
    assert rule.turn() is None and rule.decision is not None and rule.fed == {"A": rule.decision.seeds[0]}
    with Store.open(path) as s:
        protocol = (s.protocol, s.protocol_hash, s.protocol_json)
    rule.close()
    with Store(path, *protocol) as s:
        s.set_meta(STOPPING_NOTE, rule.meta())
    assert report(capsys, path, "--out", tmp_path / "r")[0] == 0
    md = (tmp_path / "r" / "report.md").read_text()
    line = next(text for text in md.splitlines() if "Stopping rule" in text)
    assert line.startswith("synthetic: Stopping rule (--until-ci 1 --ci-method normal): Seeds were trained until "
                           "the 95 % confidence sequence of the mean accuracy was at most ±1 pp")
    assert f"It decided: {rule.decision.reason}." in line
    assert f"{30 - rule.decision.seeds[0]} more than the rule read" in line
    other = synthetic_store(tmp_path / "t.sqlite", 3, n_images=1000, epochs=3)
    assert report(capsys, other, "--out", tmp_path / "q")[0] == 0
    assert "Stopping rule" not in (tmp_path / "q" / "report.md").read_text()


def test_a_truncated_predictions_blob_is_one_malformed_row_not_the_end_of_every_per_image_section(tmp_path):
    """Issue #23.7: `predictions = x'00'` on one row was read as valid: the predictions matrix went
    ragged and the report dropped every per-image section ("no stored test labels or predictions").
    Now that row is skipped and named, and so is a logits blob that does not decode."""
    store = synthetic_store(tmp_path / "s.sqlite", 30, n_images=500, epochs=2)
    runs = runs_of(store)
    rng = np.random.default_rng(0)
    write_logits(store, {int(s): logits_for(runs.predictions[i], rng) for i, s in enumerate(runs.seeds)})
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("UPDATE records SET predictions = x'00' WHERE seed = 3")
        conn.execute("UPDATE records SET logits = x'0000' WHERE seed = 4")
    conn.close()
    runs = runs_of(store)
    assert runs.scorable and runs.predictions.shape == (29, 500)  # what the per-image sections need
    assert runs.skipped_rows == [(3, "predictions hold 1 byte(s), not 500 (a class per test image)")]
    assert sorted(i for i, _ in runs.logits(np.arange(len(runs)))) == [i for i in range(29) if runs.seeds[i] != 4]
    doc = Document("t")
    sections.malformed_logits(doc, [runs])
    text = "\n".join(m for m, _ in doc.blocks)
    assert text.startswith("x: 1 seed(s) with malformed logits, left out of calibration and soft votes: seed 4 "
                           "(logits do not decode: ")
