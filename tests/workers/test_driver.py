"""The Ray driver (fastseed/workers/driver.py) without a Ray cluster: Ray stood in by this process, an
actor being the Trainer itself and a call running when the driver waits on it. The driver claims,
hands out and commits as on a cluster, so the quick tier runs it; what only a cluster shows (an actor
killed, Ctrl-C, actors that refuse) is tests/workers/test_ray.py's, slow.

A tiny CIFAR protocol in float64 (real CIFAR-10, 200 images: well under a second a seed)."""

import pytest
import torch

from fastseed.jobs import Options, make_job
from fastseed.recipe.presets import get_preset
from fastseed.workers import ray as on_ray
from fastseed.workers.local import Outcome, StopFlag, scan_here
from scans import committed

TINY = get_preset("smoke").variant(width=0.0625, train_size=200, test_size=200, batch_size=100, chunk_size=100,
                                   epochs=2, eval_batch_size=200)


class Ref:
    """An ObjectRef: the call, run when the driver waits on it."""

    def __init__(self, kind: str, run):
        self.kind, self.run, self.value = kind, run, None


class Method:
    def __init__(self, kind: str, function):
        self.kind, self.function = kind, function

    def options(self, **_):
        return self

    def remote(self, *args) -> Ref:
        if self.kind == "news":
            args = (0,)  # held for seconds on a cluster; here it answers at once with what was said
        ref = Ref(self.kind, lambda: self.function(*args))
        if self.kind == "halt":  # a side call: Ray runs it beside the others, nobody waits on it
            ref.value = ref.run()
        return ref


class Handle:
    def __init__(self, actor):
        self.actor = actor

    def __getattr__(self, kind: str) -> Method:
        return Method(kind, getattr(self.actor, kind))


class ActorClass:
    def __init__(self, cls):
        self.cls = cls

    def options(self, **_):
        return self

    def remote(self, *args) -> Handle:
        return Handle(self.cls(*args))


class InProcessRay:
    """What the driver asks of Ray, answered in this process by a 2-CPU 'cluster'."""

    def __init__(self):
        self.killed = 0

    def cluster_resources(self) -> dict:
        return {"CPU": 2.0}

    available_resources = cluster_resources

    def put(self, value):
        return value

    def remote(self, **_):
        return ActorClass

    def wait(self, refs, num_returns, timeout):
        ref = next((r for r in refs if r.kind != "news"), refs[0])  # news only when nothing else is asked
        ref.value = ref.run()
        return [ref], [r for r in refs if r is not ref]

    def get(self, ref):
        return ref.value

    def kill(self, handle, no_restart):
        self.killed += 1


@pytest.fixture
def one_thread():
    """A CPU actor sets one torch thread (here: this process's); the local scan compared runs alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_driver_commits_every_seed_once_with_the_records_of_a_local_scan(one_thread, real_cifar_root,
                                                                             tmp_path, monkeypatch, capsys):
    ray = InProcessRay()
    monkeypatch.setattr(on_ray, "reach", lambda address: (ray, False))
    job = make_job(TINY, Options(device="cpu", dtype="float64", data_dir=str(real_cifar_root)))
    done = on_ray.scan_ray(job, tmp_path / "ray.sqlite", 0, 5, device="cpu", stop_flag=StopFlag(), quiet=True)
    printed = capsys.readouterr().out
    assert done == Outcome(True, 5, 5, done.summary) and done.summary.endswith("(n=5)")
    assert "5 of 5 seeds to train" in printed and "2 Ray actor(s), one per CPU" in printed
    assert "[actor 0] pid " in printed and "[actor 1] pid " in printed
    assert ray.killed == 2  # the driver ends every actor it started
    here = make_job(TINY, Options(device="cpu", dtype="float64", data_dir=str(real_cifar_root)))
    assert scan_here(here, tmp_path / "local.sqlite", 0, 5, stop_flag=StopFlag(), quiet=True).complete
    through_ray, local = committed(tmp_path / "ray.sqlite"), committed(tmp_path / "local.sqlite")
    assert [r.seed for r in through_ray] == [r.seed for r in local] == [0, 1, 2, 3, 4]
    for a, b in zip(through_ray, local):
        assert a.status == "ok" and a.outcome_differences(b) == []
