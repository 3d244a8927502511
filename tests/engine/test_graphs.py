"""The GPU path on the CPU: each preset's pack is captured ONCE for the whole run and its replays train
exactly today's records; a failed capture leaves the stream as it found it; an out-of-memory capture is
an out-of-memory; a recapture (a user hook under Adam) gets a fresh pool; the device context; the one
rule for compile and graphs. Through engine.graphs.RecordedGraphs, a stand-in of torch.cuda's graph
API with a CUDA graph's semantics (a capture runs nothing, a replay re-runs the recorded kernels with
the numbers they were recorded with)."""

import contextlib
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from fastseed import FastseedError
from fastseed.engine import autopack, train
from fastseed.engine.graphs import RecordedGraphs, inductor_graphs, use_graphs
from fastseed.engine.train import train_pack

sys.path.insert(0, str(Path(__file__).parent))
import golden  # noqa: E402
from test_golden import assert_matches_golden, tiered  # noqa: E402

GOLDEN = json.loads(golden.FILE.read_text())
MAX_CAPTURES = {"fast94": 2}  # the bound: fast94 may capture twice (its whitening bias freezes)


@pytest.fixture(autouse=True)
def adam_captures_on_the_cpu(monkeypatch):
    """torch's capturable Adam (step count and lr on the device) refuses the CPU by a device check only;
    the stand-in captures on the CPU, so the check lets it through here."""
    adam = importlib.import_module("torch.optim.adam")
    supported = adam._get_capturable_supported_devices
    monkeypatch.setattr(adam, "_get_capturable_supported_devices", lambda *a: [*supported(*a), "cpu"])


def graphed(name, api=None, **kw):
    protocol, shape = golden.cases()[name]
    api = api or RecordedGraphs()
    records = train_pack(protocol, golden.SEEDS, golden.data_for(shape), "cpu", dtype="float64", strategy="fused",
                         graph_api=api, **kw)
    return records, api


# --- the stand-in has a CUDA graph's semantics ---------------------------------------------------

def test_a_capture_runs_nothing_and_a_replay_uses_what_it_recorded():
    api, x, t = RecordedGraphs(), torch.zeros(3), torch.tensor(1.0)
    lr = 0.5  # a Python number read while capturing: baked in
    graph = api.CUDAGraph()
    graph.capture_begin(pool=api.graph_pool_handle())
    x.add_(t * lr)
    graph.capture_end()
    assert torch.equal(x, torch.zeros(3))  # nothing ran
    lr = 100.0  # noqa: F841 -- too late: the capture holds 0.5
    t.fill_(2.0)  # a tensor is read at each replay
    graph.replay()
    graph.replay()
    assert torch.equal(x, torch.full((3,), 2.0)) and (api.captures, api.replays) == (1, 2)


def test_a_host_sync_while_capturing_fails():
    api, x = RecordedGraphs(), torch.ones(2)
    graph = api.CUDAGraph()
    graph.capture_begin(pool=api.graph_pool_handle())
    with pytest.raises(RuntimeError, match="not permitted when stream is capturing"):
        x.sum().item()
    graph.capture_end()


def test_a_pool_whose_graphs_are_gone_cannot_take_a_capture():
    """What the engine did before: one pool for the pack, the old graph dropped, a recapture into it."""
    api = RecordedGraphs()
    pool = api.graph_pool_handle()
    graph = api.CUDAGraph()
    graph.capture_begin(pool=pool)
    graph.capture_end()
    del graph
    with pytest.raises(RuntimeError, match="create_or_incref_pool"):
        api.CUDAGraph().capture_begin(pool=pool)


# --- one capture per pack, today's records --------------------------------------------------------

@pytest.mark.parametrize("name", tiered(golden.cases(), quick=("fast94",)))  # its per-step lr, lookahead, freeze
def test_each_preset_captures_once_per_pack_and_trains_todays_records(name):
    records, api = graphed(name)
    assert 1 <= api.captures <= MAX_CAPTURES.get(name, 1), f"{name}: {api.captures} captures"
    assert_matches_golden(records, GOLDEN["cases"][name]["records"])
    steps = records[0].provenance["steps"]
    assert steps["graphed"] and steps["captures"] == api.captures and steps["replays"] == api.replays > 0
    assert steps["failure"] is None and all(r.provenance["steps"] == steps for r in records)
    assert set(api.devices) == {torch.device("cpu")}  # every stream/sync call named the pack's device


