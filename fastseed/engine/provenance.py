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
    """fastseed version and, when run from a git checkout, its commit and whether it was modified."""
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
    return info


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def provenance(device: torch.device, dtype: torch.dtype | None, *, started: datetime, **extra) -> dict:
    return {
        **code_version(),
        "device": device_name(device),
        "device_type": device.type,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),  # None: the user's code chose
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
