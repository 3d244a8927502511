"""A small CIFAR-like data set, and writers of the official archive layouts, for tests without the real one.

The writers produce byte-for-byte the layouts `load_cifar10` reads (names, member paths, pickle dicts with
bytes keys at protocol 2, as the official files have), so every reader path runs on synthetic data too.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from fastseed.data.cifar import CLASSES, FORMATS, RECORD, Cifar10, batch_digest, record_bytes


def make_cifar_like(n_train: int = 500, n_test: int = 100, *, seed: int = 0, classes: int = 10) -> Cifar10:
    """Images whose class shows in a tint and a stripe orientation, under per-image and per-pixel noise.

    The tints overlap (jitter 25 on centres 80..176), so colour alone takes a nearest-mean classifier to
    only about 55%; the orientation (random phase per image) is what a small convnet learns beyond it.
    Everything is drawn from `seed`, so equal seeds give equal bytes."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(80, 176, size=(classes, 3))
    angles = np.pi * np.arange(classes) / classes
    rows, cols = np.mgrid[0:32, 0:32]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % classes)  # balanced classes, shuffled
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        along = np.cos(angles[y])[:, None, None] * cols + np.sin(angles[y])[:, None, None] * rows
        stripes = 40 * np.sin(2 * np.pi * along / 6 + phase)  # period of 6 pixels: visible at 32x32
        tint = colours[y] + rng.normal(0, 25, size=(n, 3))
        x = tint[:, :, None, None] + stripes[:, None] + rng.normal(0, 30, size=(n, 3, 32, 32))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return Cifar10(train_x, train_y, test_x, test_y, source=f"synthetic(seed={seed})")


def _batches(data: Cifar10, n_train_batches: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The training set split in order over data_batch_1..n (as the official 5 x 10,000), plus test_batch."""
    cuts = np.array_split(np.arange(len(data.train_y)), n_train_batches)
    batches = {f"data_batch_{i + 1}": (data.train_x[c], data.train_y[c]) for i, c in enumerate(cuts)}
    batches["test_batch"] = data.test_x, data.test_y
    return batches


def digests(data: Cifar10, n_train_batches: int = 5) -> dict[str, str]:
    """The binary-record SHA-256 of each batch `write_cifar_archive` writes: the `verify=` for its data."""
    return {name: batch_digest(x, y) for name, (x, y) in _batches(data, n_train_batches).items()}


def _python_batch(name: str, x: np.ndarray, y: np.ndarray, n_train_batches: int) -> bytes:
    label = b"testing batch 1 of 1" if name == "test_batch" else \
        f"training batch {name.rsplit('_', 1)[1]} of {n_train_batches}".encode()
    batch = {b"batch_label": label, b"labels": [int(v) for v in y],
             b"data": x.reshape(len(x), RECORD - 1),
             b"filenames": [f"synthetic_{name}_{i:05d}.png".encode() for i in range(len(y))]}
    return pickle.dumps(batch, protocol=2)


def _members(data: Cifar10, fmt: str, n_train_batches: int) -> dict[str, bytes]:
    """File name inside the official folder -> its bytes."""
    batches = _batches(data, n_train_batches)
    if fmt == "binary":
        files = {f"{name}.bin": record_bytes(x, y) for name, (x, y) in batches.items()}
        files["batches.meta.txt"] = ("\n".join(CLASSES) + "\n\n").encode()
    else:
        files = {name: _python_batch(name, x, y, n_train_batches) for name, (x, y) in batches.items()}
        meta = {b"num_cases_per_batch": len(data.train_y) // n_train_batches,
                b"label_names": [c.encode() for c in CLASSES], b"num_vis": RECORD - 1}
        files["batches.meta"] = pickle.dumps(meta, protocol=2)
    return files


def write_cifar_archive(root: str | Path, data: Cifar10, fmt: str = "binary", *, archive: bool = True,
                        n_train_batches: int = 5) -> Path:
    """Write `data` into `root` in an official layout: the .tar.gz archive, or the unpacked folder."""
    spec, root = FORMATS[fmt], Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = _members(data, fmt, n_train_batches)
    if not archive:
        folder = root / spec.folder
        folder.mkdir(exist_ok=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        return folder
    path = root / spec.archive
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(_tar_info(spec.folder, tarfile.DIRTYPE, 0))
        for name, content in files.items():
            tar.addfile(_tar_info(f"{spec.folder}/{name}", tarfile.REGTYPE, len(content)), io.BytesIO(content))
    return path


def _tar_info(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info
