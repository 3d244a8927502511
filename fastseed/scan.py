"""python -m fastseed.scan — train one protocol under many seeds; one durable record per seed.

    python -m fastseed.scan --seeds 10000                    # picard-short, seeds 0..9999
    python -m fastseed.scan --preset smoke --seeds 8 --device cpu

Rerunning the same command resumes: seeds already in the store are skipped. Ctrl-C (or SIGTERM)
finishes and commits the seed in flight, then exits; a second Ctrl-C drops it and exits at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import time
from pathlib import Path

import torch

from fastseed import FastseedError
from fastseed.cli import Parser

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130



def parse(argv) -> argparse.Namespace:
    from fastseed.engine.train import STRATEGIES
    from fastseed.presets import PRESETS
    from fastseed.seeds import STREAMS
    p = Parser(prog="python -m fastseed.scan", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10000, metavar="N", help="number of seeds (default 10000)")
    p.add_argument("--start", type=int, default=0, metavar="S", help="first seed (default 0)")
    p.add_argument("--preset", default="picard-short", help=f"protocol: {', '.join(PRESETS)}")
    p.add_argument("--data-dir", default=None, help="dataset root (default $FASTSEED_DATA or ./data)")
    p.add_argument("--download", action="store_true", help="fetch the official CIFAR-10 if it is missing")
    p.add_argument("--out", default=None, help="results store (default results/<preset>.sqlite)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--pack", default="auto", metavar="K|auto",
                   help="seeds trained at once; auto (default) measures this GPU (1 on a CPU)")
    p.add_argument("--strategy", default=None, choices=list(STRATEGIES),
                   help="how a pack trains: fused (one grouped model, default), streams (replicas on "
                        "CUDA streams) or sequential (one after another)")
    p.add_argument("--compile", default=None, metavar="MODE",
                   help="torch.compile the training forward (default, reduce-overhead, max-autotune)")
    p.add_argument("--no-graphs", action="store_true", help="do not replay training steps as CUDA graphs")
    p.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32", "float64"],
                   help="compute dtype (default: the protocol's on a GPU, float32 on the CPU)")
    p.add_argument("--augment", default=None, choices=["chunk", "image", "none"],
                   help="override the protocol's augmentation mode (a distinct protocol in the store)")
    p.add_argument("--fix", default="", metavar="STREAMS",
                   help="comma-separated random streams held at --fix-seed in every run: init, order, "
                        "augment (a distinct protocol in the store)")
    p.add_argument("--fix-seed", type=int, default=0, metavar="R", help="the seed fixed streams draw from")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN/cuBLAS kernels (a distinct protocol in the store)")
    g = p.add_argument_group("ImageNet fine-tuning presets (imagenet-*)")
    g.add_argument("--weights", default=None, metavar="PATH",
                   help="the pretrained backbone's weight file (required; nothing is downloaded)")
    g.add_argument("--classes", type=int, default=None, metavar="N", help="train on the first N classes only")
    g.add_argument("--limit-steps", type=int, default=None, metavar="N", help="at most N steps a phase")
    g.add_argument("--limit-batch", type=int, default=None, metavar="N", help="at most N images a batch")
    g.add_argument("--workers", type=int, default=4, metavar="N", help="DALI CPU threads (default 4)")
    p.add_argument("--csv", default=None, help="also export the store to this CSV when done")
    p.add_argument("--parquet", default=None, help="also export the store to this Parquet file when done")
    p.add_argument("--no-progress", action="store_true", help="print a line per seed instead of a bar")
    a = p.parse_args(argv)
    if a.seeds <= 0:
        raise FastseedError(f"--seeds must be a positive number, got {a.seeds}")
    if a.start < 0:
        raise FastseedError(f"--start must be >= 0, got {a.start}")
    a.fix = tuple(sorted({s.strip() for s in a.fix.split(",") if s.strip()}))
    unknown = set(a.fix) - set(STREAMS)
    if unknown:
        raise FastseedError(f"--fix: unknown stream(s) {', '.join(sorted(unknown))}; "
                            f"streams are {', '.join(STREAMS)}")
    if a.fix_seed < 0:
        raise FastseedError(f"--fix-seed must be >= 0, got {a.fix_seed}")
    for name in ("classes", "limit_steps", "limit_batch"):
        if getattr(a, name) is not None and getattr(a, name) <= 0:
            raise FastseedError(f"--{name.replace('_', '-')} must be a positive number, got {getattr(a, name)}")
    if a.workers <= 0:
        raise FastseedError(f"--workers must be a positive number, got {a.workers}")
    if a.pack != "auto":
        if not a.pack.isdigit() or int(a.pack) <= 0:
            raise FastseedError(f"--pack must be a positive number or auto, got {a.pack}")
        a.pack = int(a.pack)
    return a


class StopFlag:
    """First SIGINT/SIGTERM: finish the seed in flight, then stop. Second: stop now (drop it)."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing the seed in flight, then stopping "
              f"(again to stop at once)", file=sys.stderr, flush=True)

    def __bool__(self):
        return self.signum is not None


