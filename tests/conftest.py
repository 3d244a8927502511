"""Shared fixtures: the real CIFAR-10 (assembled once from ../shared/cifar10) and one real smoke scan
for the tests that only read a store. The modules beside this file that the tests share (processes.py,
scans.py) import by name."""

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from processes import run  # noqa: E402
from scans import SMALL_SET, scan_argv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "cifar10"
ARCHIVE = "cifar-10-binary.tar.gz"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _official_archive_sha() -> str | None:
    sums = SHARED / "SHA256SUMS"
    if not sums.exists():
        return None
    for line in sums.read_text().splitlines():
        digest, name = line.split()
        if name == ARCHIVE:
            return digest
    return None


def _find_real_root() -> Path | None:
    """A folder holding the real CIFAR-10 in an official layout, or None."""
    for root in (os.environ.get("FASTSEED_DATA"), REPO / "data"):
        if root and any((Path(root) / n).exists() for n in
                        (ARCHIVE, "cifar-10-batches-bin", "cifar-10-python.tar.gz", "cifar-10-batches-py")):
            return Path(root)
    parts = sorted(SHARED.glob(ARCHIVE + ".part-*"))
    if not parts:
        return None
    cache = REPO / "tests" / ".cache" / "cifar10"
    target = cache / ARCHIVE
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for p in parts:
                out.write(p.read_bytes())
        want = _official_archive_sha()
        if want and _sha256(tmp) != want:
            tmp.unlink()
            raise RuntimeError(f"assembled {ARCHIVE} from {SHARED} does not match SHA256SUMS")
        tmp.rename(target)
    return cache


@pytest.fixture(scope="session")
def real_cifar_root() -> Path:
    """Folder with the real, official CIFAR-10 binary archive (CI always has it via ../shared)."""
    root = _find_real_root()
    if root is None:
        if os.environ.get("CI"):  # CI always has ../shared: missing data there is a failure, not a skip
            pytest.fail("real CIFAR-10 not found in CI: ../shared/cifar10 is missing")
        pytest.skip("real CIFAR-10 not found: set FASTSEED_DATA or provide ../shared/cifar10")
    return root


@dataclass(frozen=True)
class SmokeScan:
    argv: list                             # the command, to run again
    out: Path                              # its store
    csv: Path                              # its --csv table
    result: subprocess.CompletedProcess    # how it ended, what it printed


@pytest.fixture(scope="session")
def smoke_scan(real_cifar_root, tmp_path_factory) -> SmokeScan:
    """One real scan, as a user runs it, of smoke at small scale (tests/scans.py) on the real CIFAR-10:
    seeds 0 and 1 trained as one fused pack, seed 2 alone. Trained once a session for the tests of the
    scan, the report and the replay, which only read it (a test that changes a store changes a copy)."""
    folder = tmp_path_factory.mktemp("smoke")
    argv = scan_argv(real_cifar_root, folder / "s.sqlite", "--seeds", 3, "--pack", 2, "--strategy", "fused",
                     "--csv", folder / "s.csv", *SMALL_SET)
    # this process's thread count, not one thread: the replay tests retrain its packs here and compare
    # them bit for bit (a sum split over other threads may round otherwise)
    result = run(argv, folder, one_thread=False)
    assert result.returncode == 0, result.stderr
    return SmokeScan(argv, folder / "s.sqlite", folder / "s.csv", result)
