"""What a record needs to be replayed and trusted: code version, device, library versions."""

from __future__ import annotations

import functools
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

import fastseed


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """fastseed version and, when run from a git checkout, its commit and whether it was modified. On a
    machine without git (a GPU box the checkout was copied to), the commit is read from the .git files
    and whether it was modified stays unknown (None)."""
    root = Path(fastseed.__file__).resolve().parents[1]
    info = {"fastseed": fastseed.__version__, "commit": None, "dirty": None}
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,
                                        timeout=10)
        head = run("rev-parse", "HEAD")
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
            info["dirty"] = bool(run("status", "--porcelain", "--untracked-files=no", "--", "fastseed").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    if info["commit"] is None:
        info["commit"] = read_commit(root)
    return info


def read_commit(root: Path) -> str | None:
    """HEAD's commit read from the .git files themselves, without git: a plain .git folder or a
    worktree's `gitdir:` file, loose or packed refs. None when there is no repository."""
    git = root / ".git"
    try:
        if git.is_file():
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = git / "commondir"
        folders = [git] + ([(git / common.read_text().strip()).resolve()] if common.is_file() else [])
        for folder in folders:
            if (folder / ref).is_file():
                return (folder / ref).read_text().strip()
            packed = folder / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except (OSError, IndexError):
        pass
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def cpu_layout() -> dict:
    """What changes a CPU result beyond the pack and the dtype: how many threads split each sum (a
    float32 sum split in 2 rounds otherwise than in 1) and the vector kernels the CPU runs (AVX2 or
    AVX512 sum in other orders). Part of a record's layout (store/record.py: Record.layout), which
    replay sets up again and merge compares."""
    return {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def provenance(device: torch.device, dtype: torch.dtype | None, *, started: datetime, **extra) -> dict:
    return {
        **code_version(),
        "device": device_name(device),
        "device_type": device.type,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),  # None: the user's code chose
        **cpu_layout(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
