"""Issue #15 items 3-4 at the command line: an ImageNet scan checkpoints the seed in flight beside its
store; the first Ctrl-C saves it and stops at once (exit 130, the checkpoint kept, the seed released);
the rerun resumes it and stores the record an uninterrupted scan stores (bit for bit on the CPU), then
removes the checkpoint. The real ResNet50 on a few synthetic JPEGs at 64 pixels, 8 steps a phase."""

import signal
import sys

import pytest
import torch

from fastseed import scan
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.engine.checkpoint import checkpoint_path
from fastseed.models.imagenet import build_backbone
from fastseed.replay import COMPARED
from fastseed.store import Store
from processes import Process

STOP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def argv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagenet")
    write_imagenet_folder(folder / "data", classes=3, train_per_class=4, val_per_class=2, size=(96, 72))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = build_backbone("resnet50").state_dict()
    torch.save(state | {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}, folder / "w.pth")
    return ["--preset", "imagenet-rn50", "--weights", str(folder / "w.pth"), "--data-dir", str(folder / "data"),
            "--classes", "3", "--limit-steps", "8", "--limit-batch", "4", "--set", "image_size=64",
            "--set", "eval_batch_size=4", "--device", "cpu", "--loader-threads", "1", "--seeds", "1"]


def records(path):
    with Store.open(path) as store:
        return store.records(), store.protocol_hash


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_seed_in_flight_and_the_rerun_resumes_it_to_the_same_record(argv, tmp_path, capsys):
    out = tmp_path / "i.sqlite"
    folder = out.with_name(out.name + ".checkpoints")
    # this process's thread count: the rerun below resumes in this process and must give the same sums
    with Process([sys.executable, "-m", "fastseed.scan", *argv, "--out", out, "--no-progress",
                  "--checkpoint-every", "0.0001"],  # a checkpoint after every step
                 tmp_path, name="scan", one_thread=False) as first:
        first.wait_until(lambda: list(folder.glob("*.pt")), "a checkpoint", timeout=300)
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=STOP_TIMEOUT_S) == 130
    printed, errors = first.stdout_text(), first.stderr_text()
    assert "SIGINT: checkpointing the seed in flight, then stopping" in errors and "Traceback" not in errors
    assert "rerun the same command to resume" in errors
    stored, protocol_hash = records(out)
    assert stored == []
    saved = checkpoint_path(out, protocol_hash, 0)
    assert list(folder.iterdir()) == [saved]
    state = torch.load(saved, weights_only=True)
    step = 8 * state["phase"] + state["step"]
    assert 1 <= step < 16 and f"seed 0 stopped at step {step} of 16, saved in {saved}" in printed

    assert scan.main([*argv, "--out", str(out), "--no-progress"]) == 0
    resumed = capsys.readouterr().out
    assert f"seed 0: resuming from its checkpoint {saved}" in resumed and "1 of 1 seeds to train" in resumed
    assert "claimed by other workers" not in resumed  # the stopped scan released the seed
    assert not folder.exists()  # removed once the record was committed
    assert scan.main([*argv, "--out", str(tmp_path / "ref.sqlite"), "--no-progress"]) == 0
    (record,), _ = records(out)
    (reference,), _ = records(tmp_path / "ref.sqlite")
    assert record.status == "ok"
    for field in COMPARED:
        assert getattr(record, field) == getattr(reference, field), field
