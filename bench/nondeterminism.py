"""GPU non-determinism as a factor of its own: one seed trained N times (same protocol, same pack
layout) without and with --deterministic, beside N different seeds for scale:

    python bench/nondeterminism.py bench/results/<date>-h100 [--preset picard-short] [--repeats 20]

Every run of the same seed draws exactly the same random numbers (fastseed.seeds), so any spread among
the repeats comes from the GPU's non-deterministic kernels (atomics in cuDNN/cuBLAS backward passes,
split-K reductions…). Writes <out>/nondeterminism.json (every run's accuracy, loss, prediction digest)
and <out>/nondeterminism.log. `--device cpu --preset smoke` checks the script on a CPU, where repeats
must agree bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from fastseed.data.cifar import load_cifar10, to_tensors
from fastseed.engine import resolve_device, train_pack
from fastseed.recipe.presets import get_preset

log = logging.getLogger("nondeterminism")


def runs(protocol, seeds, data, device, strategy: str, pack: int) -> list[dict]:
    out = []
    for i in range(0, len(seeds), pack):
        for r in train_pack(protocol, seeds[i: i + pack], data, device, strategy=strategy):
            out.append({"seed": r.seed, "acc": r.test_acc, "loss": r.test_loss, "wall_s": r.wall_time_s,
                        "predictions_sha256": hashlib.sha256(r.predictions).hexdigest()})
    return out


def summary(rows: list[dict]) -> dict:
    accs = [100 * r["acc"] for r in rows]
    return {"n": len(rows), "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs), "max": max(accs), "distinct_predictions": len({r["predictions_sha256"] for r in rows})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--preset", default="picard-short")
    p.add_argument("--seed", type=int, default=0, help="the seed repeated")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--deterministic-repeats", type=int, default=5)
    p.add_argument("--other-seeds", type=int, default=20, help="distinct seeds trained for scale")
    p.add_argument("--strategy", default="fused")
    p.add_argument("--pack", type=int, default=1, help="seeds a pack (the repeats run as packs of copies)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    # its own handlers (not basicConfig, which does nothing when a host such as pytest configured logging)
    log.handlers[:] = [logging.StreamHandler(sys.stdout), logging.FileHandler(a.out / "nondeterminism.log")]
    log.setLevel(logging.INFO)
    log.propagate = False
    device = resolve_device(a.device)
    data = to_tensors(load_cifar10(a.data_dir), device)
    base = get_preset(a.preset)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "commit": commit,
              "command": " ".join(sys.argv), "torch": torch.__version__, "preset": a.preset,
              "strategy": a.strategy, "pack": a.pack, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    plans = {"same_seed": (base, [a.seed] * a.repeats),
             "same_seed_deterministic": (base.variant(deterministic=True), [a.seed] * a.deterministic_repeats),
             "other_seeds": (base, list(range(1000, 1000 + a.other_seeds)))}
    for name, (protocol, seeds) in plans.items():
        rows = runs(protocol, seeds, data, device, a.strategy, a.pack)
        result[name] = {"runs": rows, "summary": summary(rows)}
        s = result[name]["summary"]
        log.info("%s: n=%d acc %.3f ± %.3f %% [%.2f, %.2f], %d distinct prediction vectors", name, s["n"], s["mean"],
                 s["std"], s["min"], s["max"], s["distinct_predictions"])
    ratio = result["same_seed"]["summary"]["std"] / max(result["other_seeds"]["summary"]["std"], 1e-12)
    log.info("non-determinism std / seed std = %.3f", ratio)
    result["std_ratio"] = ratio
    (a.out / "nondeterminism.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
