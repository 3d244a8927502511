"""Issue #13 item 4 at the command line: `--until-ci W` and `--versus STORE [--margin M]` end a scan once
their confidence sequence decides (the packs in flight committed, exit 0, the reason printed), from the
accuracies in seed order; a rerun reaches the same decision without training; the store records the
rule and the report states it; --versus trains the other protocol's seeds in turn when the rule needs
them; a pool's parent stops its workers; bad flags are one line and exit 2.

The scans of one process run with their training replaced by records of known accuracies (the scan
around the training is under test; fastseed/stats/sequential.py's rules are tested on their own); the
pool runs real workers on a tiny recipe."""

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from fastseed import scan
from fastseed.report import sections
from fastseed.jobs import CifarJob
from fastseed.recipe.presets import get_preset
from fastseed.stats.sequential import UntilWidth
from fastseed.store import Store
from fastseed.store.record import Record
from processes import run as run_process
from scans import scan_argv

SMOKE = get_preset("smoke")
IMAGES = 10_000


def accuracy(protocol, seed: int) -> float:
    """A known distribution per protocol: N(60 %, 1 pp) for smoke, 10 pp less for any variant of it."""
    mean = 0.60 if protocol.name == "smoke" else 0.50
    return mean + 0.01 * np.random.default_rng(seed).standard_normal()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Training makes each pack's records at once; no data is read. Returns the packs trained, as
    (protocol name, seeds)."""
    import fastseed.engine
    packs = []

    def train_pack(protocol, seeds, data, device, *, on_record, **kw):
        seeds = list(seeds)
        packs.append((protocol.name, seeds))
        for slot, seed in enumerate(seeds):
            on_record(Record(protocol=protocol.name, protocol_hash=protocol.hash, seed=seed, status="ok",
                             test_acc=accuracy(protocol, seed), test_loss=1.0, headline_epoch=3, eval_curve=[],
                             train_curve=[], predictions=bytes(IMAGES), wall_time_s=0.1,
                             pack={"strategy": "fused", "size": len(seeds), "slot": slot, "seeds": seeds},
                             provenance={}))

    monkeypatch.setattr(fastseed.engine, "train_pack", train_pack)
    monkeypatch.setattr(CifarJob, "load", lambda self: np.arange(IMAGES) % 10)
    monkeypatch.chdir(tmp_path)
    return packs


def run(capsys, *argv):
    code = scan.main(["--preset", "smoke", "--device", "cpu", "--no-progress", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def stored(path) -> tuple[list, dict]:
    with Store.open(path) as store:
        return [r.seed for r in store.records()], json.loads(store.meta["stopping"])


def stopping_text(path) -> str:
    """The report's summary paragraphs of the store."""
    from fastseed.report.document import Document
    doc = Document("t")
    sections.summary_section(doc, sections.open_runs([str(path)]), 200)
    return "\n".join(md for md, _ in doc.blocks)


