"""The GPU campaign (bench/gpu_campaign.py) rehearsed on the CPU, so that nothing in it is first found
broken on the GPU: every phase at toy scale on the real CIFAR-10 (and a–d on generated data, as the first
GPU call runs them), the capture rule through the CPU stand-in of CUDA graphs, the budget rules (a phase
without enough time is skipped, one that overruns is cut, one that raises is logged), and its statistics."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("gpu_campaign.py")
REPO = SCRIPT.parents[1]


def load():
    spec = importlib.util.spec_from_file_location("gpu_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_campaign = load()
import campaign_phases  # noqa: E402  (bench/, put on the path by gpu_campaign)
import campaign_run  # noqa: E402


# What this machine may have and the GPU machine has not: hidden from the command (sitecustomize runs
# first in every Python process), so the rehearsal shows that the campaign does without them.
ABSENT_ON_THE_GPU = ("nvidia.dali", "ray", "pyarrow")
HIDE = f"""
import importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == n or name.startswith(n + ".") for n in {ABSENT_ON_THE_GPU!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
        return None

sys.meta_path.insert(0, Absent())
"""


def run_command(out: Path, *args) -> subprocess.CompletedProcess:
    """The command as the GPU session runs it: from the checkout, with PYTHONPATH=., without DALI/ray."""
    hidden = out.parent / f"{out.name}-sitecustomize"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(HIDE)
    path = [str(hidden), str(REPO), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path)), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def strict_lines(path: Path) -> list[dict]:
    """Every line is one JSON object that a strict parser reads (no NaN, no Infinity)."""
    def refuse(name):
        raise ValueError(f"{name} in {path}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def statuses(lines) -> dict:
    return {x["phase"]: x for x in lines if x["kind"] == "phase"}


@pytest.fixture(scope="module")
def rehearsal(cifar_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    proc = run_command(out, "--rehearse", "--data-dir", str(cifar_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, strict_lines(out / "campaign.jsonl")


def of(lines, kind):
    return [x for x in lines if x["kind"] == kind]


@pytest.mark.slow
def test_rehearsal_runs_every_phase_and_leaves_few_files(rehearsal):
    out, proc, lines = rehearsal
    assert sorted(p.name for p in out.iterdir()) == ["campaign.jsonl", "campaign.log", "summary.md"]  # ≤ 8
    assert {k: x["status"] for k, x in statuses(lines).items()} == {k: "done" for k in "abcdef"}
    first = proc.stdout.splitlines()[0]
    assert first.startswith("gpu_campaign: found no GPU") and "dali absent, ray absent" in first
    assert re.search(r"commit ([0-9a-f]{12}|unknown)", first)
    env = of(lines, "env")[0]
    assert env["torch"] and env["rehearsal"] is True and env["device"] == "cpu"
    assert env["dali"] is False and env["ray"] is False  # hidden, as on the GPU machine: not needed
    end = of(lines, "end")[0]
    assert end["skipped"] == end["failed"] == end["cut"] == [] and end["total_s"] <= env["budget_s"] + 5


@pytest.mark.slow
def test_rehearsal_prints_the_final_table_and_keeps_it(rehearsal):
    out, proc, _ = rehearsal
    table = (out / "summary.md").read_text().strip()
    assert proc.stdout.rstrip().endswith(table)
    for heading in ("| phase | status", "| kernel |", "| strategy | K |", "| run |", "| graph vs eager |", "verdict:",
                    "non-determinism:", "total"):
        assert heading in table
    assert gpu_campaign.table(gpu_campaign.read_lines(out / "campaign.jsonl")) == table  # --table rebuilds it


@pytest.mark.slow
def test_rehearsal_measures_peak_and_copy_bandwidth(rehearsal):
    _, _, lines = rehearsal
    (peak,), (copy,) = of(lines, "peak"), of(lines, "copy")
    assert peak["phase"] == "a" and peak["flops_per_s"] > 0 and copy["gbps"] > 0


@pytest.mark.slow
def test_rehearsal_checks_both_kernels_against_their_references(rehearsal):
    _, _, lines = rehearsal
    kernels = {x["name"]: x for x in of(lines, "kernel")}
    assert set(kernels) == {"lsce", "augment"}
    assert all(x["agree"] and x["s_triton"] > 0 and x["s_torch"] > 0 and x["compile_s"] > 0 for x in kernels.values())
    assert kernels["augment"]["identical"] and kernels["augment"]["fraction_of_copy"] > 0
    assert 0 <= kernels["lsce"]["max_abs_diff"] < 1e-4
    # augment's bytes: each of its M·3·32·32 outputs reads one uint8 pixel and writes a float32
    n, m = gpu_campaign.REHEARSAL.augment_shape
    want = m * 3 * 32 * 32 * (1 + 4) / kernels["augment"]["s_triton"] / 1e9
    assert kernels["augment"]["gbps"] == pytest.approx(want, rel=1e-9)


@pytest.mark.slow
def test_rehearsal_times_every_strategy_and_pack_size(rehearsal):
    _, _, lines = rehearsal
    steps = of(lines, "step")
    assert [(x["strategy"], x["k"]) for x in steps] == list(gpu_campaign.REHEARSAL.configs)
    for x in steps:
        assert x["s_per_seed_step"] > 0 and 0 < x["fraction_of_peak"]
        assert x["steps_per_seed"] == 6  # the rehearsal's protocol: 3 epochs of 2 steps
        assert x["projected_s_per_seed"] == pytest.approx(x["s_per_seed_step"] * x["steps_per_seed"])
        assert x["s_per_step"] == pytest.approx(x["k"] * x["s_per_seed_step"])
        assert x["graphs"] is False  # no CUDA graphs on a CPU (the scan's own rule)
    assert of(lines, "pack_auto")[0]["k"] == 1  # --pack auto on a CPU


@pytest.mark.slow
def test_rehearsal_runs_cross_epochs_and_the_freeze_with_one_capture_a_pack(rehearsal):
    _, _, lines = rehearsal
    runs = {x["preset"]: x for x in of(lines, "run")}
    assert set(runs) == {"smoke", "fast94"}
    for x in runs.values():  # through the CPU stand-in of CUDA graphs: the scan's GraphedStep, captured once
        assert x["stand_in"] and x["graphed"] and x["captures"] == 1 and x["failure"] is None
        assert x["eager_steps"] == 3 and x["replays"] == x["steps"] - 3 and x["replays"] >= 3
    assert (runs["smoke"]["steps"], runs["fast94"]["steps"]) == (6, 8)


@pytest.mark.slow
def test_rehearsal_checks_graph_against_eager(rehearsal):
    _, _, lines = rehearsal
    checks = {x["strategy"]: x for x in of(lines, "graph_check")}
    assert set(checks) == {"fused", "streams"}
    for x in checks.values():  # the stand-in replays the same ops on the CPU: exactly the eager run
        assert x["agree"] and x["loss_rel"] == x["weight_rel"] == x["bn_rel"] == 0.0
        assert x["captures"] == 1 and x["replays"] == x["steps"] - 3 and x["k"] == 2 and x["dtype"] == "float32"
    assert of(lines, "compile") == []  # no --compile in the rehearsal (its C++ build alone takes minutes)


@pytest.mark.slow
def test_rehearsal_trains_seeds_and_compares_them_to_table1(rehearsal):
    _, _, lines = rehearsal
    seeds = [x for x in of(lines, "seed") if x["phase"] == "e"]
    assert [x["seed"] for x in seeds] == [0, 1]
    for x in seeds:
        assert x["status"] == "ok" and 0 <= x["acc"] <= 1 and x["wall_s"] > 0
        assert re.fullmatch(r"[0-9a-f]{64}", x["predictions_sha256"]) and "predictions" not in x
    (result,) = of(lines, "table1")
    assert result["n"] == 2 and result["mean"] == pytest.approx(50 * (seeds[0]["acc"] + seeds[1]["acc"]))
    assert result["verdict"] and result["std_verdict"]
    fastest = min(of(lines, "step"), key=lambda x: x["projected_s_per_seed"])
    assert result["setting"] == {"strategy": fastest["strategy"], "k": fastest["k"]}


@pytest.mark.slow
def test_rehearsal_repeats_one_seed_and_the_cpu_shows_no_nondeterminism(rehearsal):
    _, _, lines = rehearsal
    repeats = [x for x in of(lines, "repeat") if x["pack"]["size"] == 1]
    assert len(repeats) == 3 and {x["seed"] for x in repeats} == {0}
    (result,) = of(lines, "nondeterminism")
    assert result["runs"] == 3 and all(0 <= a <= 100 for a in result["accs"])
    # every run draws the same numbers and CPU kernels are deterministic: bit-identical repeats
    assert result["spread_pp"] == 0 and result["distinct_predictions"] == 1
    assert result["other_layout"]["size"] != 1 or result["other_layout"]["strategy"] != result["layout"]["strategy"]
    assert result["other_acc"] is not None and result["layout_diff_pp"] is not None


@pytest.mark.slow
def test_synthetic_data_runs_the_engine_phases_and_leaves_the_real_data_ones(tmp_path):
    """The first GPU call: generated CIFAR-shaped images, phases c–f asked (a and b need no data)."""
    proc = run_command(tmp_path, "--rehearse", "--synthetic", "--phases", "cdef")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = strict_lines(tmp_path / "campaign.jsonl")
    phases = statuses(lines)
    assert phases["c"]["status"] == phases["d"]["status"] == "done"
    for key in "ef":
        assert phases[key]["status"] == "skipped" and "needs the real CIFAR-10" in phases[key]["reason"]
    (data,) = of(lines, "data")
    assert data["source"].startswith("synthetic") and (data["train"], data["test"]) == (200, 200)
    assert of(lines, "env")[0]["synthetic"] is True and all(x["agree"] for x in of(lines, "graph_check"))


def in_process(module, monkeypatch, argv) -> int:
    """main() in this process with the budget's clock started now: the budget rules without the
    machine's variable startup time (the subprocess tests cover the command itself)."""
    monkeypatch.setattr(module, "STARTED", time.monotonic())
    return module.main(argv)


def test_tiny_budget_skips_phases_for_lack_of_time_and_still_exits_0(cifar_root, tmp_path, monkeypatch, capsys):
    argv = ["--rehearse", "--data-dir", str(cifar_root), "--out", str(tmp_path), "--budget-s", "14"]
    assert in_process(gpu_campaign, monkeypatch, argv) == 0
    lines = strict_lines(tmp_path / "campaign.jsonl")
    phases = statuses(lines)
    assert phases["a"]["status"] == "done" and of(lines, "peak")  # 5 % of 14 s: enough for a's matmul
    for key in "bcdef":  # each would get less than it needs
        assert phases[key]["status"] == "skipped" and phases[key]["reason"].startswith("not enough time")
        assert phases[key]["allotted_s"] < gpu_campaign.REHEARSAL.floors[key]
    end = of(lines, "end")[0]
    assert end["skipped"] == list("bcdef") and end["failed"] == end["cut"] == [] and end["total_s"] <= 14
    out = capsys.readouterr().out
    assert out.count("skipped, not enough time") == 5 and "| phase | status" in out


@pytest.mark.slow
def test_a_phase_that_raises_is_logged_and_the_campaign_goes_on(cifar_root, tmp_path):
    proc = run_command(tmp_path, "--rehearse", "--data-dir", str(cifar_root), "--phases", "ab", "--fail-phase", "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    phases = statuses(strict_lines(tmp_path / "campaign.jsonl"))
    assert phases["a"]["status"] == "failed" and "injected failure" in phases["a"]["error"]
    assert phases["b"]["status"] == "done"  # the next phase ran, and measured the copy bandwidth itself
    assert [phases[k]["reason"] for k in "cdef"] == ["not selected (--phases)"] * 4
    log = (tmp_path / "campaign.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: injected failure in phase a" in log


@pytest.mark.slow  # the campaign imports torch._dynamo before its phases (~10 s)
def test_a_phase_that_overruns_is_cut_and_the_next_gets_its_share(tmp_path, monkeypatch, capsys):
    def overrun(run):
        run.emit("peak", flops_per_s=1.0, n=1, dtype="float32")  # measured before the overrun: kept
        try:
            time.sleep(600)
        except campaign_run.PhaseCut:  # as library code might, turning the cut into an error it catches
            pass
        time.sleep(600)  # and going on: the alarm cuts again a second later

    monkeypatch.setitem(gpu_campaign.PHASES, "a", overrun)
    monkeypatch.setitem(gpu_campaign.PHASES, "b", lambda run: run.emit("copy", gbps=1.0, bytes=1))
    argv = ["--rehearse", "--out", str(tmp_path), "--phases", "ab", "--budget-s", "12"]  # a: 4 s
    assert in_process(gpu_campaign, monkeypatch, argv) == 0
    lines = strict_lines(tmp_path / "campaign.jsonl")
    a, b = statuses(lines)["a"], statuses(lines)["b"]
    assert a["status"] == "cut" and a["used_s"] == pytest.approx(a["allotted_s"] + 1, abs=0.9)  # ~3 s, not 600
    assert b["status"] == "done" and b["allotted_s"] > a["allotted_s"]  # 10 % of what a left: not starved
    assert [x["phase"] for x in lines if x["kind"] in ("peak", "copy")] == ["a", "b"]
    assert "a: cut" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--budget-s", "0"], ["--phases", "az"], ["--budget-s", "x"],
                                  ["--synthetic", "--data-dir", "data"]],
                         ids=["zero-budget", "unknown-phase", "not-a-number", "synthetic-and-real"])
def test_bad_arguments_give_one_line_and_exit_2(argv, tmp_path, capsys):
    assert gpu_campaign.main(["--rehearse", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpu_campaign: ") and not (tmp_path / "campaign.jsonl").exists()


def test_an_out_folder_with_a_campaign_is_refused_not_overwritten(tmp_path, capsys):
    (tmp_path / "campaign.jsonl").write_text('{"kind": "env"}\n')
    assert gpu_campaign.main(["--rehearse", "--out", str(tmp_path)]) == 2
    assert "already holds a campaign" in capsys.readouterr().err
    assert (tmp_path / "campaign.jsonl").read_text() == '{"kind": "env"}\n'


# --- the comparison with Table 1 ------------------------------------------------------------------
def standardized(n, mean, std, seed=0):
    """n values whose sample mean and std (ddof 1) are exactly `mean` and `std`."""
    x = np.random.default_rng(seed).normal(size=n)
    return list(mean + std * (x - x.mean()) / x.std(ddof=1))


def test_intervals_are_the_textbook_t_and_chi_square_intervals():
    x = standardized(10, 90.0, 0.3)
    result = campaign_phases.compare_to_table1(x)
    # tabulated quantiles for 9 degrees of freedom: t(0.975) = 2.262157, chi2(0.975) = 19.02277, chi2(0.025) = 2.700389
    half = 2.262157 * 0.3 / math.sqrt(10)
    assert result["ci_mean"] == pytest.approx([90.0 - half, 90.0 + half], rel=1e-6)
    assert result["ci_std"] == pytest.approx([0.3 * math.sqrt(9 / 19.02277), 0.3 * math.sqrt(9 / 2.700389)], rel=1e-5)
    assert (result["n"], result["mean"], result["std"]) == (10, pytest.approx(90.0), pytest.approx(0.3))


def test_intervals_cover_the_true_mean_and_std_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    samples = rng.normal(90.02, 0.23, size=(500, 8))
    results = [campaign_phases.compare_to_table1(list(s)) for s in samples]
    mean_cover = np.mean([lo <= 90.02 <= hi for lo, hi in (r["ci_mean"] for r in results)])
    std_cover = np.mean([lo <= 0.23 <= hi for lo, hi in (r["ci_std"] for r in results)])
    # 500 trials: a binomial standard error of 1 point around 95 %; three of them either side
    assert 0.92 <= mean_cover <= 0.98 and 0.92 <= std_cover <= 0.98


def test_verdicts_agree_disagree_or_say_too_few_seeds():
    agree = campaign_phases.compare_to_table1(standardized(100, 90.02, 0.23))
    assert agree["verdict"].startswith("agrees") and "inside" in agree["std_verdict"]
    low = campaign_phases.compare_to_table1(standardized(100, 89.5, 0.23))
    assert low["verdict"].startswith("disagrees")
    wide = campaign_phases.compare_to_table1(standardized(100, 90.02, 1.0))  # the mean agrees, the std does not
    assert wide["verdict"].startswith("agrees") and "outside" in wide["std_verdict"]
    few = campaign_phases.compare_to_table1([89.8, 90.02, 90.24])  # holds 90.02, but ± 0.55 pp wide
    assert few["verdict"].startswith("too few seeds to tell")
    one = campaign_phases.compare_to_table1([90.1])
    assert one["verdict"].startswith("too few seeds to tell") and one["ci_mean"] is None
    assert campaign_phases.compare_to_table1([88.0, 90.0, 91.0])["outside_range"] == 2  # below 89.01, above 90.83
