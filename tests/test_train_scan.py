"""Studies of a user's training function (`--train`), at the command line, on the examples' real data
(scikit-learn's handwritten digits): in this process (scan, replay, merge, report, and the user's
exception stopping the scan), and the acceptance of issue 22 — a function in a file of the user's
trains a 200-seed study with `--workers 2` and `--until-ci`, resumes after kill -9, replays a seed
identically, merges and reports (the same through `--ray`: test_train_ray.py). The Python API's paths
are in test_study.py."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from fastseed import merge, replay, scan
from fastseed.report import __main__ as report
from fastseed.store import Store
from processes import Process, descendants, kill_all, run

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SKLEARN = "examples.digits_sklearn:train"
WAIT_S = 600  # for a scan on a loaded 2-core machine


def stored(path: Path) -> list:
    if not path.exists():
        return []
    with Store.open(path) as store:
        return store.records()


def report_text(store: Path, out: Path, *extra) -> str:
    assert report.main([str(store), "--out", str(out), "--boot", "200", *map(str, extra)]) == 0
    return (out / "report.md").read_text()


# ---- in this process ----------------------------------------------------------------------------

def test_a_function_study_scans_replays_merges_and_reports_in_this_process(tmp_path, monkeypatch, capsys):
    """The random-forest example, 8 seeds: records in its metric, a replay identical, a merge, a report in
    its words with the per-example sections on the 360 real test images and calibration from its
    probabilities; a second protocol (a knob set) is another store."""
    monkeypatch.chdir(REPO)
    out, other = tmp_path / "forest.sqlite", tmp_path / "more.sqlite"
    base = ["--train", SKLEARN, "--set", "n_estimators=5", "--device", "cpu", "--no-progress", "--keep", "logits"]
    assert scan.main([*base, "--seeds", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seed 7: ok test accuracy " in printed and "8 of 8 seeds" in printed
    records = stored(out)
    assert [r.seed for r in records] == list(range(8)) and {r.status for r in records} == {"ok"}
    first = records[0]
    assert first.metric.name == "test accuracy" and first.metric.bounds == (0.0, 100.0)
    assert 50 < first.test_acc <= 100 and len(first.predictions) == 360 and first.logits is not None
    assert set(first.metrics["extra"]) == {"log_loss", "mean_depth"} and first.metrics["streams"] == ["forest"]
    with Store.open(out) as store:
        assert len(store.test_labels) == 360 and store.metric().label == "test accuracy (%)"
        assert json.loads(store.protocol_json)["n_estimators"] == 5

    assert replay.main([str(out), "--seed", "5"]) == 0
    assert "seed 5: identical (test accuracy " in capsys.readouterr().out
    assert scan.main([*base, "--seeds", "3", "--start", "8", "--out", str(other)]) == 0
    assert merge.main([str(tmp_path / "all.sqlite"), str(out), str(other)]) == 0
    assert [r.seed for r in stored(tmp_path / "all.sqlite")] == list(range(11))
    assert scan.main([*base[:2], "--set", "n_estimators=6", "--seeds", "1", "--out", str(out)]) == 2
    assert "holds protocol examples.digits_sklearn:train+n_estimators=5" in capsys.readouterr().err

    md = report_text(tmp_path / "all.sqlite", tmp_path / "report")
    assert "Final test accuracy (%) over seeds (higher is better)" in md
    assert "The headline is test accuracy in %, higher is better, bounded by [0, 100]" in md
    for section in ("## Which images depend on the seed", "## Calibration (from stored logits)", "## Seed ensembles",
                    "## Other metrics", "## Black swans"):
        assert section in md, section
    assert "Left out, as the records do not support them: the metric per epoch (figure) (the records hold no " \
           "evaluation curve" in md and "Comparing recipes (one store" in md
    assert "| log_loss |" in md.split("## Other metrics")[1].split("## ")[0]


BROKEN = '''
def train(seed, device, at: int = 2):
    if seed.value == at:
        raise ValueError(f"no data for seed {seed.value}")
    return {"metric": 1.0 + seed.value, "name": "score"}
'''


def test_an_exception_in_the_function_stops_the_scan_with_its_traceback_and_keeps_the_seeds_before(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "flaky.py").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    code = scan.main(["--train", "flaky:train", "--seeds", "5", "--device", "cpu", "--no-progress", "--out", "f.sqlite"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("Traceback (most recent call last):\n")
    assert f'File "{tmp_path / "flaky.py"}", line 4, in train' in err and "fastseed/" not in err
    assert "fastseed.scan: flaky:train raised ValueError for seed 2: no data for seed 2; the seeds stored before " \
           "it are kept (the same command resumes" in err
    assert [r.seed for r in stored(tmp_path / "f.sqlite")] == [0, 1]
    with Store.open(tmp_path / "f.sqlite") as store:
        assert store.progress(0, 5) == (2, 0)  # seed 2's claim released, nothing left claimed


# ---- the acceptance: a 200-seed study, killed and resumed, with two workers and on Ray -------------------

def user_study(folder: Path) -> str:
    """A function in a file of the user's, outside fastseed: the MLP example, copied; 3 epochs a seed
    (±1.3 pp between seeds: the rule stops near 45 seeds, at ±0.6 pp)."""
    folder.mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / "digits_mlp.py", folder / "mystudy.py")
    return "mystudy:train"


def scan_command(spec: str, out: Path, *extra) -> list:
    return [sys.executable, "-m", "fastseed.scan", "--train", spec, "--set", "epochs=3", "--seeds", "200",
            "--until-ci", "0.6", "--device", "cpu", "--out", str(out), "--no-progress", *map(str, extra)]


def kill_minus_9_once_committed(argv, cwd: Path, out: Path, at_least: int) -> list:
    """Start the scan, and once `at_least` records are committed, SIGKILL it and every process below it
    (a power cut, as far as the store can tell). The records stored then."""
    with Process(argv, cwd, name="killed", one_thread=False) as scan:
        scan.wait_until(lambda: len(stored(out)) >= at_least, f"{at_least} records", timeout=WAIT_S)
        kill_all([scan.pid, *descendants(scan.pid)])  # and wait: a commit being written still lands
    return stored(out)


def assert_resumed_replayed_merged_and_reported(argv, folder: Path, out: Path, before: list) -> None:
    """The rerun of the killed command completes the study without training a stored seed again, every
    record stored before the kill unchanged; a seed replays identically; the store merges with another
    of the same protocol; the report speaks of the function's metric."""
    rerun = run(argv, folder, timeout=WAIT_S, one_thread=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{200 - len(before)} of 200 seeds to train" in rerun.stdout
    assert "stopped: the question is answered: " in rerun.stdout
    assert "95 % confidence sequence of the mean is ±" in rerun.stdout
    after = {r.seed: r for r in stored(out)}
    assert all(after[r.seed] == r for r in before)  # every field: metric, curves, predictions, provenance
    seeds = sorted(after)
    with Store.open(out) as store:
        note = store.stopping_note()
        assert store.progress(0, 200)[1] == 0 and note["decision"]  # no claim left
    fed = note["seeds_fed"]["A"]  # the rule read seeds 0 … fed − 1; the seeds in flight then were committed too
    assert 10 <= fed <= len(seeds) < 200 and seeds[:fed] == list(range(fed))

    replayed = run([sys.executable, "-m", "fastseed.replay", out, "--seed", seeds[-1]], folder, timeout=WAIT_S,
                   one_thread=False)
    assert replayed.returncode == 0 and f"seed {seeds[-1]}: identical (test accuracy" in replayed.stdout, \
        replayed.stdout + replayed.stderr
    more = folder / "more.sqlite"  # two more seeds of the same protocol, in one process
    one = run([*argv[: argv.index("--seeds")], "--start", "200", "--seeds", "2", "--device", "cpu", "--out", more],
              folder, timeout=WAIT_S, one_thread=False)
    assert one.returncode == 0, one.stdout + one.stderr
    assert merge.main([str(folder / "all.sqlite"), str(out), str(more)]) == 0
    assert sorted(r.seed for r in stored(folder / "all.sqlite")) == seeds + [200, 201]

    md = report_text(folder / "all.sqlite", folder / "report")
    assert f"| {len(seeds) + 2} |" in md.split("## Summary")[1].split("## ")[0]
    assert "Final test accuracy (%) over seeds (higher is better)" in md and "## Which images depend on the seed" in md
    assert "train_accuracy" in md


@pytest.mark.slow
def test_a_200_seed_study_of_a_users_function_with_two_workers_resumes_after_kill_9(tmp_path):
    folder = tmp_path / "user"
    spec = user_study(folder)
    out = folder / "study.sqlite"
    argv = scan_command(spec, out, "--workers", 2)
    before = kill_minus_9_once_committed(argv, folder, out, at_least=12)
    assert 12 <= len(before) < 200
    assert_resumed_replayed_merged_and_reported(argv, folder, out, before)


LOSS = '''
def train(seed, device, level: float = 1.0, bounded: bool = True):
    """A loss around `level` (lower is better), in [0, 10]."""
    return {"metric": level + 0.05 * seed.numpy("noise").normal(), "name": "log loss", "higher_is_better": False,
            "bounds": (0, 10) if bounded else None}
'''


def test_a_lower_is_better_metric_is_decided_as_such_and_a_rule_needs_its_bounds(tmp_path, monkeypatch, capsys):
    """--versus calls the side with the lower loss the better (the rule reads the negated loss, and says
    so), the report ranks the lowest loss best; a stopping rule refuses a metric without bounds."""
    (tmp_path / "lossy.py").write_text(LOSS)
    monkeypatch.chdir(tmp_path)
    base = ["--train", "lossy:train", "--device", "cpu", "--no-progress", "--seeds", "40"]
    assert scan.main([*base, "--until-ci", "0.05", "--out", "a.sqlite"]) == 0
    out = capsys.readouterr().out
    assert "95 % confidence sequence of the mean is ±" in out and "(log loss is lower-is-better" in out
    assert scan.main([*base, "--set", "level=0.8", "--versus", "a.sqlite", "--out", "b.sqlite"]) == 0
    out = capsys.readouterr().out
    assert "lossy:train+level=0.8 is better than lossy:train: the whole interval is above 0" in out
    with Store.open(tmp_path / "b.sqlite") as store:
        assert store.stopping_note()["verdict"].startswith("better") and store.metric().higher_is_better is False
    md = report_text(tmp_path / "a.sqlite", tmp_path / "r")
    assert "Final log loss over seeds (lower is better)" in md and "bounded by [0, 10]" in md
    best = md.split("| best | 1 |")[1].split("|")[0].strip()  # the best seed is the one of the lowest loss
    with Store.open(tmp_path / "a.sqlite") as store:
        assert int(best) == min(store.records(), key=lambda r: r.test_acc).seed
    assert scan.main([*base, "--set", "bounded=false", "--until-ci", "0.05", "--out", "c.sqlite"]) == 2
    assert "--until-ci 0.05: the stopping rules need the bounds of the metric (log loss)" in capsys.readouterr().err
