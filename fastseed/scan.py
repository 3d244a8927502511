"""python -m fastseed.scan — train one protocol under many seeds; one durable record per seed.

    python -m fastseed.scan --seeds 10000                    # picard-short, seeds 0..9999
    python -m fastseed.scan --preset smoke --seeds 8 --device cpu
    python -m fastseed.scan --seeds 100000 --gpus all        # one worker per GPU, one store, one bar
    python -m fastseed.scan --seeds 100000 --ray auto        # one actor per GPU of a Ray cluster
    python -m fastseed.scan --set lr=0.3 --until-ci 0.1      # a variant, until its mean is known to ±0.1 pp
    python -m fastseed.scan --train examples.digits_mlp:train --seeds 300 --workers 2 --until-ci 0.1

Rerunning the same command resumes: seeds already in the store are skipped. Several scans (or
workers) on one store share the range: each seed is trained once. Ctrl-C (or SIGTERM) finishes and
commits the seeds in flight, then exits; a second Ctrl-C drops them and exits at once. A stopping rule
(--until-ci, --versus) ends the scan as soon as it decides; --seeds is then the cap.

Exit codes: 0 the range is stored (or the stopping rule decided), 1 workers failed before it was (or a
training function raised: its traceback is printed), 2 bad input, 130 stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fastseed import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, FastseedError, UserCodeError
from fastseed.cli import Parser, name_list, nonnegative_int, pack_or_auto, positive_int, positive_minutes
from fastseed.workers.local import StartupInterrupted, StopFlag

# After a training function raised: what resumes, and what does not
RESUME = ("the same command resumes once the cause is gone; an edit of the function's file is a new protocol, "
          "whose seeds go to a store of their own")
# A range [start, end) is handed to the store as SQLite INTEGERs, signed 64-bit: end ≤ 2**63 - 1.
RANGE_END = 2**63 - 1


def parse(argv):
    p = Parser(prog="python -m fastseed.scan", description=__doc__.split("\n")[0])
    _range_args(p)
    _protocol_args(p)
    _training_args(p)
    _rule_args(p.add_argument_group("stopping rules (anytime-valid confidence sequences; --seeds is the cap)"))
    _worker_args(p.add_argument_group("several workers on one store"))
    _imagenet_args(p.add_argument_group("ImageNet fine-tuning presets (imagenet-*)"))
    _output_args(p)
    a = p.parse_args(argv)
    _check_together(a)
    return a


def _range_args(p) -> None:
    p.add_argument("--seeds", type=positive_int, default=10000, metavar="N", help="number of seeds (default 10000)")
    p.add_argument("--start", type=nonnegative_int, default=0, metavar="S", help="first seed (default 0)")


def _protocol_args(p) -> None:
    from fastseed.recipe.presets import PRESETS
    p.add_argument("--preset", default=None, help=f"protocol (default picard-short): {', '.join(PRESETS)}")
    p.add_argument("--train", default=None, metavar="package.module:function",
                   help="your own training function instead of a preset: function(seed, device, **knobs) returns "
                        "the seed's metric (see fastseed/engine/function.py); its keyword arguments are the knobs "
                        "--set changes; imported from the current directory, its file's sha256 in the protocol")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one knob of the protocol (repeatable; a distinct protocol in the store): "
                        "--set lr=0.3 --set cutout=0; --show-protocol lists every knob")
    p.add_argument("--protocol", default=None, metavar="FILE",
                   help="a protocol file (TOML: base = \"PRESET\", name, model, [set] knob = value)")
    p.add_argument("--model", default=None, metavar="package.module:factory",
                   help="your own CIFAR model: factory() returns an nn.Module mapping N×3×32×32 to N×10 "
                        "(imported from the current directory; its file's sha256 is part of the protocol)")
    p.add_argument("--show-protocol", action="store_true",
                   help="print every knob of the resolved protocol and where it came from, then exit")
    p.add_argument("--augment", default=None, choices=["chunk", "image", "none"],
                   help="override the protocol's augmentation mode (a distinct protocol in the store)")
    p.add_argument("--fix", type=name_list, default=(), metavar="STREAMS",
                   help="comma-separated random streams held at --fix-seed in every run: init, order, "
                        "augment (ImageNet: head, order, augment); a distinct protocol in the store")
    p.add_argument("--fix-seed", type=nonnegative_int, default=0, metavar="R",
                   help="the seed fixed streams draw from")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN/cuBLAS kernels (a distinct protocol in the store)")


def _training_args(p) -> None:
    from fastseed.engine import STRATEGIES
    p.add_argument("--data-dir", default=None, help="dataset root (default $FASTSEED_DATA or ./data)")
    p.add_argument("--download", action="store_true", help="fetch the official CIFAR-10 if it is missing")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--pack", type=pack_or_auto, default="auto", metavar="K|auto",
                   help="seeds trained at once; auto (default) measures this GPU (1 on a CPU)")
    p.add_argument("--strategy", default=None, choices=list(STRATEGIES),
                   help="how a pack trains: fused (one grouped model, the default when the model fuses), "
                        "streams (replicas on CUDA streams; the default for a --model that does not fuse) "
                        "or sequential (one after another)")
    p.add_argument("--compile", default=None, metavar="MODE",
                   help="torch.compile the training forward (default, reduce-overhead, max-autotune)")
    p.add_argument("--no-graphs", action="store_true", help="do not replay training steps as CUDA graphs")
    p.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32", "float64"],
                   help="compute dtype (default: the protocol's on a GPU, float32 on the CPU)")
    p.add_argument("--keep", default=None, choices=["logits"],
                   help="logits: records keep the headline evaluation's logits (float16, about 180 kB a CIFAR "
                        "seed compressed), for the report's soft votes and calibration; not for ImageNet "
                        "(100 MB a seed)")


def _rule_args(r) -> None:
    r.add_argument("--until-ci", type=float, default=None, metavar="W",
                   help="stop once the 95 %% confidence sequence of the mean accuracy is within ±W "
                        "percentage points (a training function's metric: in its unit; at least 10 seeds)")
    r.add_argument("--versus", default=None, metavar="STORE",
                   help="stop once this protocol is decided better, worse, or within ±--margin of the one "
                        "in STORE (another store); STORE's seeds of the range are trained in turn when needed")
    r.add_argument("--margin", type=float, default=None, metavar="M",
                   help="with --versus: a difference within ±M percentage points is negligible (default 0)")
    r.add_argument("--ci-method", default=None, choices=["normal", "bounded"],
                   help="normal (default: the runs that do not collapse are normal, t-mixture; a run far "
                        "below them is a collapse, any rate, and then only the mean of all runs is decided) "
                        "or bounded (empirical Bernstein: no assumption but the range [0, 100], thousands of "
                        "seeds)")


def _worker_args(w) -> None:
    w.add_argument("--gpus", default=None, metavar="all|N|I,J",
                   help="one worker process per GPU: all, the first N, or these indices")
    w.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="N worker processes on --device (e.g. --workers 4 --device cpu), at most what the "
                        "machine holds (seeds left, cores, memory); with --ray, N actors")
    w.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="train on a Ray cluster, one actor per GPU (or CPU): auto, HOST:PORT or ray://HOST:PORT "
                        "(without ADDRESS: a Ray started here); needs pip install 'fastseed[ray]'")


def _imagenet_args(g) -> None:
    g.add_argument("--weights", default=None, metavar="PATH",
                   help="the pretrained backbone's weight file (required; nothing is downloaded)")
    g.add_argument("--classes", type=positive_int, default=None, metavar="N", help="train on the first N classes only")
    g.add_argument("--limit-steps", type=positive_int, default=None, metavar="N", help="at most N steps a phase")
    g.add_argument("--limit-batch", type=positive_int, default=None, metavar="N", help="at most N images a batch")
    g.add_argument("--loader-threads", type=positive_int, default=4, metavar="N",
                   help="DALI CPU threads of each worker (default 4)")
    g.add_argument("--checkpoint-every", type=positive_minutes, default=None, metavar="MIN",
                   help="save the seed in flight every MIN minutes (default 10), beside the store; a rerun "
                        "resumes it, and the first Ctrl-C checkpoints it and stops at once")


def _output_args(p) -> None:
    p.add_argument("--out", default=None, help="results store (default results/<protocol name>.sqlite)")
    p.add_argument("--csv", default=None, help="also export the store to this CSV when done")
    p.add_argument("--parquet", default=None, help="also export the store to this Parquet file when done")
    p.add_argument("--no-progress", action="store_true", help="print a line per seed instead of a bar")


def _check_together(a) -> None:
    """What no single argument can check: the range's end, flags that exclude each other."""
    from fastseed.workers.stopping import check_rule_flags
    if a.start + a.seeds > RANGE_END:
        raise FastseedError(f"--start {a.start} --seeds {a.seeds}: the last seed would be {a.start + a.seeds - 1}; "
                            f"a scan's seeds end at 2**63 - 2 = {RANGE_END - 1} (its range's end is a signed "
                            f"64-bit integer)")
    if a.train is not None and (a.preset is not None or a.model is not None or a.protocol is not None):
        given = [f for f, v in (("--preset", a.preset), ("--model", a.model), ("--protocol", a.protocol)) if v]
        raise FastseedError(f"--train and {' '.join(given)}: give one (a protocol file names its function as "
                            f"train = \"package.module:function\")")
    if a.train is None and a.protocol is None and a.preset is None:
        a.preset = "picard-short"
    if a.ray is not None and a.gpus is not None:
        raise FastseedError("--gpus and --ray: give one (on a cluster each actor gets a GPU; --workers N caps "
                            "the actors)")
    check_rule_flags(a.until_ci, a.versus, a.margin, a.ci_method)
    if a.versus is not None and (a.gpus is not None or a.workers is not None or a.ray is not None):
        raise FastseedError("--versus trains both protocols in turn in this process: drop --gpus/--workers/--ray "
                            "(--until-ci works with them)")


