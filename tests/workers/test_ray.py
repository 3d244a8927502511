"""A scan on a Ray cluster (`--ray`): the same records as a local scan (float64: identical, field for
field); an actor killed mid-pack is restarted and its pack trained again, every seed committed once,
and no actor ever holds the store open; Ctrl-C commits the packs in training and the rerun completes;
actors that cannot train (no data on their node) and bad input are one line and exit code 2.

One local Ray cluster (2 CPUs: 2 CPU actors a scan) serves every test here, and the scans run in this
process so that they share it (Ray's start-up costs ~10 s on 2 cores). Smoke seeds take ~15 s on one
core, float64 ones far more: the comparison and the kill use the smoke protocol at smaller scale
(same code path, seconds or less a seed) through the workers' API, Ctrl-C smoke at small scale
(tests/scans.py) through `scan.main(... --ray)` as a user runs it."""

import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import torch

from fastseed import FastseedError, scan
from fastseed.jobs import Options, make_job
from fastseed.recipe.presets import get_preset
from fastseed.store import Store
from fastseed.workers.local import Outcome, StopFlag, scan_here
from fastseed.workers.ray import actor_plan, scan_ray
from scans import SMALL_SET, assert_complete, committed

SMOKE = get_preset("smoke")
TINY = SMOKE.variant(width=0.0625, train_size=200, test_size=200, batch_size=100, chunk_size=100, epochs=2,
                     eval_batch_size=200)  # 4 steps: well under a second a seed, even in float64
SHORT = SMOKE.variant(train_size=2000, test_size=1000)  # 16 steps: seconds a seed, a pack to kill midway
WAIT_S = 300  # for an actor to be training: start-up, data, a first pack (a loaded 2-core machine)


@pytest.fixture(scope="session")
def cluster():
    """The one local Ray cluster of these tests: 2 CPUs, so 2 CPU actors a scan."""
    term = signal.getsignal(signal.SIGTERM)
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # a new one, whatever runs here
    signal.signal(signal.SIGTERM, term)  # ray.init installs its own; the scans' handlers stay pytest's
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    """The local scan runs here with one torch thread, like each CPU actor (in float64 a seed is
    bit-identical across processes, layouts and packs; a sum split over other threads might not be)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smoke(data_dir, out, *extra) -> list[str]:
    return ["--preset", "smoke", "--device", "cpu", "--data-dir", str(data_dir), "--out", str(out), "--no-progress",
            *map(str, extra)]


class Actors:
    """The actors of the scan in flight, as a test sees them: by their names, through Ray."""

    @staticmethod
    def now() -> list:
        return [ray.get_actor(name) for name in ray.util.list_named_actors() if name.startswith("fastseed-")]

    @staticmethod
    def hello(actor) -> dict:
        return ray.get(actor.hello.options(concurrency_group="side").remote(), timeout=60)

    @classmethod
    def training(cls, started_s: float = 1.0) -> dict:
        """An actor `started_s` into a pack: its hello (pid, host, the seeds it trains)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for actor in cls.now():
                try:
                    info = cls.hello(actor)
                except ray.exceptions.RayError:
                    continue  # starting, or gone
                if info["training"]:
                    time.sleep(started_s)
                    if cls.hello(actor)["training"] == info["training"]:  # still that pack
                        return info
            time.sleep(0.2)
        raise AssertionError(f"no actor was training within {WAIT_S} s")


def in_background(task) -> tuple[threading.Thread, list]:
    """`task()` in a thread; what it returned (or raised) lands in the list."""
    result = []

    def run():
        try:
            result.append(task())
        except BaseException as e:  # noqa: BLE001 (the test looks at it)
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def open_files(pid: int) -> set[str]:
    folder = Path(f"/proc/{pid}/fd")
    names = set()
    for fd in folder.iterdir():
        try:
            names.add(os.readlink(fd))
        except OSError:
            pass  # closed meanwhile
    return names


def assert_sound(out: Path) -> None:
    with sqlite3.connect(out) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


# ---- the same records as a local scan ---------------------------------------------------------

