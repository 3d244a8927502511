"""Shared fixtures: the real CIFAR-10 (assembled once from ../shared/cifar10) and small synthetic sets."""

import hashlib
import os
from pathlib import Path

import pytest

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
