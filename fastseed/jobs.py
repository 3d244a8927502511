"""What a scan trains: a job built from a protocol and plain options, never from a command line.

    protocol = protocol_variant(get_preset("smoke"), augment="image", fix=("init",))   # fastseed.recipe
    job = make_job(protocol, Options(device="cpu"))
    labels = job.load()                      # the data, once per process; the test labels for the store
    k = job.pack_size(remaining=100, log=print)
    job.train([0, 1], commit, stop_flag)     # commit(record) as each seed finishes

A job is what a worker needs to turn claimed seeds into records, so every way of running (this
process, one process per GPU, a Ray actor) builds the same job from the same two plain values: the
protocol (what to train, hashed into the store) and the `Options` (how: device, dtype, strategy, …,
never part of the hash). A new flag is one `Options` field, read by the job that uses it. The kinds:
a CIFAR pack (`CifarJob`), an ImageNet fine-tune (`FinetuneJob`), a user's training function
(`FunctionJob`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from fastseed import FastseedError, engine  # engine.train_pack looked up at call time: tests replace it
from fastseed.data.cifar import load_cifar10, to_tensors
from fastseed.engine import compute_dtype, resolve_device
from fastseed.engine.autopack import choose_pack, cpu_pack_cap
from fastseed.engine.checkpoint import checkpoint_path, remove_checkpoint
from fastseed.engine.finetune import load_finetune, train_finetune
from fastseed.engine.pack import choose_strategy, get_strategy
from fastseed.models.imagenet import weights_digest

CHECKPOINT_EVERY_MIN = 10.0  # ImageNet: a kill costs at most this much of a seed's hours


@dataclass(frozen=True)
class Options:
    """How to train, as opposed to what (the protocol): nothing here changes a seed's result beyond
    floating-point layout, so nothing here is part of the protocol's hash. Defaults are the scan's."""
    device: str = "auto"              # auto, cpu, cuda, cuda:N
    dtype: str | None = None          # None: the protocol's on a GPU, float32 on a CPU
    strategy: str | None = None       # None: engine.pack.DEFAULT_STRATEGY (ImageNet: one seed at a time)
    pack: int | str = "auto"          # seeds trained at once, or "auto" (measured on a GPU, 1 on a CPU)
    compile: str | None = None        # a torch.compile mode for the training forward
    graphs: bool = True               # False: never replay training steps as CUDA graphs
    data_dir: str | None = None       # dataset root (None: $FASTSEED_DATA or ./data)
    download: bool = False            # fetch the official CIFAR-10 when it is missing
    weights: str | None = None        # ImageNet: the pretrained backbone's weight file
    loader_threads: int = 4           # ImageNet: DALI CPU threads per worker
    keep_logits: bool = False         # CIFAR: records keep the headline evaluation's logits (float16)
    checkpoints: str | None = None    # ImageNet: the store beside which long seeds keep checkpoints
    checkpoint_every: float | None = None  # ImageNet: minutes between checkpoints (None: CHECKPOINT_EVERY_MIN)
    code_root: str | None = None      # --train: the folder its module is imported from, put on each worker's path

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def one_at_a_time(options: Options) -> list[str]:
    """The flags a job that trains one seed at a time cannot honour: a packing strategy, a pack, no graphs."""
    return [flag for flag, bad in (("--strategy", options.strategy is not None
                                    and get_strategy(options.strategy).together),
                                   ("--pack", options.pack not in ("auto", 1)),
                                   ("--no-graphs", not options.graphs)) if bad]


# ---- CIFAR: GPU-resident tensors, seeds trained in packs -------------------------------------------

class CifarJob:
    """A CIFAR protocol: the data set resident on the device, seeds trained in packs by the pack engine."""

    long_seeds = False  # a seed takes seconds to minutes: no bar of its steps
    stops_mid_seed = False  # a stop finishes the pack in flight
    on_stop = "finishing the seeds in flight"

    def __init__(self, protocol, options: Options, log: Callable[[str], None] = print):
        if options.weights is not None:
            raise FastseedError(f"--weights: only for the imagenet-* presets, not {protocol.name}")
        if options.checkpoint_every is not None:
            raise FastseedError(f"--checkpoint-every: only for the imagenet-* presets (a {protocol.name} seed "
                                f"is not checkpointed: a stop finishes it, a crash loses only the pack in flight)")
        self.protocol = protocol
        self.device = resolve_device(options.device)
        self.strategy = choose_strategy(protocol, options.strategy, log)
        # the strategy decided here travels in the options: a pool's workers do not decide it again
        self.options = dataclasses.replace(options, strategy=self.strategy.name)
        self.graphs = self.device.type == "cuda" and self.strategy.graphs and options.graphs
        self.dtype = compute_dtype(protocol, self.device, options.dtype)
        self.data = None

    @property
    def together(self) -> bool:
        """Whether the seeds of a pack train at once (else one after another)."""
        return self.strategy.together

    def describe(self, pack: int) -> str:
        return f"strategy {self.strategy.name}, pack {pack}"

    def read(self):
        """The data set as plain arrays (checked against its digests), small enough to travel: a Ray
        scan reads it once where it starts and ships it to its actors."""
        return load_cifar10(self.options.data_dir, download=self.options.download)

    def load(self, data=None):
        """The data set, on the device (`data`: what `read` returned elsewhere, else read here); returns
        the test labels the records' predictions refer to."""
        self.data = to_tensors(self.read() if data is None else data, self.device)
        return self.data.test_y[: self.protocol.test_size].cpu().numpy()

    def pack_size(self, remaining: int, log: Callable[[str], None]) -> int:
        """Seeds to claim and train at once: never more than remain. `--pack auto` measures a GPU (1
        on a CPU); an explicit pack on a CPU is capped by an estimate of the memory a seed needs."""
        remaining = max(1, remaining)
        asked = self.options.pack
        if asked == "auto":
            k = choose_pack(self.protocol, self.data, self.device, self.dtype, self.strategy.name, self.graphs,
                            log=log)
            return min(k, remaining)
        k = min(int(asked), remaining)
        if self.device.type == "cpu" and self.together and k > 1:
            cap, per_seed, available = cpu_pack_cap(self.protocol, self.dtype)
            if k > cap:
                log(f"--pack {asked}: capped at {cap}: a seed needs about {per_seed / 2**20:.0f} MiB, "
                    f"{available / 2**30:.1f} GiB of memory is available")
                k = cap
        elif k < int(asked):
            log(f"--pack {asked}: capped at {k}, the seeds left to train")
        return k

    def train(self, seeds: list[int], commit: Callable, stop_flag, on_progress: Callable[[int, int], None] | None = None):
        """Train `seeds` as one pack; `commit(record)` as each finishes. `stop_flag` is polled between the
        seeds of a one-after-another pack; `on_progress(done, total)` after every training step."""
        engine.train_pack(self.protocol, seeds, self.data, self.device, dtype=self.options.dtype,
                          strategy=self.strategy.name, compile=self.options.compile, graphs=self.graphs,
                          on_record=commit, should_stop=lambda: bool(stop_flag), on_progress=on_progress,
                          keep_logits=self.options.keep_logits)


