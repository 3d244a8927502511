"""ImageNet through DALI: an index of the JPEGs (checked once, cached), and seeded train / eval pipelines.

    index = index_imagenet("data/imagenet", "train")           # root/train/<wnid>/*.JPEG or root/train.txt
    for x, y in train_batches(index, seed, phase=1, batch_size=128, steps=2000, device=cuda, dtype=bf16): ...

Every training draw is plain torch from the seed's counter-based streams, so a pipeline can start at
any step (a resumed seed decodes nothing it has already trained on): epoch e of a phase is
torch.randperm(n, generator=seed.generator("order", phase, e)) (`TrainOrder`), and step s's crop windows
and flips come from seed.generator("augment", phase, s) (`fastseed.data.crops`). Each step's files,
windows and flips are fed to DALI through an external source; DALI only reads, decodes the window
(ROI decode), resizes, flips and normalises. The index keeps each image's size from its JPEG header,
which the windows need. Files that are not sound JPEGs are found at index time by a cheap structural
check and left out (ImageIndex.skipped), so a pipeline never meets them. DALI is imported only inside
the pipeline functions.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from fastseed import FastseedError
from fastseed.data.crops import step_augment
from fastseed.data.jpeg import CheckCache, check_files, jpeg_problem  # noqa: F401 (jpeg_problem: API)
from fastseed.seeds import Seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_RESIZE = 1.14  # Picard 2021: Resize(int(1.14 * 224)) = 255, then CenterCrop(224)
JPEG_SUFFIXES = (".jpeg", ".jpg")
log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__/__hash__ would compare numpy arrays
class ImageIndex:
    files: tuple[str, ...]  # absolute paths, sorted by (class, file name)
    labels: np.ndarray  # int64 class index per file, 0..len(wnids)-1
    wnids: tuple[str, ...]  # class names in label order (label i = wnids[i])
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of files left out
    sizes: np.ndarray  # (n, 2) int32 (height, width) per file, from its JPEG header (SOF)

    def __len__(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        text = f"{len(self.files):,} images in {len(self.wnids):,} classes"
        if self.skipped:
            text += f"; {len(self.skipped):,} skipped (first: {self.skipped[0][0]}: {self.skipped[0][1]})"
        return text


# ---------------------------------------------------------------------------------------------------------
# The index: list, check (fastseed.data.jpeg, cached), sort.

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
    checks = check_files(files, CheckCache(root, split, cache_dir), workers)
    order = sorted((c, os.path.basename(p), p, h, w) for p, c, (bad, h, w) in zip(files, labels, checks)
                   if bad is None)
    skipped = tuple(sorted(other + [(p, bad) for p, (bad, _, _) in zip(files, checks) if bad is not None]))
    if not order:
        raise FastseedError(f"no valid JPEG in split {split!r} under {root} ({len(skipped)} skipped)")
    labels_arr = np.array([row[0] for row in order], dtype=np.int64)
    sizes = np.array([row[3:] for row in order], dtype=np.int32).reshape(-1, 2)
    for frozen in (labels_arr, sizes):
        frozen.flags.writeable = False  # the index is frozen: so are its arrays
    index = ImageIndex(tuple(row[2] for row in order), labels_arr, tuple(names), skipped, sizes)
    if skipped:
        log.warning("imagenet %s: %s", split, index.summary())
    return index


# ---------------------------------------------------------------------------------------------------------
# The pipelines.

def batches_per_epoch(index: ImageIndex, batch_size: int) -> int:
    """Full training batches in one pass over the index (Picard's batches_per_epoch)."""
    return len(index) // batch_size


class TrainOrder:
    """The rows a phase trains on, sample by sample: epoch e is torch.randperm(n, generator=
    seed.generator("order", phase, e)), the epochs one after another. Any stretch can be asked for first
    (a resumed seed starts mid-phase); only the permutations of the epochs in use are kept."""

    def __init__(self, n: int, seed: Seed, phase: int):
        self.n, self.seed, self.phase = n, seed, phase
        self.perms: dict[int, np.ndarray] = {}

    def rows(self, first: int, count: int) -> np.ndarray:
        """Rows of samples first .. first+count-1 of the phase (int64)."""
        t = np.arange(first, first + count, dtype=np.int64)
        epochs, pos = t // self.n, t % self.n
        parts = []
        for e in np.unique(epochs).tolist():  # ascending, as the samples are
            if e not in self.perms:
                self.perms[e] = torch.randperm(self.n, generator=self.seed.generator("order", self.phase, e)).numpy()
            parts.append(self.perms[e][pos[epochs == e]])
        if count:
            self.perms = {e: p for e, p in self.perms.items() if e >= epochs[-1]}  # the next stretch's epochs
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def train_order(n: int, seed: Seed, phase: int, samples: int) -> torch.Tensor:
    """Indices of the first `samples` training samples: epoch permutations concatenated."""
    return torch.from_numpy(TrainOrder(n, seed, phase).rows(0, samples))


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


def _pipeline(batch_size: int, device: torch.device, num_threads: int):
    """An empty DALI pipeline for `device`, and where its decoder runs ("mixed": nvJPEG on the GPU)."""
    dali = _dali()[0]
    gpu = device.type == "cuda"
    device_id = (device.index if device.index is not None else torch.cuda.current_device()) if gpu else None
    # Nothing in the graphs is random (windows and flips are inputs), so the pipeline's seed is moot.
    pipe = dali.Pipeline(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=0)
    return pipe, ("mixed" if gpu else "cpu")


def _torch_batches(pipe, images, labels, device, dtype, **iterator_args):
    """Run `pipe` with outputs (images, labels) and yield torch batches on `device`."""
    DALIGenericIterator = _dali()[3]
    with pipe:
        pipe.set_outputs(images, labels.gpu() if device.type == "cuda" else labels)
    for out in DALIGenericIterator([pipe], ["x", "y"], **iterator_args):
        x, y = out[0]["x"], out[0]["y"]
        x = x.to(device=device, dtype=dtype)  # a no-op unless bf16/f64 (see _output_type)
        yield x, y.reshape(-1).to(device=device, dtype=torch.int64)


def _read_file(path: str) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8)


