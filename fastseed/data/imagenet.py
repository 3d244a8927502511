"""ImageNet through DALI: an index of the JPEGs (checked once, cached), and seeded train / eval pipelines.

    index = index_imagenet("data/imagenet", "train")           # root/train/<wnid>/*.JPEG or root/train.txt
    for x, y in train_batches(index, seed, phase=1, batch_size=128, steps=2000, device=cuda, dtype=bf16): ...

The data order is plain torch: epoch e of a phase is torch.randperm(n, generator=seed.generator("order",
phase, e)), handed to DALI's file reader as an explicit list (random_shuffle=False), so a seed's order is
known without running DALI (`train_order`). Crops and flips are DALI's own random ops, each seeded from
seed.key("augment", phase, op); with the same batch size they repeat exactly. Files that are not sound
JPEGs are found at index time by a cheap structural check and left out (ImageIndex.skipped), so a
pipeline never meets them. DALI is imported only inside the pipeline functions.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from fastseed import FastseedError
from fastseed.seeds import Seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_RESIZE = 1.14  # Picard 2021: Resize(int(1.14 * 224)) = 255, then CenterCrop(224)
JPEG_SUFFIXES = (".jpeg", ".jpg")
CACHE_VERSION = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__/__hash__ would compare numpy arrays
class ImageIndex:
    files: tuple[str, ...]  # absolute paths, sorted by (class, file name)
    labels: np.ndarray  # int64 class index per file, 0..len(wnids)-1
    wnids: tuple[str, ...]  # class names in label order (label i = wnids[i])
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of files left out

    def __len__(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        text = f"{len(self.files):,} images in {len(self.wnids):,} classes"
        if self.skipped:
            text += f"; {len(self.skipped):,} skipped (first: {self.skipped[0][0]}: {self.skipped[0][1]})"
        return text


# ---------------------------------------------------------------------------------------------------------
# The structural check: enough to keep files a decoder would choke on (empty, not JPEG, cut off) out.

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field
EOI_WINDOW = 4096  # an EOI this close to the end counts: some encoders pad files after it


def jpeg_problem(path: str) -> str | None:
    """Why `path` is not a sound JPEG (SOI, a SOF with sane width/height, EOI near the end), or None."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return "empty file"
            if f.read(3) != b"\xff\xd8\xff":
                return "not a JPEG (no SOI marker)"
            problem = _sof_problem(f, size)
            if problem:
                return problem
            f.seek(max(0, size - EOI_WINDOW))
            if b"\xff\xd9" not in f.read():
                return "truncated JPEG (no EOI marker at the end)"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return None


