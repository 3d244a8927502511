"""A training function's study on a Ray cluster (`--ray`): the acceptance of issue 22 at the command line
(a 200-seed study of a function in a file of the user's, resumed after its driver is killed with -9,
a seed replayed, a merge, the report) and the same way of running through the Python API. One local
cluster of 2 CPUs serves both; the scans are processes of their own, which reach it by its address."""

import signal
import sys
from pathlib import Path

import pytest
import ray

from fastseed import study

sys.path.insert(0, str(Path(__file__).parent))
from test_train_scan import REPO, assert_resumed_replayed_merged_and_reported, kill_minus_9_once_committed, \
    scan_command, stored, user_study


@pytest.fixture(scope="module")
def ray_address():
    """The cluster's address; torn down with the module (tests/workers/test_ray.py starts its own)."""
    if ray.is_initialized():  # a cluster this process is connected to already serves as well
        yield ray.get_runtime_context().gcs_address
        return
    term = signal.getsignal(signal.SIGTERM)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    signal.signal(signal.SIGTERM, term)  # ray.init installs its own
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.mark.slow
def test_a_200_seed_study_on_ray_resumes_after_its_driver_is_killed(tmp_path, ray_address):
    folder = tmp_path / "user"
    spec = user_study(folder)
    out = folder / "study.sqlite"
    argv = scan_command(spec, out, "--ray", ray_address)
    before = kill_minus_9_once_committed(argv, folder, out, at_least=8)
    assert 8 <= len(before) < 200
    assert_resumed_replayed_merged_and_reported(argv, folder, out, before)


@pytest.mark.slow
def test_a_study_from_python_on_ray(tmp_path, monkeypatch, ray_address):
    monkeypatch.chdir(REPO)
    s = study.run("examples.digits_sklearn:train", set={"n_estimators": 3}, seeds=12, ray=ray_address,
                  device="cpu", out=tmp_path / "ray.sqlite")
    records = stored(s.path)
    assert [r.seed for r in records] == list(range(12)) and {r.status for r in records} == {"ok"}
    assert study.replay(s, 11).identical