@pytest.mark.slow
def test_a_float64_scan_through_ray_equals_a_local_scan_record_for_record(cluster, one_thread, real_cifar_root,
                                                                        tmp_path, capsys):
    job = make_job(TINY, Options(device="cpu", dtype="float64", data_dir=str(real_cifar_root)))
    done = scan_ray(job, tmp_path / "ray.sqlite", 0, 3, device="cpu", stop_flag=StopFlag(), quiet=True)
    printed = capsys.readouterr().out
    assert done == Outcome(True, 3, 3, done.summary) and done.summary.endswith("(n=3)")
    assert "3 of 3 seeds to train" in printed and "2 Ray actor(s), one per CPU" in printed
    assert "goes to the actors through Ray's object store" in printed
    assert "[actor 0] pid " in printed and "[actor 1] pid " in printed
    here = make_job(TINY, Options(device="cpu", dtype="float64", data_dir=str(real_cifar_root)))
    assert scan_here(here, tmp_path / "local.sqlite", 0, 3, stop_flag=StopFlag(), quiet=True).complete
    through_ray, local = committed(tmp_path / "ray.sqlite"), committed(tmp_path / "local.sqlite")
    assert [r.seed for r in through_ray] == [r.seed for r in local] == [0, 1, 2]
    for a, b in zip(through_ray, local):
        assert a.status == "ok" and len(a.predictions) == TINY.test_size and len(a.eval_curve) == TINY.epochs
        assert a.outcome_differences(b) == []  # acc, loss, curves, predictions, logits, pack: identical
        assert a.provenance["dtype"] == b.provenance["dtype"] == "float64"
    assert_sound(tmp_path / "ray.sqlite")


@pytest.mark.slow
def test_a_stopping_rule_that_has_decided_hands_out_no_more_packs(cluster, real_cifar_root, tmp_path):
    """`until()` (what --until-ci passes) true once a seed is stored: the packs in flight finish and
    are committed, no new pack is claimed, the range stays incomplete and no claim is left behind."""
    out = tmp_path / "s.sqlite"

    def decided() -> bool:
        if not out.exists():
            return False
        with Store.open(out) as store:
            return store.progress(0, 10)[0] >= 1

    job = make_job(TINY, Options(device="cpu", data_dir=str(real_cifar_root)))
    done = scan_ray(job, out, 0, 10, device="cpu", stop_flag=StopFlag(), quiet=True, until=decided)
    stored = [r.seed for r in committed(out)]
    assert not done.complete and 1 <= done.stored == len(stored) <= 5  # the first, and at most 2 packs an actor
    assert_sound(out)


# ---- an actor killed mid-pack ---------------------------------------------------------------------

@pytest.mark.slow
def test_an_actor_killed_mid_pack_is_restarted_and_every_seed_is_committed_once(
        cluster, real_cifar_root, tmp_path, capsys, monkeypatch):
    """SIGKILL to an actor's process a second into a pack: Ray restarts it, the driver hands the pack
    out again, and each seed is committed exactly once (counted at the store). Before the kill, the
    actor holds no file of the store open: only the driver writes it."""
    out = tmp_path / "s.sqlite"
    commits, add = [], Store.add

    def counted(store, record, worker=None, **kw):
        new = add(store, record, worker, **kw)
        commits.append((record.seed, new))
        return new

    monkeypatch.setattr(Store, "add", counted)

    def kill():
        info = Actors.training()
        files = open_files(info["pid"])
        os.kill(info["pid"], signal.SIGKILL)
        return info, files

    killer, killed = in_background(kill)
    job = make_job(SHORT, Options(device="cpu", data_dir=str(real_cifar_root)))
    assert scan_ray(job, out, 0, 3, device="cpu", stop_flag=StopFlag(), quiet=True).complete
    killer.join(timeout=WAIT_S)
    (victim, files), printed = killed[0], capsys.readouterr().out
    assert not any(name.startswith(str(out)) for name in files), files  # no store, -wal or -shm
    assert (f"pid {victim['pid']} on {victim['host']}: lost (its process or its node died); Ray restarts it, and "
            f"its packs go out again") in printed
    assert "restarted: pid " in printed
    assert sorted(commits) == [(0, True), (1, True), (2, True)]  # once each, the killed pack's seeds too
    records = committed(out)
    assert [r.seed for r in records] == [0, 1, 2] and all(r.status == "ok" for r in records)
    assert_sound(out)


