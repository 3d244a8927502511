"""A long seed's training state on disk, so that a kill, a preemption or a Ctrl-C costs minutes, not hours.

An ImageNet seed trains for hours. `train_finetune(..., checkpoint=PATH)` saves everything its record
still depends on (model, optimizer, scheduler, the position in the run, the running loss/accuracy sums,
the curves and the last validation so far, the wall time spent) every few minutes and when asked to
stop; run again with the same path, it continues from there and returns the record an uninterrupted run
returns (bit-identical on the CPU: every random draw is keyed by (seed, stream, phase, step), so the
data position is two numbers).

    path = checkpoint_path(store_path, protocol.hash, seed)   # <store>.checkpoints/<hash12>-<seed>.pt
    record = train_finetune(..., checkpoint=path, should_stop=lambda: bool(stop))
    store.add(record); remove_checkpoint(path)                 # only once the record is committed

Writes are atomic (a temp file in the same folder, fsync, os.replace, fsync of the folder): a crash at
any moment leaves the previous checkpoint or the new one, never a mix. A checkpoint names the run it
belongs to (protocol hash, which covers the weight file's digest; seed and fixed streams; the data set);
resuming from one of another run is refused in one line (FastseedError) rather than ignored, since it
may hold hours of training and only a misplaced file can get there: the user decides to delete it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from fastseed import FastseedError
from fastseed.seeds import Seed

FORMAT = 1  # bump when the state's layout changes: an old checkpoint is then refused, not misread
log = logging.getLogger(__name__)


class SeedStopped(KeyboardInterrupt):
    """Training stopped on request (`should_stop`) after `step` of `total` steps; the state is in
    `checkpoint` (None when the run had no checkpoint path or the save failed).

    A KeyboardInterrupt on purpose: a caller that already treats Ctrl-C as "stop, keep what is
    committed, rerun to resume" handles it unchanged, and no `except Exception` swallows it."""

    def __init__(self, seed: int, step: int, total: int, checkpoint: Path | None):
        self.seed, self.step, self.total, self.checkpoint = seed, step, total, checkpoint
        where = f"saved in {checkpoint}" if checkpoint else "not saved"
        super().__init__(f"seed {seed} stopped at step {step} of {total}, {where}")


def checkpoint_path(store: str | Path, protocol_hash: str, seed: int) -> Path:
    """Where a scan keeps seed `seed`'s checkpoint: a folder beside the store, one file per seed."""
    return Path(f"{store}.checkpoints") / f"{protocol_hash[:12]}-{seed}.pt"


def _index_digest(index) -> str:
    """The data set as training sees it: file names (not their folder, which may move), labels, sizes."""
    h = hashlib.blake2b(digest_size=8)
    h.update("\n".join(os.path.basename(f) for f in index.files).encode())
    h.update(np.ascontiguousarray(index.labels, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(index.sizes, dtype=np.int32).tobytes())
    return h.hexdigest()


def run_identity(protocol, seed: Seed, data) -> dict:
    """What a checkpoint must match to be resumed: the same protocol (and weights), seed and data."""
    # weights before the hash (which covers them): other weights are then named as such
    return {"format": FORMAT, "weights": protocol.weights, "protocol_hash": protocol.hash, "seed": seed.value,
            "fixed": sorted(seed.fixed), "fix_seed": seed.fix_seed,
            "train": _index_digest(data.train), "val": _index_digest(data.val)}


def _temp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` to `path` atomically; on any failure the previous file is untouched (and no temp file
    is left behind) and the error is raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # the rename itself is durable once the folder is synced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # folders cannot be opened or synced on some systems; the rename is still atomic
        pass


def load_checkpoint(path: str | Path, identity: dict) -> dict | None:
    """The state saved at `path`, None when there is none; FastseedError when it is unreadable or belongs
    to another run than `identity` (see run_identity)."""
    path = Path(path)
    for stale in _temp_files(path):  # a write cut short by a kill: never a checkpoint
        stale.unlink(missing_ok=True)
    if not path.exists():
        return None
    again = f"remove it to train seed {identity['seed']} from the start"
    try:
        # mmap: the tensors are read when used, so a checkpoint of another run is refused at once
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch.load fails on junk with whatever its parser meets first
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FastseedError(f"checkpoint {path} is unreadable ({first}); {again}") from None
    theirs = state.get("identity", {}) if isinstance(state, dict) else {}
    for key, ours in identity.items():
        if theirs.get(key) != ours:
            show = lambda v: v[:12] if key == "protocol_hash" and isinstance(v, str) else v  # noqa: E731
            raise FastseedError(f"checkpoint {path} is of another run ({key} {show(theirs.get(key))!r}, this run "
                                f"{show(ours)!r}); {again}")
    return state


def remove_checkpoint(path: str | Path) -> None:
    """Delete a seed's checkpoint (and any temp file of a cut-short write), and the folder once empty.
    Call it after the seed's record is committed, never before."""
    path = Path(path)
    for p in [path, *_temp_files(path)]:
        p.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # other seeds' checkpoints are still there, or it is gone already
        pass
