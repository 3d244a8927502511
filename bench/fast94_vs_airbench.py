"""fast94 against airbench94, side by side on one GPU, same data: accuracy distribution and runs per hour.

    python bench/fast94_vs_airbench.py OUT_DIR [--seeds 50] [--airbench-runs 10] [--pack auto|K]
                                       [--data-dir DIR] [--strategy fused] [--no-airbench]

1. fastseed: the pack size is measured (engine/autopack.py, as `--pack auto` of the scan) unless given,
   one warm-up pack is trained and discarded (seeds ≥ 10⁶), then seeds 0 … N−1 are trained in packs of
   that size through `train_pack` into OUT_DIR/fast94.sqlite (a normal results store). Timed: every
   train_pack call, end to end (model build and whitening fit, epoch plans, training, TTA evaluation).
2. airbench: `pip install airbench` (the PyPI package; 0.1.8 was read for fast94). Its loaders read
   <dir>/cifar10/{train,test}.pt; they are written from the same CIFAR-10 arrays fastseed loaded, so
   both train and test on identical data. One warm-up (`warmup94`), then M runs of `train94(verbose=
   False)` followed by `evaluate(model, test_loader, tta_level=2)` (the package's reported tta_val_acc).
   Timed: both calls; the train loader is built once, outside the timing (as the package's own timer
   excludes it). Without the package, this step is skipped with a message.
cuDNN autotuning (torch.backends.cudnn.benchmark) is on for both: the airbench package turns it on
when imported, so fastseed gets it too.

Writes OUT_DIR/fast94_vs_airbench.json (raw accuracies and seconds, summaries, runs per hour, their
ratio, device, commit, command) and OUT_DIR/log.txt. Not collected by pytest (no test_ prefix): run it
by hand on a GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

WARMUP_SEEDS_FROM = 10**6
SHOWN = ("n", "mean", "std", "min", "max", "seconds_per_run", "runs_per_hour")  # logged summary


class Log:
    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.file.write(line + "\n")


def summary(accs: list[float], seconds: float, runs: int) -> dict:
    """mean ± std (sample), min, max in %; seconds per run and runs per hour."""
    pct = [100 * a for a in accs if math.isfinite(a)]
    return {"n": len(pct), "mean": statistics.fmean(pct) if pct else None,
            "std": statistics.stdev(pct) if len(pct) > 1 else None,
            "sem": statistics.stdev(pct) / math.sqrt(len(pct)) if len(pct) > 1 else None,
            "min": min(pct, default=None), "max": max(pct, default=None),
            "seconds_per_run": seconds / runs, "runs_per_hour": 3600 * runs / seconds}


def sync():
    torch.cuda.synchronize()


@contextmanager
def workdir(path: Path):
    here = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(here)


def run_fastseed(a, data, out: Path, log) -> dict:
    from fastseed.engine import compute_dtype, train_pack
    from fastseed.engine.autopack import choose_pack
    from fastseed.engine.graphs import use_graphs
    from fastseed.engine.pack import get_strategy
    from fastseed.recipe.presets import get_preset
    from fastseed.store import Store

    protocol, device = get_preset("fast94"), torch.device("cuda")
    dtype = compute_dtype(protocol, device)
    graphs = use_graphs(device, get_strategy(a.strategy).graphs, asked=not a.no_graphs)  # the scan's rule
    search = []
    if a.pack == "auto":
        pack = choose_pack(protocol, data, device, dtype, a.strategy, graphs,
                           log=lambda m: (search.append(m), log(m)))
    else:
        pack = int(a.pack)
    log(f"fastseed fast94 [{protocol.hash[:12]}]: {a.seeds} seeds, strategy {a.strategy}, pack {pack}, "
        f"graphs {graphs}")
    warm = list(range(WARMUP_SEEDS_FROM, WARMUP_SEEDS_FROM + pack))
    t0 = time.perf_counter()
    train_pack(protocol, warm, data, device, strategy=a.strategy, graphs=graphs)
    sync()
    log(f"fastseed warm-up pack: {time.perf_counter() - t0:.2f} s (not counted)")
    store_path = out / "fast94.sqlite"
    records, wall = [], 0.0
    with Store(store_path, protocol.name, protocol.hash, protocol.to_json()) as store:
        store.set_test_labels(data.test_y.cpu().numpy())
        done = store.done_seeds()
        todo = [s for s in range(a.seeds) if s not in done]
        if done:
            log(f"fastseed: {len(done)} seeds already in {store_path}; timing the {len(todo)} others")
        for i in range(0, len(todo), pack):
            group = todo[i: i + pack]
            t0 = time.perf_counter()
            got = train_pack(protocol, group, data, device, strategy=a.strategy, graphs=graphs)
            sync()
            dt = time.perf_counter() - t0
            wall += dt
            for r in got:
                store.add(r)
            records += got
            log(f"fastseed seeds {group[0]}…{group[-1]}: {dt:.2f} s, {dt / len(group):.3f} s/seed, "
                f"acc {', '.join(f'{100 * r.test_acc:.2f}' for r in got)}")
    accs = [r.test_acc for r in records]
    result = {"protocol": protocol.name, "protocol_hash": protocol.hash, "strategy": a.strategy, "pack": pack,
              "graphs": graphs, "pack_search": search, "seeds": [r.seed for r in records], "accs": accs,
              "status": [r.status for r in records], "wall_s": wall, "store": str(store_path),
              **(summary(accs, wall, len(records)) if records else {})}
    log(f"fastseed: {json.dumps({k: result[k] for k in SHOWN if k in result})}")
    return result


def write_airbench_data(data, root: Path):
    """airbench's CifarLoader files from fastseed's arrays: uint8 HWC images, int labels, class names."""
    from fastseed.data.cifar import CLASSES
    root.mkdir(parents=True, exist_ok=True)
    for name, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        torch.save({"images": x.permute(0, 2, 3, 1).contiguous().cpu(), "labels": y.cpu(),
                    "classes": list(CLASSES)}, root / f"{name}.pt")


def run_airbench(a, data, out: Path, log) -> dict:
    if importlib.util.find_spec("airbench") is None:
        log("airbench is not installed (pip install airbench): skipping the airbench runs")
        return {"skipped": "airbench not installed"}
    base = out / "airbench_data"
    write_airbench_data(data, base / "cifar10")
    with workdir(base):  # train94 builds its test loader from the relative path 'cifar10'
        import airbench
        from importlib.metadata import version
        hyp = airbench.lib_airbench94.hyp
        loader = airbench.CifarLoader("cifar10", train=True, batch_size=hyp["opt"]["batch_size"],
                                      aug=hyp["aug"], altflip=True)
        test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        t0 = time.perf_counter()
        airbench.warmup94(train_loader=loader)
        sync()
        log(f"airbench warm-up: {time.perf_counter() - t0:.2f} s (not counted)")
        accs, seconds = [], []
        for run in range(a.airbench_runs):
            sync()
            t0 = time.perf_counter()
            model = airbench.train94(train_loader=loader, verbose=False)
            acc = airbench.evaluate(model, test_loader, tta_level=hyp["net"]["tta_level"])
            sync()
            seconds.append(time.perf_counter() - t0)
            accs.append(acc)
            log(f"airbench run {run}: {seconds[-1]:.2f} s, acc {100 * acc:.2f}")
    result = {"version": version("airbench"), "accs": accs, "seconds": seconds, "wall_s": sum(seconds),
              **summary(accs, sum(seconds), len(accs))}
    log(f"airbench: {json.dumps({k: result[k] for k in SHOWN})}")
    return result


def main(argv=None) -> int:
    from fastseed.engine.pack import DEFAULT_STRATEGY, STRATEGIES
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="output directory (JSON, log, the fastseed store, airbench's data copy)")
    p.add_argument("--seeds", type=int, default=50, help="fast94 seeds (default 50)")
    p.add_argument("--airbench-runs", type=int, default=10, help="airbench train94 runs (default 10)")
    p.add_argument("--pack", default="auto", help="fastseed pack size, or auto (measured; default)")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=list(STRATEGIES))
    p.add_argument("--no-graphs", action="store_true", help="fastseed without CUDA graphs")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 root (default $FASTSEED_DATA or ./data)")
    p.add_argument("--no-airbench", action="store_true", help="only the fastseed side")
    p.add_argument("--no-fastseed", action="store_true", help="only the airbench side")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("fast94_vs_airbench: needs a CUDA GPU", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "log.txt")
    from fastseed.data.cifar import load_cifar10, to_tensors
    from fastseed.engine.provenance import code_version

    torch.backends.cudnn.benchmark = True  # what importing airbench does; the same for both sides
    data = to_tensors(load_cifar10(a.data_dir), "cuda")
    info = {"command": [sys.executable, *sys.argv], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": True, "python": platform.python_version(),
            "host": platform.node(), **code_version()}
    log(f"{info['device']}, torch {info['torch']}, fastseed {info['fastseed']} @ {info['commit']}"
        f"{' (modified)' if info['dirty'] else ''}")
    result = {**info}
    if not a.no_fastseed:
        result["fastseed"] = run_fastseed(a, data, out, log)
    if not a.no_airbench:
        result["airbench"] = run_airbench(a, data, out, log)
    fs, ab = result.get("fastseed", {}), result.get("airbench", {})
    if fs.get("runs_per_hour") and ab.get("runs_per_hour"):
        result["runs_per_hour_ratio"] = fs["runs_per_hour"] / ab["runs_per_hour"]
        result["mean_acc_difference"] = fs["mean"] - ab["mean"]  # percentage points
        result["mean_acc_difference_se"] = math.hypot(fs["sem"] or 0.0, ab["sem"] or 0.0)
        log(f"fastseed/airbench runs per hour: {result['runs_per_hour_ratio']:.2f}x; mean accuracy "
            f"difference {result['mean_acc_difference']:+.3f} ± {result['mean_acc_difference_se']:.3f} pp")
    (out / "fast94_vs_airbench.json").write_text(json.dumps(result, indent=1))
    log(f"wrote {out / 'fast94_vs_airbench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