# ---- Ctrl-C ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_commits_the_packs_in_training_and_the_rerun_completes(cluster, real_cifar_root, tmp_path,
                                                                       capsys):
    """The first SIGINT once both actors train: no pack is handed out any more, the queued one comes
    back untrained, the two training finish and are committed, exit 130; the rerun trains the rest."""
    out = tmp_path / "s.sqlite"

    def interrupt():
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            training = []
            for actor in Actors.now():
                try:
                    training += Actors.hello(actor)["training"] or []
                except ray.exceptions.RayError:
                    pass
            if len(training) == 2:
                os.kill(os.getpid(), signal.SIGINT)
                return sorted(training)
            time.sleep(0.2)
        raise AssertionError(f"the two actors were not both training within {WAIT_S} s")

    signaller, training = in_background(interrupt)
    assert scan.main(smoke(real_cifar_root, out, "--seeds", 3, "--ray", *SMALL_SET)) == 130
    signaller.join(timeout=WAIT_S)
    captured = capsys.readouterr()
    assert "SIGINT: finishing the packs the actors are training" in captured.err
    assert "rerun the same command to resume" in captured.err and "Traceback" not in captured.err
    stopped = committed(out)
    assert [r.seed for r in stopped] == training[0]  # the packs in training, finished; the third never trained
    assert_sound(out)

    assert scan.main(smoke(real_cifar_root, out, "--seeds", 3, "--ray", *SMALL_SET)) == 0
    assert "1 of 3 seeds to train" in capsys.readouterr().out
    done = committed(out)
    assert [r.seed for r in done] == [0, 1, 2] and [r for r in done if r.seed in training[0]] == stopped
    for seed, record in enumerate(done):
        assert_complete(record, seed)


# ---- actors that cannot train ----------------------------------------------------------------------

@pytest.mark.slow
def test_when_every_actor_lacks_the_data_on_its_node_the_scan_is_one_line_and_exit_2(cluster, tmp_path, capsys):
    """ImageNet does not travel: each actor reads --data-dir on its node. Where no node has it, every
    actor refuses, each says why, and the scan ends with that line, exit 2, nothing trained."""
    weights, empty, out = tmp_path / "rn50.pth", tmp_path / "nothing", tmp_path / "s.sqlite"
    weights.write_bytes(b"a file the driver and the actors read alike")
    empty.mkdir()
    argv = ["--preset", "imagenet-rn50", "--weights", weights, "--data-dir", empty, "--device", "cpu", "--seeds", 2,
            "--out", out, "--no-progress", "--ray"]
    assert scan.main(list(map(str, argv))) == 2
    captured = capsys.readouterr()
    assert "[actor 0] refused: no ImageNet split 'train'" in captured.out
    assert "[actor 1] refused: no ImageNet split 'train'" in captured.out
    assert captured.err.startswith("fastseed.scan: error: no ImageNet split 'train'")
    assert len(captured.err.strip().splitlines()) == 1 and committed(out) == []


# ---- how many actors, and refusals --------------------------------------------------------------

def test_one_actor_per_gpu_of_the_cluster_else_one_per_cpu():
    gpu, cpu = {"num_gpus": 1, "num_cpus": 1}, {"num_cpus": 1}
    assert actor_plan("auto", None, {"CPU": 64.0, "GPU": 8.0}) == (8, gpu, "cuda")
    assert actor_plan("cuda", 3, {"CPU": 64.0, "GPU": 8.0}) == (3, gpu, "cuda")
    assert actor_plan("auto", None, {"CPU": 16.0}) == (16, cpu, "cpu")
    assert actor_plan("cpu", None, {"CPU": 16.0, "GPU": 8.0}) == (16, cpu, "cpu")
    assert actor_plan("cpu", 2, {"CPU": 16.0}) == (2, cpu, "cpu")