# ---- ImageNet: a DALI pipeline per seed, one seed at a time -----------------------------------------

class FinetuneJob:
    """An ImageNet fine-tune: seeds train one at a time from their own DALI pipeline, all from the
    same pretrained backbone, whose file's sha256 is part of the protocol."""
    together = False
    long_seeds = True  # hours a seed: the scan shows a bar of the steps of the seed in flight

    def __init__(self, protocol, options: Options, log: Callable[[str], None] = print):
        wrong = ["--download"] * options.download + one_at_a_time(options)
        if wrong:
            raise FastseedError(f"{' '.join(wrong)}: not for {protocol.name} (ImageNet seeds train one at a "
                                f"time from their own DALI pipeline; the data set is never downloaded)")
        if options.keep_logits:
            raise FastseedError(f"--keep logits: not for {protocol.name}: 1,000 classes × 50,000 validation "
                                f"images in float16 are 100 MB a seed")
        if options.weights is None:
            raise FastseedError(f"{protocol.name} needs --weights PATH: the pretrained {protocol.backbone} "
                                f"weight file")
        if options.dtype == "float64":
            raise FastseedError("--dtype float64: ImageNet presets train in float32, float16 or bfloat16")
        if options.loader_threads <= 0:
            raise FastseedError(f"--loader-threads must be a positive number, got {options.loader_threads}")
        if options.checkpoint_every is not None and not options.checkpoint_every > 0:
            raise FastseedError(f"--checkpoint-every must be a positive number of minutes, got "
                                f"{options.checkpoint_every}")
        digest = weights_digest(options.weights)
        if protocol.weights and protocol.weights != digest:  # a replay, or a worker of a running scan
            raise FastseedError(f"--weights {options.weights} is not the file the scan used (sha256 "
                                f"{digest[:12]}…, the store's protocol has {protocol.weights[:12]}…)")
        # the weights' digest is in the protocol (its hash, its store) but not in its name: 64 hex digits
        # would drown the name in every table
        self.protocol = dataclasses.replace(protocol, weights=digest)
        self.options, self.log = options, log
        self.device = resolve_device(options.device)

    @property
    def stops_mid_seed(self) -> bool:
        """A stop checkpoints the seed in flight and ends it at once (else: between seeds)."""
        return self.options.checkpoints is not None

    @property
    def on_stop(self) -> str:
        return "checkpointing the seed in flight" if self.stops_mid_seed else "finishing the seed in flight"

    def describe(self, pack: int) -> str:
        every = self.options.checkpoint_every or CHECKPOINT_EVERY_MIN
        return "one seed at a time" + (f", checkpointed every {every:g} min" if self.stops_mid_seed else "")

    def read(self):
        """None: ImageNet does not travel; each worker reads --data-dir (a path every node can read)."""
        return None

    def load(self, data=None):
        self.data, self.backbone = load_finetune(self.protocol, self.options.data_dir, self.options.weights,
                                                 self.log)
        return self.data.val.labels

    def pack_size(self, remaining: int, log: Callable[[str], None]) -> int:
        return 1

    def train(self, seeds: list[int], commit: Callable, stop_flag, on_progress: Callable[[int, int], None] | None = None):
        """Train `seeds` one after another; `commit(record)` as each finishes. With checkpoints, a seed
        resumes from its checkpoint, saves one every --checkpoint-every minutes, and on `stop_flag` saves one
        and raises fastseed.engine.checkpoint.SeedStopped at once; its file is removed once the record
        is committed. `on_progress(done, total)` after every step, counted from the resumed step."""
        every_s = 60 * (self.options.checkpoint_every or CHECKPOINT_EVERY_MIN)
        for seed in seeds:
            if stop_flag:
                break
            path = None
            if self.stops_mid_seed:
                path = checkpoint_path(self.options.checkpoints, self.protocol.hash, seed)
                if path.exists():
                    self.log(f"seed {seed}: resuming from its checkpoint {path}")
            commit(train_finetune(self.protocol, seed, self.data, self.backbone, self.device,
                                  dtype=self.options.dtype, compile=self.options.compile,
                                  num_threads=self.options.loader_threads, checkpoint=path,
                                  checkpoint_every_s=every_s, should_stop=(lambda: bool(stop_flag)) if path else None,
                                  on_progress=on_progress))
            if path is not None:
                remove_checkpoint(path)  # only now: the record is committed


