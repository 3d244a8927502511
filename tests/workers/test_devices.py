"""Which physical GPUs `--gpus` gives its workers, on a pretend machine: an inherited CUDA_VISIBLE_DEVICES
(Slurm, a shared box) is honoured — `--gpus all` under CUDA_VISIBLE_DEVICES=4,5 starts its children on 4
and 5, never on 0 and 1 — CUDA_DEVICE_ORDER reaches the children unchanged, and the parent names the
GPUs it uses."""

import json
import types

import pytest
import torch

from fastseed import FastseedError
from fastseed.workers import pool
from fastseed.workers.pool import gpu_line, pool_devices, visible_gpu

SPEC = {"options": {"device": "auto"}, "worker": "w"}


@pytest.fixture
def machine(monkeypatch):
    """A node whose processes see `count` GPUs (as CUDA_VISIBLE_DEVICES leaves them), and a Popen that
    records the children it is asked to start instead of starting them."""
    started = []

    class Child:
        def __init__(self, argv, env, **kw):
            started.append((json.loads(argv[-1]), env))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pool.subprocess, "Popen", Child)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)

    def see(count: int, visible: str | None = None, order: str | None = None):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        for name, value in (("CUDA_VISIBLE_DEVICES", visible), ("CUDA_DEVICE_ORDER", order)):
            if value is not None:
                monkeypatch.setenv(name, value)
        return started

    return see


def spawn_all(gpus: str) -> None:
    for device in pool_devices(gpus, None, "auto"):
        pool._spawn(device, device, SPEC)


def test_gpus_under_an_inherited_cuda_visible_devices_start_children_on_those_gpus(machine):
    started = machine(2, visible="4,5", order="PCI_BUS_ID")
    spawn_all("all")
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["4", "5"]
    assert all(env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for _, env in started)  # the entries mean the same GPUs
    assert all(spec["options"]["device"] == "cuda" for spec, _ in started)  # each sees its one GPU as cuda:0


def test_a_subset_of_the_visible_gpus_maps_through_the_list_too(machine):
    started = machine(4, visible="2,3,6,7")
    spawn_all("3,1")
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["7", "3"]
    uuids = "GPU-8f1e2a9c-0000-4000-8000-000000000001,MIG-5c3d-0002"
    started = machine(2, visible=uuids)
    started.clear()
    spawn_all("2")
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == uuids.split(",")


def test_without_an_inherited_list_the_index_is_the_gpu(machine):
    started = machine(4)
    spawn_all("2")
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["0", "1"]
    assert "CUDA_DEVICE_ORDER" not in started[0][1]  # nothing invented: CUDA's own default holds for both
    assert visible_gpu(3, {}) == "3"
    with pytest.raises(FastseedError, match="has no entry 2"):
        visible_gpu(2, {"CUDA_VISIBLE_DEVICES": "4,5"})


def test_the_parent_names_the_physical_gpus(monkeypatch):
    props = {0: types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", uuid="8f1e2a9c", pci_domain_id=0, pci_bus_id=0x41,
                                      pci_device_id=0),
             1: types.SimpleNamespace(name="NVIDIA H100 80GB HBM3")}  # an older torch: no uuid, no PCI ids
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    line = gpu_line(["cuda:0", "cuda:1"], {"CUDA_VISIBLE_DEVICES": "4,5", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert line == ("GPUs: cuda:0 = GPU 4 (NVIDIA H100 80GB HBM3, GPU-8f1e2a9c, PCI 0000:41:00.0); "
                    "cuda:1 = GPU 5 (NVIDIA H100 80GB HBM3); CUDA_DEVICE_ORDER=PCI_BUS_ID; "
                    "inherited CUDA_VISIBLE_DEVICES=4,5")
    assert "FASTEST_FIRST" in gpu_line(["cuda:1"], {})
    assert gpu_line(["cpu", "cpu"], {}) is None