@pytest.mark.parametrize("device, workers, resources, phrase", [
    ("cuda", None, {"CPU": 8.0}, "the cluster has no GPU"),
    ("cuda:1", None, {"CPU": 8.0, "GPU": 2.0}, "--device cuda:1 with --ray"),
    ("auto", 0, {"CPU": 8.0}, "--workers must be a positive number"),
    ("cpu", None, {"GPU": 1.0}, "the cluster has no CPU"),
])
def test_a_plan_the_cluster_cannot_serve_is_refused(device, workers, resources, phrase):
    with pytest.raises(FastseedError, match=phrase.replace("(", r"\(")):
        actor_plan(device, workers, resources)


@pytest.mark.parametrize("extra, phrase", [
    (["--ray", "127.0.0.1:1"], "--ray 127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1"),
    (["--ray", "ray://127.0.0.1:1"], "--ray ray://127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1"),
    (["--ray", "head-node"], "--ray head-node: expected auto, HOST:PORT or ray://HOST:PORT"),
    (["--ray", "--gpus", "all"], "--gpus and --ray: give one"),
    (["--ray", "--data-dir", "{empty}"], "no CIFAR-10 in"),
])
def test_bad_ray_input_is_one_line_exit_2_and_writes_nothing(extra, phrase, real_cifar_root, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a user's scan: not connected yet
    (tmp_path / "empty").mkdir()
    extra = [str(tmp_path / "empty") if e == "{empty}" else e for e in extra]
    assert scan.main(smoke(real_cifar_root, tmp_path / "s.sqlite", "--seeds", 2) + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastseed.scan: error: ") and phrase in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.sqlite").exists()


def test_without_ray_installed_ray_is_refused_with_the_install_line(real_cifar_root, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert scan.main(smoke(real_cifar_root, tmp_path / "s.sqlite", "--seeds", 2, "--ray")) == 2
    assert capsys.readouterr().err == "fastseed.scan: error: --ray needs Ray: pip install 'fastseed[ray]'\n"
    assert not (tmp_path / "s.sqlite").exists()


# ---- issue #23: a stop while the actors start, and how many start ----------------------------------

@pytest.mark.slow
def test_ctrl_c_while_the_actors_start_stops_with_the_start_up_line_and_130(cluster, real_cifar_root, tmp_path,
                                                                           capsys):
    """Issue #23.5: Ctrl-C while the actors started ended in exit 1 and "2 seeds not trained (0
    worker(s) failed)". The SIGINT goes the moment the scan's actors exist (still starting)."""
    out = tmp_path / "s.sqlite"

    def interrupt():
        deadline = time.monotonic() + WAIT_S
        while not Actors.now():
            assert time.monotonic() < deadline, f"no actor was started within {WAIT_S} s"
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    signaller, _ = in_background(interrupt)
    assert scan.main(smoke(real_cifar_root, out, "--seeds", 3, "--ray")) == 130
    signaller.join(timeout=WAIT_S)
    err = capsys.readouterr().err
    assert err.splitlines() == ["fastseed.scan: SIGINT during start-up: stopped before training any seed"]
    assert committed(out) == []
    assert_sound(out)


def test_actors_are_capped_by_the_seeds_left_and_the_clusters_slots_in_one_line():
    """Issue #23.1 for Ray: actors beyond the cluster's CPUs (or GPUs) would wait unplaced all along."""
    from fastseed.workers.ray import capped_actors
    lines = []
    assert capped_actors(1000, "cpu", 2, {"CPU": 8.0}, lines.append) == 2
    assert capped_actors(1000, "cpu", 100, {"CPU": 8.0}, lines.append) == 8
    assert capped_actors(16, "cuda", 100, {"CPU": 64.0, "GPU": 4.0}, lines.append) == 4
    assert capped_actors(3, "cpu", 100, {"CPU": 8.0}, lines.append) == 3
    assert lines == ["1000 actors asked for, starting 2: 2 seed(s) left to train",
                     "1000 actors asked for, starting 8: 8 CPU(s) in the cluster",
                     "16 actors asked for, starting 4: 4 GPU(s) in the cluster"]