def _sof_problem(f, size: int) -> str | None:
    """Walk the marker segments from the SOI to the first SOF and check its height and width."""
    pos = 2
    while pos + 4 <= size:
        f.seek(pos)
        head = f.read(4)
        if head[0] != 0xFF:
            return "broken JPEG header (marker expected)"
        marker = head[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image before any frame header
            return "broken JPEG header (no SOF before the image data)"
        if marker in _SOF:
            sof = f.read(5)  # precision, height, width
            h, w = int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")
            return None if len(sof) == 5 and 0 < h and 0 < w else f"bad JPEG size {w}x{h}"
        pos += 2 + int.from_bytes(head[2:4], "big")
    return "broken JPEG header (ends before a SOF)"


# ---------------------------------------------------------------------------------------------------------
# The index: list, stat, check (cached by path+size+mtime), sort.

def _stat_key(path: str) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    text = f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


class _CheckCache:
    """Check results as 64-bit keys of (path, size, mtime): ~10 MB for all of ImageNet, rewritten only
    when new files were checked. Lives in cache_dir, else root/.fastseed, else ~/.cache/fastseed."""

    def __init__(self, root: Path, split: str, cache_dir: str | Path | None):
        tag = hashlib.blake2b(str(root).encode(), digest_size=6).hexdigest()
        name = f"jpeg-check-v{CACHE_VERSION}-{split}-{tag}.npz"
        dirs = [Path(cache_dir)] if cache_dir else [root / ".fastseed", Path.home() / ".cache" / "fastseed"]
        self.paths = [d / name for d in dirs]
        self.results: dict[int, str] = {}  # key -> "" (sound) or the reason it is not
        for path in self.paths:
            if path.exists():
                try:
                    with np.load(path) as z:
                        self.results = dict(zip(z["keys"].tolist(), z["reasons"].tolist()))
                    break
                except Exception:  # a damaged cache is only a slower index
                    log.warning("ignoring unreadable index cache %s", path)

    def save(self) -> None:
        keys = np.fromiter(self.results, dtype=np.uint64, count=len(self.results))
        reasons = np.array(list(self.results.values()), dtype=str)
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(tmp, keys=keys, reasons=reasons)
                os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file
                return
            except OSError:
                continue  # e.g. a read-only dataset mount: try the next place
        log.warning("could not write the index cache to any of %s", [str(p) for p in self.paths])


def _map(pool: ThreadPoolExecutor, fn, items: list, chunk: int) -> list:
    """pool.map in chunks: a future per item costs more than a stat (its `chunksize` is for processes)."""
    parts = pool.map(lambda i: [fn(x) for x in items[i:i + chunk]], range(0, len(items), chunk))
    return [y for part in parts for y in part]


def _check_all(paths: list[str], cache: _CheckCache, workers: int) -> list[str | None]:
    """The problem of each path (None = sound), from the cache where its size and mtime still match."""
    with ThreadPoolExecutor(workers) as pool:
        keys = _map(pool, _stat_key, paths, 1024)
        todo = [i for i, k in enumerate(keys) if k is None or k not in cache.results]
        found = _map(pool, jpeg_problem, [paths[i] for i in todo], 64)
    for i, problem in zip(todo, found):
        if keys[i] is not None:
            cache.results[keys[i]] = problem or ""
    if todo:
        cache.save()
    return [(cache.results[k] or None) if k is not None else "missing or unreadable" for k in keys]


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _folder_files(folder: Path, wnids: list[str], workers: int) -> tuple[list[str], list[int], list]:
    """JPEG-named files per class folder (sorted), and other files as (path, reason)."""
    def scan(c: int):
        d = folder / wnids[c]
        names = sorted(e.name for e in os.scandir(d) if e.is_file() and not e.name.startswith(".")) \
            if d.is_dir() else []
        return [(str(d / n), c, n.lower().endswith(JPEG_SUFFIXES)) for n in names]
    with ThreadPoolExecutor(workers) as pool:
        rows = [r for found in pool.map(scan, range(len(wnids))) for r in found]
    files, labels = [p for p, _, ok in rows if ok], [c for _, c, ok in rows if ok]
    return files, labels, [(p, "not a .JPEG/.jpg file name") for p, _, ok in rows if not ok]


def _list_files(listing: Path, root: Path) -> tuple[list[str], list[int]]:
    """Lines "relative/path label" (relative to root; absolute paths allowed; # comments)."""
    files, labels = [], []
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise FastseedError(f"{listing}:{n}: expected 'path label', got {line!r}")
        files.append(os.path.join(root, parts[0]))
        labels.append(int(parts[1]))
    return files, labels


def index_imagenet(root, split: str, classes: int | None = None, *, wnids: tuple[str, ...] | None = None,
                   cache_dir: str | Path | None = None, workers: int = 16) -> ImageIndex:
    """Index root/<split>/<wnid>/*.JPEG, or the file list root/<split>.txt when it exists (it wins).

    Classes are the sorted class folders of the train split (so val gets the same labels as train) or,
    for a file list, the label numbers; `classes` keeps the first N; `wnids` gives the classes outright
    (e.g. train_index.wnids). Files failing the structural check are left out, listed in `skipped`."""
    root = Path(os.path.abspath(os.path.expanduser(root)))
    folder, listing = root / split, root / f"{split}.txt"
    use_list = listing.is_file()
    if use_list:
        files, labels = _list_files(listing, root)
        names = list(wnids) if wnids else [str(i) for i in range(max(labels, default=-1) + 1)]
    elif folder.is_dir():
        train = root / "train"
        names = list(wnids) if wnids else _class_folders(train if train.is_dir() else folder)
    else:
        raise FastseedError(f"no ImageNet split {split!r}: expected {folder}/<wnid>/*.JPEG or {listing}")
    if classes is not None and classes > len(names):
        raise FastseedError(f"asked for {classes} classes but {root} has {len(names)} for split {split!r}")
    names = names[:classes] if classes is not None else names
    if not names:
        raise FastseedError(f"no classes found for split {split!r} under {root}")
    other = []
    if not use_list:
        files, labels, other = _folder_files(folder, names, workers)
    keep = [i for i, c in enumerate(labels) if c < len(names)]
    files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    problems = _check_all(files, _CheckCache(root, split, cache_dir), workers)
    order = sorted((c, os.path.basename(p), p) for p, c, bad in zip(files, labels, problems) if bad is None)
    skipped = tuple(sorted(other + [(p, bad) for p, bad in zip(files, problems) if bad is not None]))
    if not order:
        raise FastseedError(f"no valid JPEG in split {split!r} under {root} ({len(skipped)} skipped)")
    labels_arr = np.array([c for c, _, _ in order], dtype=np.int64)
    labels_arr.flags.writeable = False  # the index is frozen: so are its labels
    index = ImageIndex(tuple(p for _, _, p in order), labels_arr, tuple(names), skipped)
    if skipped:
        log.warning("imagenet %s: %s", split, index.summary())
    return index


# ---------------------------------------------------------------------------------------------------------
# The pipelines.

def batches_per_epoch(index: ImageIndex, batch_size: int) -> int:
    """Full training batches in one pass over the index (Picard's batches_per_epoch)."""
    return len(index) // batch_size


def train_order(n: int, seed: Seed, phase: int, samples: int) -> torch.Tensor:
    """Indices of the first `samples` training samples: epoch permutations concatenated."""
    parts, total, epoch = [], 0, 0
    while total < samples:
        parts.append(torch.randperm(n, generator=seed.generator("order", phase, epoch)))
        total, epoch = total + n, epoch + 1
    return torch.cat(parts)[:samples] if parts else torch.zeros(0, dtype=torch.int64)


def dali_seed(seed: Seed, phase: int, op: int) -> int:
    """A DALI seed for one random op: the augment key cut to 31 bits (DALI's seeds are non-negative ints)."""
    return seed.key("augment", phase, op) & 0x7FFF_FFFF


def _dali():
    try:
        from nvidia import dali
        from nvidia.dali import fn, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError as e:
        raise FastseedError(f"the ImageNet pipelines need NVIDIA DALI ({e}): pip install 'fastseed[imagenet]'") \
            from None
    return dali, fn, types, DALIGenericIterator, LastBatchPolicy


def _output_type(types, dtype: torch.dtype):
    """DALI has no bfloat16: emit float32 and round once in torch (float16 first would round twice)."""
    if dtype == torch.float16:
        return types.FLOAT16
    return types.FLOAT


def _check_args(batch_size: int, dtype: torch.dtype, layout: str) -> None:
    """Fail at the call, not at the first batch (the pipelines are lazy generators)."""
    if batch_size < 1:
        raise FastseedError(f"batch_size must be >= 1, got {batch_size}")
    if not dtype.is_floating_point:
        raise FastseedError(f"ImageNet batches must be a float dtype, got {dtype}")
    if layout not in ("NCHW", "NHWC"):
        raise FastseedError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    _dali()


def _normalize(fn, types, images, dtype, layout: str, size: int | None = None, mirror=None):
    crop = {} if size is None else {"crop": (size, size), "crop_pos_x": 0.5, "crop_pos_y": 0.5}
    return fn.crop_mirror_normalize(images, dtype=_output_type(types, dtype), output_layout=layout[1:],
                                    mean=[255 * m for m in IMAGENET_MEAN], std=[255 * s for s in IMAGENET_STD],
                                    mirror=0 if mirror is None else mirror, **crop)


def _run(files, labels, batch_size, device, dtype, num_threads, pipe_seed, graph, partial):
    """Build a pipeline reading `files` in the given order, apply graph(jpegs) and yield torch batches."""
    dali, fn, types, DALIGenericIterator, LastBatchPolicy = _dali()
    gpu = device.type == "cuda"
    device_id = (device.index if device.index is not None else torch.cuda.current_device()) if gpu else None
    pipe = dali.Pipeline(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=pipe_seed)
    with pipe:
        # pad_last_batch repeats the last file to fill the final batch; the iterator cuts the copies off.
        jpegs, y = fn.readers.file(files=list(files), labels=np.asarray(labels).tolist(), random_shuffle=False,
                                   pad_last_batch=True, name="reader")
        images = graph(fn, types, jpegs, "mixed" if gpu else "cpu")
        pipe.set_outputs(images, y.gpu() if gpu else y)
    policy = LastBatchPolicy.PARTIAL if partial else LastBatchPolicy.DROP
    for out in DALIGenericIterator([pipe], ["x", "y"], reader_name="reader", last_batch_policy=policy):
        x, y = out[0]["x"], out[0]["y"]
        x = x.to(device=device, dtype=dtype)  # a no-op unless bf16/f64 (see _output_type)
        yield x, y.reshape(-1).to(device=device, dtype=torch.int64)


def train_batches(index: ImageIndex, seed: Seed, phase: int, batch_size: int, steps: int,
                  device: torch.device, dtype: torch.dtype, layout: str = "NCHW", num_threads: int = 4,
                  size: int = 224) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Exactly `steps` full batches: RandomResizedCrop(size, (0.08, 1), (3/4, 4/3)), flip p=0.5, ImageNet
    mean/std, in `dtype` and `layout`, on `device` (decode "mixed" on CUDA, all-CPU otherwise)."""
    device = torch.device(device)
    _check_args(batch_size, dtype, layout)
    if steps <= 0:
        return iter(())
    order = train_order(len(index), seed, phase, steps * batch_size).numpy()

    def graph(fn, types, jpegs, decode):
        # ROI decode: only the random crop window is decoded (nvJPEG / libjpeg-turbo), then resized with
        # antialiasing, as torchvision's RandomResizedCrop resizes its crop with bilinear + antialias.
        images = fn.decoders.image_random_crop(jpegs, device=decode, output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3],
                                               num_attempts=10, seed=dali_seed(seed, phase, 1))
        images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_LINEAR, antialias=True)
        flip = fn.random.coin_flip(probability=0.5, seed=dali_seed(seed, phase, 2))
        return _normalize(fn, types, images, dtype, layout, mirror=flip)

    files = [index.files[i] for i in order]
    return _run(files, index.labels[order], batch_size, device, dtype, num_threads, dali_seed(seed, phase, 0),
                graph, partial=False)


def eval_batches(index: ImageIndex, batch_size: int, device, dtype, layout: str = "NCHW", num_threads: int = 4,
                 size: int = 224) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every image once, in index order (the last batch partial): shorter side to int(1.14*size), center
    crop size x size, ImageNet mean/std. No randomness."""
    device = torch.device(device)
    _check_args(batch_size, dtype, layout)

    def graph(fn, types, jpegs, decode):
        images = fn.decoders.image(jpegs, device=decode, output_type=types.RGB)
        images = fn.resize(images, resize_shorter=int(EVAL_RESIZE * size), interp_type=types.INTERP_LINEAR,
                           antialias=True)
        return _normalize(fn, types, images, dtype, layout, size=size)

    return _run(index.files, index.labels, batch_size, device, dtype, num_threads, 0, graph, partial=True)