# ---- a user's training function: one call a seed ---------------------------------------------------

class FunctionJob:
    """A user's training function (`--train package.module:function`): a seed is one call,
    `function(seed, device, **knobs)`, in this process, one after another (fastseed.engine.function).
    The data set is the function's own business: nothing is read here, and the test labels come with
    each result (the store keeps them once). The module must still have the protocol's digest."""
    together = False
    long_seeds = False
    stops_mid_seed = False
    on_stop = "finishing the seed in flight"

    def __init__(self, protocol, options: Options, log: Callable[[str], None] = print):
        wrong = [flag for flag, bad in (("--weights", options.weights is not None),
                                        ("--checkpoint-every", options.checkpoint_every is not None),
                                        ("--download", options.download), ("--dtype", options.dtype is not None),
                                        ("--compile", options.compile is not None)) if bad] + one_at_a_time(options)
        if wrong:
            raise FastseedError(f"{' '.join(wrong)}: not for {protocol.name} (a training function trains one seed "
                                f"a call, on its own data, in the precision it chooses)")
        import sys
        from fastseed.usercode import checked_file, load
        if options.code_root and options.code_root not in sys.path:  # a pool's child, a Ray actor
            sys.path.insert(0, options.code_root)
        checked_file(protocol.train, protocol.train_digest, "--train", "function")
        self.function = load(protocol.train, "--train", "function")
        self.protocol, self.options, self.log = protocol, options, log
        self.device = resolve_device(options.device)

    def describe(self, pack: int) -> str:
        return f"one seed a call of {self.protocol.train}"

    def read(self):
        """None: the function reads its own data, wherever it runs."""
        return None

    def load(self, data=None):
        """None: the test labels come with each seed's result."""
        return None

    def pack_size(self, remaining: int, log: Callable[[str], None]) -> int:
        return 1

    def train(self, seeds: list[int], commit: Callable, stop_flag, on_progress: Callable[[int, int], None] | None = None):
        """Call the function for each of `seeds` in turn; `commit(record)` as each returns. `stop_flag` is
        polled between seeds; an exception in the function stops here (fastseed.UserCodeError)."""
        from fastseed.engine.function import train_function
        for seed in seeds:
            if stop_flag:
                break
            commit(train_function(self.protocol, self.function, seed, self.device, self.options.keep_logits))


JOBS = {"cifar10": CifarJob, "imagenet": FinetuneJob, "function": FunctionJob}  # a protocol's `dataset` → its job


def make_job(protocol, options: Options, log: Callable[[str], None] = print):
    """The job that trains `protocol` under `options`; refuses options the protocol cannot use."""
    kind = JOBS.get(protocol.dataset)
    if kind is None:
        raise FastseedError(f"protocol {protocol.name!r}: no job trains data set {protocol.dataset!r}")
    return kind(protocol, options, log)