def test_a_failed_capture_leaves_the_stream_as_it_found_it_and_the_pack_trains_eagerly(capfd):
    api = RecordedGraphs()
    api.fail_capture = RuntimeError("CUDA error: operation failed due to a previous error during capture")
    records, _ = graphed("smoke", api)
    assert api.current is api.default  # not the capture stream
    assert_matches_golden(records, GOLDEN["cases"]["smoke"]["records"])
    steps = records[0].provenance["steps"]
    assert not steps["graphed"] and steps["captures"] == 0 and "previous error during capture" in steps["failure"]
    assert capfd.readouterr().err.count("CUDA graph capture failed") == 1


def test_an_out_of_memory_capture_is_an_out_of_memory():
    api = RecordedGraphs()
    api.fail_capture = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(torch.OutOfMemoryError):
        graphed("smoke", api)
    assert api.current is api.default
    assert autopack.is_oom(torch.OutOfMemoryError("CUDA out of memory"))


@pytest.mark.slow
def test_a_hook_that_adam_cannot_switch_recaptures_into_fresh_pools():
    """fast94's whitening bias under Adam: frozen by requires_grad, so the step is captured again once
    it freezes (one eager step first, which makes Adam's state for what now trains); each capture in a
    pool of its own. The records are the eager run's."""
    protocol, shape = golden.cases()["fast94"]
    adam = protocol.variant(optimizer="adam", lr=1e-3, weight_decay=0.0, hyper_units="torch", bias_scaler=1.0,
                            schedule="constant", lr_triangle=(), lookahead_every=0)
    data = golden.data_for(shape)
    api = RecordedGraphs()
    graphed_records = train_pack(adam, golden.SEEDS, data, "cpu", dtype="float64", graph_api=api)
    eager = train_pack(adam, golden.SEEDS, data, "cpu", dtype="float64")
    assert api.captures == 2 and len(api.pools) == 2
    assert_matches_golden(graphed_records, [golden.outcome(r) for r in eager])


# --- the device context, the compile rule ---------------------------------------------------------

@pytest.fixture
def device_context(monkeypatch):
    """torch.cuda.device on a machine without a GPU: the devices entered, None when left."""
    entered = []

    @contextlib.contextmanager
    def device(d):
        entered.append(torch.device(d))
        yield
        entered.append(None)

    monkeypatch.setattr(torch.cuda, "device", device)
    return entered


def test_a_pack_trains_under_its_own_device_context(device_context, monkeypatch):
    inside = []
    monkeypatch.setattr(train, "train_group", lambda *a, **kw: inside.append((list(device_context), a[3])) or [])
    protocol = golden.cases()["smoke"][0]
    train_pack(protocol, [0, 1], None, "cuda:3", graphs=False)
    assert inside == [([torch.device("cuda:3")], torch.device("cuda:3"))] and device_context[-1] is None


def test_autopack_measures_under_the_devices_context(device_context, monkeypatch):
    for name in ("empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 1 << 30)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: (4 << 30, 8 << 30))
    timed = []

    def time_pack(protocol, data, device, dtype, strategy, k, graphs, steps=6, compile=None):
        timed.append((list(device_context), k, graphs, compile))
        return 1.0 / k

    monkeypatch.setattr(autopack, "time_pack", time_pack)
    protocol = golden.cases()["smoke"][0]
    k = autopack.choose_pack(protocol, None, "cuda:2", torch.float16, "fused", True, log=lambda s: None,
                             compile="max-autotune-no-cudagraphs")
    assert k == 2  # 3.2 GiB usable at 1 GiB a seed: candidates 1 and 2
    assert [t[1] for t in timed] == [1, 1, 2]
    assert all(t[0] == [torch.device("cuda:2")] and t[2:] == (True, "max-autotune-no-cudagraphs") for t in timed)


def test_compile_modes_with_cuda_graphs_of_their_own_run_without_fastseeds():
    assert [inductor_graphs(m) for m in (None, "default", "reduce-overhead", "max-autotune",
                                         "max-autotune-no-cudagraphs")] == [False, False, True, True, False]
    cuda = torch.device("cuda:1")
    assert use_graphs(cuda, True) and use_graphs(cuda, True, compile="default")
    assert not use_graphs(cuda, True, compile="reduce-overhead") and not use_graphs(cuda, True, compile="max-autotune")
    assert not use_graphs(cuda, True, asked=False) and not use_graphs(cuda, False)  # --no-graphs; sequential
    assert not use_graphs(torch.device("cpu"), True)
    protocol = golden.cases()["smoke"][0]
    with pytest.raises(FastseedError, match="captures CUDA graphs of its own"):
        train_pack(protocol, [0], None, "cpu", graphs=True, graph_api=RecordedGraphs(), compile="reduce-overhead")