class Progress:
    """tqdm bar with the running accuracy summary of this store."""

    def __init__(self, total, done_accs, quiet: bool):
        from tqdm import tqdm
        self.accs = [a for a in done_accs if math.isfinite(a)]
        self.t0, self.new, self.quiet = time.perf_counter(), 0, quiet
        self.bar = tqdm(total=total, initial=total - self.remaining_of(total, done_accs), unit="seed",
                        dynamic_ncols=True, disable=quiet, smoothing=0.1)
        self.show()

    @staticmethod
    def remaining_of(total, done_accs):
        return total - len(done_accs)

    def summary(self) -> str:
        if not self.accs:
            return "acc n/a"
        n, mean = len(self.accs), sum(self.accs) / len(self.accs)
        std = math.sqrt(sum((a - mean) ** 2 for a in self.accs) / (n - 1)) if n > 1 else 0.0
        return (f"acc {100 * mean:.2f}±{100 * std:.2f}% min {100 * min(self.accs):.2f} "
                f"max {100 * max(self.accs):.2f} (n={n})")

    def show(self):
        rate = 60 * self.new / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{rate:.1f} seeds/min, {self.summary()}")

    def add(self, record):
        self.new += 1
        if math.isfinite(record.test_acc):
            self.accs.append(record.test_acc)
        if self.quiet:
            print(f"seed {record.seed}: {record.status} acc {100 * record.test_acc:.2f}% "
                  f"({record.wall_time_s:.1f}s)", flush=True)
        self.bar.update(1)
        self.show()

    def close(self):
        self.bar.close()


IMAGENET_ONLY = ("weights", "classes", "limit_steps", "limit_batch")


class CifarJob:
    """A CIFAR preset: GPU-resident tensors, seeds trained in packs by the pack engine."""

    def __init__(self, a, base, device):
        from fastseed.engine import compute_dtype
        given = [f"--{n.replace('_', '-')}" for n in IMAGENET_ONLY if getattr(a, n) is not None]
        if given:
            raise FastseedError(f"{' '.join(given)}: only for the imagenet-* presets, not {base.name}")
        self.a, self.device, self.strategy = a, device, a.strategy or "fused"
        self.protocol = base.variant(augment=a.augment or base.augment, fixed=a.fix or base.fixed,
                                     fix_seed=a.fix_seed if a.fix else base.fix_seed,
                                     deterministic=a.deterministic or base.deterministic)
        self.graphs = device.type == "cuda" and self.strategy != "sequential" and not a.no_graphs
        self.dtype = compute_dtype(self.protocol, device, a.dtype)

    def load(self):
        from fastseed.data.cifar import load_cifar10, to_tensors
        self.data = to_tensors(load_cifar10(self.a.data_dir, download=self.a.download), self.device)
        return self.data.test_y[: self.protocol.test_size].cpu().numpy()

    def pack_size(self, log):
        from fastseed.engine.autopack import choose_pack
        if self.a.pack != "auto":
            return self.a.pack
        return choose_pack(self.protocol, self.data, self.device, self.dtype, self.strategy, self.graphs, log=log)

    def train(self, group, commit, stop):
        from fastseed import engine
        engine.train_pack(self.protocol, group, self.data, self.device, dtype=self.a.dtype, strategy=self.strategy,
                          compile=self.a.compile, graphs=self.graphs, on_record=commit, should_stop=lambda: bool(stop))


def file_sha256(path) -> str:
    import hashlib
    path = Path(path)
    if not path.is_file():
        raise FastseedError(f"--weights {path}: no such file")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_finetune(protocol, data_dir, weights):
    """The indexed ImageNet folders (the protocol's classes) and the pretrained backbone."""
    import os
    from fastseed.data.imagenet import index_imagenet
    from fastseed.engine.finetune import ImagenetData
    from fastseed.models.imagenet import load_backbone
    root = Path(data_dir or Path(os.environ.get("FASTSEED_DATA") or "data") / "imagenet")
    data = ImagenetData(index_imagenet(root, "train", classes=protocol.classes),
                        index_imagenet(root, "val", classes=protocol.classes))
    if len(data.train.wnids) != protocol.classes:
        raise FastseedError(f"{root}: {len(data.train.wnids)} classes, {protocol.name} needs "
                            f"{protocol.classes} (use --classes to train on fewer)")
    for split, index in (("train", data.train), ("val", data.val)):
        if index.skipped:
            path, why = index.skipped[0]
            print(f"{split}: skipped {len(index.skipped)} unreadable file(s), e.g. {path}: {why}", flush=True)
    backbone, report = load_backbone(protocol.backbone, weights)
    print(f"{weights}: {report.loaded} tensors loaded"
          + (f", {len(report.dropped)} classifier keys dropped" if report.dropped else "")
          + (f", {len(report.unexpected)} unexpected keys ignored (e.g. {report.unexpected[0]})"
             if report.unexpected else ""), flush=True)
    return data, backbone