def resolved(a):
    """The protocol the command line asks for (fastseed.recipe.overrides.Resolved): the preset or protocol
    file, each --set, --model, then the variation flags."""
    from fastseed.recipe.overrides import resolve_variant
    return resolve_variant(a.preset, sets=a.set, protocol_file=a.protocol, model=a.model, train=a.train,
                           augment=a.augment, fix=a.fix, fix_seed=a.fix_seed, deterministic=a.deterministic,
                           classes=a.classes, limit_steps=a.limit_steps, limit_batch=a.limit_batch)


def out_path(a, protocol) -> Path:
    """--out, else results/<protocol name>.sqlite (Recipe.default_store)."""
    return Path(a.out) if a.out else protocol.default_store


def options(a, device: str, out: Path, protocol=None):
    from fastseed.jobs import Options
    train, root = getattr(protocol, "train", None), None
    if train:  # a training function: the folder its module is imported from goes to the workers
        from fastseed.usercode import code_root
        root = code_root(train, "--train", "function")
    return Options(device=device, dtype=a.dtype, strategy=a.strategy, pack=a.pack, compile=a.compile,
                   graphs=not a.no_graphs, data_dir=a.data_dir, download=a.download, weights=a.weights,
                   loader_threads=a.loader_threads, keep_logits=a.keep == "logits",
                   checkpoint_every=a.checkpoint_every, checkpoints=str(Path(out).absolute()),
                   code_root=root)