def _train_feed(index: ImageIndex, seed: Seed, phase: int, batch_size: int, start: int, steps: int,
                workers: int):
    """DALI's external source for steps start..steps-1: per step the encoded files, the crop windows as
    anchors (x, y) and shapes (w, h), the flips and the labels. The next step's files are read on
    `workers` threads while DALI decodes this step's."""
    order = TrainOrder(len(index), seed, phase)

    def feed():
        with ThreadPoolExecutor(workers) as pool:
            def read(step):
                rows = order.rows(step * batch_size, batch_size)
                return rows, [pool.submit(_read_file, index.files[r]) for r in rows]
            ahead = read(start)
            for step in range(start, steps):
                rows, files = ahead
                if step + 1 < steps:
                    ahead = read(step + 1)
                windows, flips = step_augment(seed, phase, step, index.sizes[rows, 0], index.sizes[rows, 1])
                top, left, h, w = windows.numpy().astype(np.int32).T
                yield ([f.result() for f in files], np.stack([left, top], 1), np.stack([w, h], 1),
                       flips.numpy().astype(np.int32), index.labels[rows])
    return feed


def train_batches(index: ImageIndex, seed: Seed, phase: int, batch_size: int, steps: int,
                  device: torch.device, dtype: torch.dtype, layout: str = "NCHW", num_threads: int = 4,
                  size: int = 224, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The full batches of steps start..steps-1 of a phase (0-based): RandomResizedCrop(size, (0.08, 1),
    (3/4, 4/3)), flip p=0.5, ImageNet mean/std, in `dtype` and `layout`, on `device` (decode "mixed" on
    CUDA, all-CPU otherwise). Started at step s it yields exactly what a pipeline started at 0 yields
    from step s on, without reading the earlier steps' files."""
    device = torch.device(device)
    _check_args(batch_size, dtype, layout)
    if start < 0:
        raise FastseedError(f"start must be >= 0, got {start}")
    if start >= steps:
        return iter(())
    feed = _train_feed(index, seed, phase, batch_size, start, steps, num_threads)

    def batches():
        _, fn, types, _, LastBatchPolicy = _dali()
        pipe, decode = _pipeline(batch_size, device, num_threads)
        with pipe:
            jpegs, anchor, shape, mirror, labels = fn.external_source(source=feed, num_outputs=5, batch=True)
            # ROI decode: only the crop window is decoded (nvJPEG / libjpeg-turbo), then resized with
            # antialiasing, as torchvision's RandomResizedCrop resizes its crop with bilinear + antialias.
            # EXIF orientation is ignored, as PIL's loader in the original does: the windows are drawn
            # for the size in the JPEG header.
            images = fn.decoders.image_slice(jpegs, anchor, shape, device=decode, output_type=types.RGB,
                                             normalized_anchor=False, normalized_shape=False,
                                             adjust_orientation=False)
            images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_LINEAR,
                               antialias=True)
            images = _normalize(fn, types, images, dtype, layout, mirror=mirror)
        # the feed's StopIteration after the last step ends the iteration
        yield from _torch_batches(pipe, images, labels, device, dtype, last_batch_policy=LastBatchPolicy.PARTIAL)

    return batches()


def eval_batches(index: ImageIndex, batch_size: int, device, dtype, layout: str = "NCHW", num_threads: int = 4,
                 size: int = 224) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every image once, in index order (the last batch partial): shorter side to int(1.14*size), center
    crop size x size, ImageNet mean/std. No randomness."""
    device = torch.device(device)
    _check_args(batch_size, dtype, layout)

    def batches():
        _, fn, types, _, LastBatchPolicy = _dali()
        pipe, decode = _pipeline(batch_size, device, num_threads)
        with pipe:
            # pad_last_batch repeats the last file to fill the final batch; the iterator cuts the copies off.
            jpegs, labels = fn.readers.file(files=list(index.files), labels=index.labels.tolist(),
                                            random_shuffle=False, pad_last_batch=True, name="reader")
            images = fn.decoders.image(jpegs, device=decode, output_type=types.RGB, adjust_orientation=False)
            images = fn.resize(images, resize_shorter=int(EVAL_RESIZE * size), interp_type=types.INTERP_LINEAR,
                               antialias=True)
            images = _normalize(fn, types, images, dtype, layout, size=size)
        yield from _torch_batches(pipe, images, labels, device, dtype, reader_name="reader",
                                  last_batch_policy=LastBatchPolicy.PARTIAL)

    return batches()
