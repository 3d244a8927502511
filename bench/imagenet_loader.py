"""DALI decode+augment throughput (images/s) against a PIL/torchvision DataLoader, on synthetic ImageNet-size
JPEGs (or a real ImageNet-layout folder), for a GPU session:

    python bench/imagenet_loader.py bench/results/imagenet-loader-h100 [--root data/imagenet] [--steps 60]

Writes <out>/imagenet_loader.json (every timed repeat, raw) and <out>/imagenet_loader.log. Each
measurement starts its loader, takes one batch untimed (pipeline build / worker start-up, prefetch),
then times `steps` batches ending with a device sync; the training recipe is the same on both sides:
RandomResizedCrop(224), flip, ImageNet mean/std, cast to the model dtype on the device.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from fastseed.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, eval_batches, index_imagenet, train_batches
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.seeds import Seed

log = logging.getLogger("imagenet_loader")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def timed_batches(make, steps: int, device: torch.device) -> dict:
    """Seconds for `steps` batches after the first; images counted from the batches themselves."""
    batches = make()
    next(batches)
    sync(device)
    images, start = 0, time.perf_counter()
    for _, (x, _) in zip(range(steps), batches):
        images += x.shape[0]
    sync(device)
    seconds = time.perf_counter() - start
    batches.close()
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torchvision_batches(index, batch: int, workers: int, device: torch.device, dtype: torch.dtype, size: int):
    """The baseline: PIL decode + torchvision transforms in `workers` processes, pinned, copied, cast."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(index)

        def __getitem__(self, i):
            with Image.open(index.files[i]) as im:
                return tf(im.convert("RGB")), int(index.labels[i])

    loader = torch.utils.data.DataLoader(Files(), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0,
                                         prefetch_factor=4 if workers else None)
    while True:  # epochs until the caller stops
        for x, y in loader:
            yield x.to(device, dtype, non_blocking=True), y.to(device, non_blocking=True)


def measurements(args, index, device):
    dtype = DTYPES[args.dtype]
    cpu = torch.device("cpu")
    train = lambda dev, threads: lambda: train_batches(  # noqa: E731
        index, Seed(0), 1, args.batch, args.steps + 1, dev, dtype if dev.type == "cuda" else torch.float32,
        num_threads=threads, size=args.size)
    yield "dali_train_" + device.type, device, train(device, args.threads)
    if device.type == "cuda":
        yield "dali_train_cpu", cpu, train(cpu, args.workers)
    # eval decodes whole images (no ROI crop); timed on the train files, a val split is too short to time
    yield "dali_eval_" + device.type, device, lambda: eval_batches(index, args.batch, device, dtype,
                                                                   num_threads=args.threads, size=args.size)
    yield f"torchvision_{args.workers}_workers", device, lambda: torchvision_batches(
        index, args.batch, args.workers, device, dtype, args.size)


def environment(device: torch.device) -> dict:
    import PIL
    import torchvision
    try:
        from nvidia import dali
        dali_version = dali.__version__
    except ImportError:
        dali_version = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__,
            "dali": dali_version,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder for imagenet_loader.json and imagenet_loader.log")
    p.add_argument("--root", type=Path, help="an ImageNet-layout folder; default: synthetic JPEGs")
    p.add_argument("--classes", type=int, default=32, help="synthetic classes, or the first N of --root")
    p.add_argument("--per-class", type=int, default=80, help="synthetic train images per class")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=40, help="timed batches per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=8, help="DALI CPU threads beside the GPU")
    p.add_argument("--workers", type=int, default=16, help="DataLoader workers (and CPU-only DALI threads)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=[
        logging.StreamHandler(), logging.FileHandler(args.out / "imagenet_loader.log", mode="w")])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "env": environment(device), "runs": {}}
    log.info("environment: %s", result["env"])

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root, start = Path(tmp), time.perf_counter()
            write_imagenet_folder(root, args.classes, args.per_class, max(1, args.per_class // 4), corrupt=3)
            result["synthetic_write_s"] = time.perf_counter() - start
            log.info("wrote synthetic set (%d classes x %d) in %.1f s", args.classes, args.per_class,
                     result["synthetic_write_s"])
        start = time.perf_counter()
        index = index_imagenet(root, "train", classes=args.classes if args.root else None, cache_dir=tmp)
        result["index_cold_s"], start = time.perf_counter() - start, time.perf_counter()
        index = index_imagenet(root, "train", classes=args.classes if args.root else None, cache_dir=tmp)
        result["index_cached_s"] = time.perf_counter() - start
        val = index_imagenet(root, "val", wnids=index.wnids, cache_dir=tmp)
        log.info("train: %s (index %.2f s cold, %.2f s cached); val: %s", index.summary(),
                 result["index_cold_s"], result["index_cached_s"], val.summary())
        for name, dev, make in measurements(args, index, device):
            runs = []
            for _ in range(args.repeats):
                runs.append(timed_batches(make, args.steps, dev))
                log.info("%-28s %8.0f images/s (%d images in %.2f s)", name, runs[-1]["images_per_s"],
                         runs[-1]["images"], runs[-1]["seconds"])
            result["runs"][name] = runs
    (args.out / "imagenet_loader.json").write_text(json.dumps(result, indent=1))
    best = {name: max(r["images_per_s"] for r in runs) for name, runs in result["runs"].items()}
    log.info("best images/s: %s", {k: round(v) for k, v in best.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
