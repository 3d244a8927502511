"""Training throughput (images/s) of each ImageNet preset in each phase with its DALI pipeline attached,
validation throughput, and the projected hours for 50 seeds against the paper's V100 hours:

    python bench/imagenet_train.py bench/results/<date>-h100 [--steps 60] [--compile none,default]

Runs the real engine (fastseed.engine.finetune.train_finetune) on synthetic ImageNet-size JPEGs
(500×375, q 90; 100 classes, so the head is 100-way instead of 1,000: a negligible share of the work)
with random backbone weights (speed does not depend on their values). Each phase is limited to
`--steps` steps; the clock runs from the end of step `--warmup` to the end of the phase, with a device
sync at both ends only. Writes <out>/imagenet_train.json (raw) and <out>/imagenet_train.log.
`--quick` is a CPU smoke run of the same code (tiny images, 2 steps), for CI-side checking of the script.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fastseed.data.imagenet import index_imagenet
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.engine.finetune import ImagenetData, amp_dtype, evaluate, train_finetune
from fastseed.models.imagenet import build_backbone
from fastseed.recipe.presets import PRESETS

log = logging.getLogger("imagenet_train")
PAPER_V100_HOURS = {"imagenet-rn50": 2.0, "imagenet-dino-rn50": 3.0, "imagenet-dino-vits16": 3 + 40 / 60}
VAL_IMAGES, TRAIN_IMAGES = 50_000, 1_281_167


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(protocol, data, backbone, device, steps: int, warmup: int, compile: str | None, threads: int) -> dict:
    """Images/s of each phase (steps warmup+1 … steps) and of validation, through the real engine."""
    marks, count = [], [0]
    phases = protocol.run_phases()
    ends = [sum(p.steps for p in phases[: i + 1]) for i in range(len(phases))]

    def before_update(opt):  # called before each update; marks fall after `warmup` steps and at phase ends
        count[0] += 1
        start = [e - p.steps + warmup + 1 for e, p in zip(ends, phases)]
        if count[0] in start or count[0] in ends:
            sync(device)
            marks.append((count[0], time.perf_counter()))

    models = []
    t0 = time.perf_counter()
    record = train_finetune(protocol, 0, data, backbone, device, compile=compile, num_threads=threads,
                            before_update=before_update, models_out=models)
    total = time.perf_counter() - t0
    out = {"status": record.status, "wall_s_incl_evals": total, "phases": []}
    for i, p in enumerate(phases):
        (s0, t_start), (s1, t_end) = marks[2 * i], marks[2 * i + 1]
        images = (s1 - s0) * p.batch_size  # the updates between the two marks
        out["phases"].append({"phase": p.name, "batch": p.batch_size, "timed_steps": s1 - s0,
                              "seconds": t_end - t_start, "images_per_s": images / (t_end - t_start)})
    amp = amp_dtype(protocol, device)
    evaluate(models[0], protocol, data.val, device, amp, threads)  # warm (pipeline build, cudnn autotune)
    sync(device)
    t = time.perf_counter()
    evaluate(models[0], protocol, data.val, device, amp, threads)
    sync(device)
    out["eval_images_per_s"] = len(data.val.files) / (time.perf_counter() - t)
    return out


def projection(name: str, result: dict) -> dict:
    """Hours of one full seed at the measured rates: every phase's steps, every 50k-image validation."""
    full = PRESETS[name]
    train_s = sum(p.steps * p.batch_size / r["images_per_s"] for p, r in zip(full.phases, result["phases"]))
    eval_s = len(full.eval_steps) * VAL_IMAGES / result["eval_images_per_s"]
    hours = (train_s + eval_s) / 3600
    return {"seed_hours": hours, "train_hours": train_s / 3600, "eval_hours": eval_s / 3600,
            "hours_50_seeds": 50 * hours, "paper_v100_hours_50_seeds": 50 * PAPER_V100_HOURS[name],
            "speedup_vs_paper": PAPER_V100_HOURS[name] / hours}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--presets", default=",".join(PAPER_V100_HOURS))
    p.add_argument("--steps", type=int, default=60, help="steps a phase (default 60)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps at the start of a phase")
    p.add_argument("--compile", default="none", help="comma-separated: none, default, max-autotune, …")
    p.add_argument("--threads", type=int, default=8, help="DALI CPU threads")
    p.add_argument("--root", type=Path, default=None, help="an ImageNet-layout folder (default: synthetic)")
    p.add_argument("--quick", action="store_true", help="CPU smoke run: tiny images, 2 steps a phase")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.warmup = 2, 0
    if a.steps < a.warmup + 2:
        p.error("--steps must be at least --warmup + 2")
    a.out.mkdir(parents=True, exist_ok=True)
    # its own handlers (not basicConfig, which does nothing when a host such as pytest configured logging)
    log.handlers[:] = [logging.StreamHandler(sys.stdout), logging.FileHandler(a.out / "imagenet_train.log")]
    log.setLevel(logging.INFO)
    log.propagate = False
    device = torch.device("cuda" if torch.cuda.is_available() and not a.quick else "cpu")
    classes = 4 if a.quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        root = a.root or Path(tmp)
        if a.root is None:
            per = (3, 2, (96, 72)) if a.quick else (40, 10, (500, 375))
            write_imagenet_folder(root, classes, per[0], per[1], size=per[2], quality=90)
        data = ImagenetData(index_imagenet(root, "train", classes=classes), index_imagenet(root, "val", classes=classes))
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
                   "commit": commit, "command": " ".join(sys.argv), "torch": torch.__version__,
                   "train_images": len(data.train.files), "val_images": len(data.val.files), "runs": []}
        log.info("%s, commit %s, %d train / %d val synthetic images", results["device"], commit[:12],
                 len(data.train.files), len(data.val.files))
        for name in a.presets.split(","):
            base = PRESETS[name]
            backbone = build_backbone(base.backbone)
            for mode in a.compile.split(","):
                protocol = base.variant(classes=classes, limit_steps=a.steps,
                                        image_size=64 if a.quick and base.backbone != "dino_vits16" else base.image_size,
                                        limit_batch=4 if a.quick else None)
                result = measure(protocol, data, backbone, device, a.steps, a.warmup,
                                 None if mode == "none" else mode, a.threads)
                result |= {"preset": name, "compile": mode}
                if not a.quick:
                    result["projection"] = projection(name, result)
                results["runs"].append(result)
                rates = ", ".join(f"{r['phase']} {r['images_per_s']:.0f} img/s" for r in result["phases"])
                log.info("%s compile=%s: %s, eval %.0f img/s%s", name, mode, rates, result["eval_images_per_s"],
                         f"; {result['projection']['hours_50_seeds']:.1f} h for 50 seeds (paper "
                         f"{result['projection']['paper_v100_hours_50_seeds']:.0f} V100-h)" if not a.quick else "")
    (a.out / "imagenet_train.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
