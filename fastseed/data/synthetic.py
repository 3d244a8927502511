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


# ---------------------------------------------------------------------------------------------------------
# ImageNet layout: root/{train,val}/<wnid>/<wnid>_<i>.JPEG, the folder `fastseed.data.imagenet` reads.

def imagenet_wnids(classes: int) -> list[str]:
    """Folder names shaped like ImageNet's WordNet ids (n + 8 digits), sorted in class order."""
    return [f"n{i:08d}" for i in range(classes)]


def _imagenet_image(rng: np.random.Generator, colour: np.ndarray, angle: float, size: tuple[int, int],
                    content: str, noise: float) -> np.ndarray:
    """(h, w, 3) uint8: the class colour as a smooth field (a ramp along the class angle and an ellipse of
    the complementary colour at a random place), under per-pixel noise; or exactly the colour ("flat")."""
    w, h = size
    if content == "flat":
        return np.broadcast_to(np.rint(colour).astype(np.uint8), (h, w, 3)).copy()
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32) / max(w, h)
    ramp = 60 * (np.cos(angle) * cols + np.sin(angle) * rows - 0.5)  # a smooth field, like lighting
    cy, cx = rng.uniform(0.2, 0.8, 2) * (h / max(w, h), w / max(w, h))
    ry, rx = rng.uniform(0.08, 0.25, 2)
    blob = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1
    img = colour + ramp[..., None] + rng.normal(0, 12, 3)  # per-image brightness/tint jitter
    img = np.where(blob[..., None], 255 - colour, img)
    img = img + rng.normal(0, noise, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _broken_files(rng: np.random.Generator, good: bytes, n: int) -> list[tuple[str, bytes]]:
    """The faults a real crawl holds, in turn: a truncated JPEG (no EOI), a PNG named .JPEG (ImageNet has
    one), an empty file."""
    from PIL import Image
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(png, format="PNG")
    kinds = [("truncated", good[: len(good) * 3 // 5]), ("png", png.getvalue()), ("empty", b"")]
    return [kinds[i % 3] for i in range(n)]


def write_imagenet_folder(root: str | Path, classes: int, train_per_class: int, val_per_class: int,
                          size: tuple[int, int] = (500, 375), quality: int = 90, seed: int = 0,
                          corrupt: int = 0, *, content: str = "field", noise: float = 8.0) -> dict:
    """Write a small ImageNet-layout set of real JPEGs (sizes around `size` = (width, height), ±25 % and a
    quarter of them portrait, as ImageNet's typical 500x375 photos are) and return what was written.

    content="field": class colour + ramp + ellipse + noise (a model can learn it); "flat": one constant
    colour per class, so decoded pixels say which class a file is. `corrupt` extra broken files per split
    sit in the class folders (truncated, PNG, empty in turn). Deterministic from `seed`."""
    if content not in ("field", "flat"):
        raise ValueError(f"content must be 'field' or 'flat', got {content!r}")
    rng = np.random.default_rng(seed)
    root, wnids = Path(root), imagenet_wnids(classes)
    # Hues spread round the wheel (distinct even for many classes), brightness varied by a random draw.
    hue = np.arange(classes) / max(classes, 1)
    colours = 128 + 90 * np.cos(2 * np.pi * (hue[:, None] + np.array([0, 1 / 3, 2 / 3])))
    colours = np.clip(colours * rng.uniform(0.8, 1.1, (classes, 1)), 0, 255)
    angles = 2 * np.pi * rng.permutation(classes) / max(classes, 1)
    written = {"root": root, "wnids": wnids, "colours": colours, "train": 0, "val": 0, "corrupt": []}
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        good = b""
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = (np.asarray(size) * rng.uniform(0.75, 1.25, 2)).astype(int)
                if rng.random() < 0.25:
                    w, h = h, w
                good = _jpeg_bytes(_imagenet_image(rng, colours[c], angles[c], (w, h), content, noise), quality)
                (folder / f"{wnid}_{i}.JPEG").write_bytes(good)
                written[split] += 1
        good = good or _jpeg_bytes(np.zeros((32, 32, 3), np.uint8), quality)
        for i, (kind, data) in enumerate(_broken_files(rng, good, corrupt)):
            path = root / split / wnids[i % classes] / f"{wnids[i % classes]}_{kind}_{i}.JPEG"
            path.write_bytes(data)
            written["corrupt"].append(path)
    return written