def build(a, device: str):
    """The job (protocol + options) the parsed command line asks for, on `device`."""
    from fastseed.jobs import make_job
    protocol = resolved(a).protocol
    return make_job(protocol, options(a, device, out_path(a, protocol), protocol),
                    log=lambda line: print(line, flush=True))


def run(a, stop_flag: StopFlag) -> int:
    from fastseed.engine.provenance import code_version
    from fastseed.workers.pool import pool_devices
    if a.show_protocol:  # before any data, device or store
        print(resolved(a).describe())
        return 0
    code_version()  # read (and cached) now: records name the code the scan started with, not a later commit
    # a Ray driver trains nothing: it reads the data here (its job on the CPU), the actors choose devices
    devices = pool_devices(a.gpus, a.workers, a.device) if a.ray is None else ["cpu"]
    # a pool's parent trains nothing: its job checks the options and names the protocol, for the
    # first worker's kind of device
    job = build(a, devices[0] if len(devices) == 1 else devices[0].split(":")[0])
    out = out_path(a, job.protocol)
    check_exports(a, out)
    start, end = a.start, a.start + a.seeds
    say = lambda line: print(line, flush=True)
    from fastseed.workers.stopping import stopping_rule
    stopping, versus = stopping_rule(job, out, start, end, until_ci=a.until_ci, versus=a.versus, margin=a.margin,
                                     method=a.ci_method, strategy=a.strategy, log=say)
    if stopping is not None:
        say(f"stopping rule: {stopping.flags}; at most {a.seeds} seeds")
    until = stopping.decided if stopping is not None else None
    try:
        if a.ray is not None:
            from fastseed.workers.ray import scan_ray
            outcome = scan_ray(job, out, start, end, address=a.ray, device=a.device, workers=a.workers,
                               stop_flag=stop_flag, quiet=a.no_progress, log=say, until=until)
        elif len(devices) == 1:
            from fastseed.workers.local import scan_here
            outcome = scan_here(job, out, start, end, stop_flag=stop_flag, quiet=a.no_progress, log=say,
                                stopping=stopping, versus=versus)
        else:
            from fastseed.workers.pool import scan_pool
            outcome = scan_pool(job, out, start, end, devices, stop_flag=stop_flag, quiet=a.no_progress, log=say,
                                until=until)
        stop_flag.closing()  # what follows ends the scan: a signal no longer interrupts it
        if stopping is not None:
            stopping.decided()  # the commits of the last packs in flight are read too
    finally:
        if stopping is not None:
            stopping.close()  # its readers first: the last writer to close cleans up the -wal file
    if stopping is not None:
        stopping.record(job.protocol, out)
    say(f"{job.protocol.name}: {outcome.stored} of {outcome.total} seeds in {out}; {outcome.summary}")
    if a.csv or a.parquet:
        from fastseed.store import Store
        with Store.open(out) as store:
            if a.csv:
                store.export_csv(a.csv)
            if a.parquet:
                store.export_parquet(a.parquet)
    if stopping is not None and stopping.decision is not None:
        say(f"stopped: the question is answered: {stopping.decision.reason}")
        return 0
    if outcome.complete:
        if stopping is not None:
            say(f"the stopping rule did not decide within the {a.seeds} seeds of --seeds")
        return 0
    if stop_flag:
        print("stopped early: rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.error is not None:  # its traceback is above
        print(f"fastseed.scan: {outcome.error}; the {outcome.stored} seeds stored are kept ({RESUME})",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"{outcome.total - outcome.stored} seeds not trained ({outcome.failed} worker(s) failed): "
          f"rerun the same command to resume", file=sys.stderr)
    return EXIT_FAILED


def check_exports(a, out: Path) -> None:
    """--csv and --parquet, refused before anything trains if they cannot be written."""
    from fastseed.store.file import check_export
    for flag, path in (("--csv", a.csv), ("--parquet", a.parquet)):
        if path is not None:
            try:
                check_export(Path(path), out)
            except FastseedError as e:
                raise FastseedError(f"{flag} {path}: {e}") from None
    if a.parquet is not None:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise FastseedError("--parquet needs pyarrow: pip install 'fastseed[parquet]'") from None


def main(argv=None) -> int:
    """The command line (`argv` None: sys.argv; its handlers then stay until the process ends)."""
    stop_flag = StopFlag()  # installed first: a signal during the slow start-up stops it with one line
    with stop_flag.installed(keep=argv is None):
        try:
            return run(parse(argv), stop_flag)
        except FastseedError as e:
            print(f"fastseed.scan: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except UserCodeError as e:  # in this process: the function's own traceback, the seeds before it kept
            print(e.traceback_text.rstrip("\n"), file=sys.stderr)
            print(f"fastseed.scan: {e}; the seeds stored before it are kept ({RESUME})", file=sys.stderr)
            return EXIT_FAILED
        except StartupInterrupted as e:
            print(f"fastseed.scan: {e}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:  # a second signal, outside the packs (those end in their workers)
            print("fastseed.scan: stopped at once: rerun the same command to resume", file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