class FinetuneJob:
    """An ImageNet preset: a DALI pipeline per seed, one seed at a time, the same backbone for all."""

    def __init__(self, a, base, device):
        wrong = [flag for flag, bad in (("--augment", a.augment), ("--download", a.download),
                                        ("--strategy", a.strategy not in (None, "sequential")),
                                        ("--pack", a.pack not in ("auto", 1)), ("--no-graphs", a.no_graphs)) if bad]
        if wrong:
            raise FastseedError(f"{' '.join(wrong)}: not for {base.name} (ImageNet seeds train one at a time "
                                f"from their own DALI pipeline; the data set is never downloaded)")
        if a.weights is None:
            raise FastseedError(f"{base.name} needs --weights PATH: the pretrained {base.backbone} weight file")
        if a.dtype == "float64":
            raise FastseedError("--dtype float64: ImageNet presets train in float32, float16 or bfloat16")
        self.a, self.device = a, device
        protocol = base.variant(classes=a.classes or base.classes, limit_steps=a.limit_steps or base.limit_steps,
                                limit_batch=a.limit_batch or base.limit_batch, fixed=a.fix or base.fixed,
                                fix_seed=a.fix_seed if a.fix else base.fix_seed,
                                deterministic=a.deterministic or base.deterministic)
        # the weights' digest is in the protocol (its hash, its store) but not in its name: 64 hex digits
        # would drown the name in every table
        self.protocol = dataclasses.replace(protocol, weights=file_sha256(a.weights))

    def load(self):
        self.data, self.backbone = load_finetune(self.protocol, self.a.data_dir, self.a.weights)
        return self.data.val.labels

    def pack_size(self, log):
        return 1

    def train(self, group, commit, stop):
        from fastseed.engine.finetune import train_finetune
        for seed in group:
            commit(train_finetune(self.protocol, seed, self.data, self.backbone, self.device, dtype=self.a.dtype,
                                  compile=self.a.compile, num_threads=self.a.workers))


def run(a, stop: StopFlag) -> int:
    from collections import deque

    from fastseed.engine import resolve_device
    from fastseed.engine.autopack import is_oom
    from fastseed.engine.provenance import code_version
    from fastseed.presets import Finetune, get_preset
    from fastseed.store import Store

    code_version()  # read (and cached) now: records name the code the scan started with, not a later commit
    base = get_preset(a.preset)
    device = resolve_device(a.device)
    job = (FinetuneJob if isinstance(base, Finetune) else CifarJob)(a, base, device)
    protocol = job.protocol
    out = Path(a.out or f"results/{a.preset}.sqlite")
    Store.check(out, protocol.name, protocol.hash)  # refuse before the slow data load
    test_labels = job.load()
    with Store(out, protocol.name, protocol.hash, protocol.to_json()) as store:
        store.set_test_labels(test_labels)
        wanted = range(a.start, a.start + a.seeds)
        done = store.done_seeds()
        pending = deque(s for s in wanted if s not in done)
        done_accs = [r.test_acc for r in store.records() if r.seed in wanted]
        pack = job.pack_size(log=lambda m: print(m, flush=True)) if pending else 1
        how = f"strategy {job.strategy}, pack {pack}" if isinstance(job, CifarJob) else "one seed at a time"
        print(f"{protocol.name} [{protocol.hash[:12]}] on {device}: {len(pending)} of {len(wanted)} seeds "
              f"to train, {len(done_accs)} already in {out}; {how}", flush=True)
        progress = Progress(len(wanted), done_accs, a.no_progress)

        def commit(record):
            store.add(record)
            if pending.popleft() != record.seed:  # records arrive in pack order
                raise RuntimeError(f"record of seed {record.seed} arrived out of order")
            progress.add(record)

        try:
            while pending and not stop:
                group = [pending[i] for i in range(min(pack, len(pending)))]
                try:
                    job.train(group, commit, stop)
                except RuntimeError as e:
                    if not is_oom(e) or pack == 1:
                        raise
                    pack //= 2  # the pack's seeds were not committed: retry them in smaller packs
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    progress.bar.write(f"out of memory: backing off to packs of {pack}")
        except KeyboardInterrupt:
            stop.signum = stop.signum or signal.SIGINT
        finally:
            progress.close()
        print(f"{protocol.name}: {len(store)} seeds in {out}; {progress.summary()}", flush=True)
        if a.csv:
            store.export_csv(a.csv)
        if a.parquet:
            store.export_parquet(a.parquet)
    if pending:
        print("stopped early: rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def main(argv=None) -> int:
    stop = StopFlag()  # installed first: a signal during the slow start-up exits cleanly too
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run(parse(argv), stop)
    except FastseedError as e:
        print(f"fastseed.scan: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted before any seed was trained", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
