"""Checkpoint files: written atomically (a crash mid-write leaves the previous one), found where a scan
looks, refused when they belong to another run, removed with their folder once the record is in."""

import os

import pytest
import torch

import fastseed.engine.checkpoint as checkpoint
from fastseed import FastseedError
from fastseed.engine.checkpoint import checkpoint_path, load_checkpoint, remove_checkpoint, save_checkpoint

IDENTITY = {"format": checkpoint.FORMAT, "protocol_hash": "ab" * 32, "seed": 3}


def state(step):
    return {"identity": IDENTITY, "step": step, "model": {"w": torch.full((1000,), float(step))}}


def test_a_checkpoint_lives_beside_the_store_one_file_per_seed(tmp_path):
    path = checkpoint_path(tmp_path / "s.sqlite", "0123456789abcdef" * 4, 17)
    assert path == tmp_path / "s.sqlite.checkpoints" / "0123456789ab-17.pt"


def test_save_then_load_round_trips(tmp_path):
    path = tmp_path / "c" / "x.pt"
    assert load_checkpoint(path, IDENTITY) is None
    save_checkpoint(path, state(4))
    loaded = load_checkpoint(path, IDENTITY)
    assert loaded["step"] == 4 and torch.equal(loaded["model"]["w"], state(4)["model"]["w"])
    assert os.listdir(tmp_path / "c") == ["x.pt"]  # no temp file left


@pytest.mark.parametrize("fail", ["replace", "write"])
def test_a_crash_during_a_write_leaves_the_previous_checkpoint_intact(fail, tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    save_checkpoint(path, state(1))
    if fail == "replace":
        def replace(src, dst):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(checkpoint.os, "replace", replace)
    else:  # half the file is written, then the process "dies" (an exception unwinds it)
        def save(obj, f):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt
        monkeypatch.setattr(checkpoint.torch, "save", save)
    with pytest.raises(OSError if fail == "replace" else KeyboardInterrupt):
        save_checkpoint(path, state(2))
    monkeypatch.undo()
    assert load_checkpoint(path, IDENTITY)["step"] == 1
    assert os.listdir(tmp_path) == ["x.pt"]


def test_a_temp_file_left_by_a_kill_is_never_read_and_is_cleaned_up(tmp_path):
    path = tmp_path / "x.pt"
    save_checkpoint(path, state(1))
    stale = tmp_path / ".x.pt.12345.tmp"  # what SIGKILL during a write leaves
    stale.write_bytes(b"PK\x03\x04 cut short")
    assert load_checkpoint(path, IDENTITY)["step"] == 1 and not stale.exists()


def test_a_checkpoint_of_another_run_or_an_unreadable_one_is_refused_in_one_line(tmp_path):
    path = tmp_path / "x.pt"
    save_checkpoint(path, state(1))
    for key, value in (("seed", 4), ("protocol_hash", "cd" * 32)):
        with pytest.raises(FastseedError) as e:
            load_checkpoint(path, {**IDENTITY, key: value})
        assert key in str(e.value) and "remove it" in str(e.value) and "\n" not in str(e.value)
    assert "'abababababab'" in str(e.value)  # hashes are shown as their first 12 digits
    assert load_checkpoint(path, IDENTITY)["step"] == 1  # refusing never deletes
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(FastseedError, match="unreadable"):
        load_checkpoint(path, IDENTITY)


def test_remove_deletes_the_file_its_temp_files_and_the_folder_once_empty(tmp_path):
    store = tmp_path / "s.sqlite"
    a, b = checkpoint_path(store, "ab" * 32, 0), checkpoint_path(store, "ab" * 32, 1)
    save_checkpoint(a, state(1))
    save_checkpoint(b, state(1))
    (a.parent / f".{a.name}.999.tmp").write_bytes(b"x")
    remove_checkpoint(a)
    assert os.listdir(a.parent) == [b.name]  # another seed's checkpoint stays, and so does the folder
    remove_checkpoint(b)
    assert not a.parent.exists()
    remove_checkpoint(b)  # already gone: nothing to do