def test_until_ci_stops_once_the_interval_is_narrow_enough_and_a_rerun_agrees(fake, capsys):
    code, out, err = run(capsys, "--until-ci", 1.5, "--seeds", 1000, "--pack", 4, "--out", "s.sqlite")
    assert code == 0, err
    # the rule, fed the same accuracies in seed order by hand, stops at the same seed
    rule, n = UntilWidth(1.5), 0
    while rule.decision is None:
        rule.update(100 * accuracy(SMOKE, n))
        n += 1
    assert 10 <= n < 1000
    reason = rule.decision.reason
    assert f"stopped: the question is answered: {reason}" in out.splitlines()[-1]
    seeds, meta = stored("s.sqlite")
    assert seeds == list(range(-(-n // 4) * 4))  # the pack in flight when it decided was committed too
    assert meta["decision"] == reason and meta["seeds_fed"] == {"A": n} and meta["verdict"] == "width if no collapse"
    assert meta["collapsed"] == {"A": []} and meta["standing"] is None
    assert meta["flags"] == "--until-ci 1.5 --ci-method normal"

    trained = len(fake)
    code, out, err = run(capsys, "--until-ci", 1.5, "--seeds", 1000, "--pack", 4, "--out", "s.sqlite")
    assert code == 0 and len(fake) == trained  # answered by what is stored: nothing trained
    assert "the stopping rule is answered by the" in out and reason in out

    text = stopping_text("s.sqlite")
    assert "smoke: Stopping rule (--until-ci 1.5 --ci-method normal): Seeds were trained until the 95 % " in text
    assert f"It decided: {reason}." in text
    if len(seeds) > n:
        assert f"{len(seeds) - n:,} more than the rule read" in text


def test_versus_trains_the_other_protocol_in_turn_until_the_difference_is_decided(fake, capsys):
    assert run(capsys, "--set", "lr=0.3", "--seeds", 3, "--out", "b.sqlite")[0] == 0
    code, out, err = run(capsys, "--versus", "b.sqlite", "--seeds", 100, "--out", "a.sqlite")
    assert code == 0, err
    a, meta = stored("a.sqlite")
    with Store.open("b.sqlite") as store:
        b = [r.seed for r in store.records()]
    assert meta["verdict"] == "better if no collapse"
    assert meta["decision"].startswith("if neither collapses, smoke is better than smoke+lr=0.3")
    assert f"stopped: the question is answered: {meta['decision']}" in out
    assert meta["seeds_fed"] == {"A": len(a), "B": len(b)}  # one seed a pack: nothing beyond the rule
    assert a == list(range(len(a))) and b == list(range(len(b))) and len(a) >= 10 and len(b) >= 10
    assert len(a) + len(b) < 100
    names = [name for name, _ in fake]
    assert "smoke+lr=0.3" in names[1:] and names.index("smoke+lr=0.3", 1) < len(names) - 1  # in turn
    assert "versus: smoke+lr=0.3" in out  # B's start-up line, then its seeds' lines
    assert "smoke+lr=0.3: seed 3: ok acc" in out
    assert "It decided: if neither collapses, smoke is better than smoke+lr=0.3" in stopping_text("a.sqlite")

    # two variants of one distribution and a margin: "within", once each side has its 10 seeds
    code, out, err = run(capsys, "--set", "lr=0.4", "--versus", "b.sqlite", "--margin", 5, "--seeds", 100,
                         "--out", "c.sqlite")
    assert code == 0 and "smoke+lr=0.4 and smoke+lr=0.3 are within ±5 pp" in out, err
    assert stored("c.sqlite")[1]["seeds_fed"] == {"A": 10, "B": 10}


def test_a_collapsed_seed_is_named_where_the_scan_stops_and_in_the_report(fake, capsys, monkeypatch):
    """Seed 3 collapses to 10 %: the rule's answer for the runs that did not collapse is withheld, so the
    scan trains on until the mean of all runs is known to ±W (normal runs plus collapses), and the stop
    line, the store's note and the report name the seed."""
    healthy = accuracy
    monkeypatch.setattr(sys.modules[__name__], "accuracy",
                        lambda protocol, seed: 0.10 if seed == 3 else healthy(protocol, seed))
    code, out, err = run(capsys, "--until-ci", 3, "--seeds", 2000, "--pack", 4, "--out", "s.sqlite")
    assert code == 0, err
    seeds, meta = stored("s.sqlite")
    assert meta["verdict"] == "width" and meta["collapsed"] == {"A": [3]}
    assert "1 run treated as a collapse, counted in the mean (seed 3 at 10.00; rate " in meta["decision"]
    assert meta["decision"] in out and 100 < meta["seeds_fed"]["A"] < 2000  # more than the 12 of no collapse
    assert "seed 3 at 10.00" in stopping_text("s.sqlite")


def test_an_undecided_rule_says_where_it_stood_in_the_report(fake, capsys):
    code, out, err = run(capsys, "--until-ci", 0.01, "--seeds", 40, "--out", "s.sqlite")
    assert code == 0 and "the stopping rule did not decide within the 40 seeds of --seeds" in out, err
    meta = stored("s.sqlite")[1]
    assert meta["decision"] is None and meta["standing"].startswith("after 40 seeds the mean is ")
    assert "no run collapsed (a collapse rate up to " in meta["standing"]
    assert f"It had not decided when the scan ended: {meta['standing']}." in stopping_text("s.sqlite")


def make_store(path, protocol) -> None:
    Store(path, protocol.name, protocol.hash, protocol.to_json()).close()


@pytest.mark.parametrize("argv,phrase", [
    (["--until-ci", "-1"], "--until-ci must be a positive number of percentage points"),
    (["--until-ci", "0"], "--until-ci must be a positive number"),
    (["--versus", "absent.sqlite"], "--versus absent.sqlite: no store there"),
    (["--margin", "0.1"], "--margin: only with --versus STORE"),
    (["--versus", "b.sqlite", "--margin", "-1"], "--margin must be a number of percentage points >= 0"),
    (["--until-ci", "1", "--versus", "b.sqlite"], "--until-ci and --versus: give one"),
    (["--ci-method", "bounded"], "--ci-method: only with --until-ci or --versus"),
    (["--versus", "b.sqlite", "--workers", "2"], "--versus trains both protocols in turn in this process"),
    (["--versus", "same.sqlite"], "--versus same.sqlite holds this scan's protocol (smoke)"),
    (["--versus", "s.sqlite"], "--versus s.sqlite is this scan's own store"),
    (["--until-ci", "1", "--ci-method", "exact"], "invalid choice: 'exact'"),
])
def test_bad_stopping_flags_are_one_line_and_exit_2(argv, phrase, fake, capsys):
    make_store("b.sqlite", SMOKE.variant(augment="image"))
    make_store("same.sqlite", SMOKE)
    make_store("s.sqlite", SMOKE)
    before = {p: p.read_bytes() for p in Path(".").iterdir()}
    code, _, err = run(capsys, "--seeds", 10, "--out", "s.sqlite", *argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("fastseed.scan: error:"), err
    assert phrase in err
    assert fake == [] and {p: p.read_bytes() for p in Path(".").iterdir()} == before


@pytest.mark.slow
def test_a_pool_stops_its_workers_once_the_rule_decides(real_cifar_root, tmp_path):
    """Two real CPU workers on a one-step recipe: the parent reads the store as they commit, and once the
    rule has decided it stops them; the decision is the one the seed-order prefix gives."""
    out = tmp_path / "p.sqlite"
    argv = scan_argv(real_cifar_root, out, "--set", "train_size=500", "--set", "test_size=500", "--set", "epochs=1",
                     "--seeds", 400, "--workers", 2, "--until-ci", 5, "--no-progress")
    result = run_process(argv, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the stopping rule has decided: stopping the 2 workers" in result.stdout
    with Store.open(out) as store:
        accs = 100 * store.accuracies(0, 400)
        meta = json.loads(store.meta["stopping"])
    n = meta["seeds_fed"]["A"]
    assert 10 <= n <= len(accs) < 400
    rule = UntilWidth(5)
    assert [rule.update(a) is not None for a in accs[:n]] == [False] * (n - 1) + [True]
    assert meta["decision"] == rule.decision.reason and rule.decision.reason in result.stdout
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_versus_a_store_of_another_data_set_is_refused_not_asked_for_weights(fake, capsys):
    """Issue #23.9: `--versus` an ImageNet store from a CIFAR scan asked for `--weights` instead of
    refusing a comparison of accuracies on two data sets."""
    make_store("inet.sqlite", get_preset("imagenet-rn50"))
    code, _, err = run(capsys, "--seeds", 10, "--out", "s.sqlite", "--versus", "inet.sqlite")
    assert code == 2 and err.splitlines() == [
        "fastseed.scan: error: --versus inet.sqlite holds imagenet-rn50, trained on imagenet; this scan's smoke "
        "is on cifar10: their accuracies do not compare"]
    assert fake == [] and not Path("s.sqlite").exists()
