"""The GPU campaign: everything fastseed needs measured on a GPU, in one command that fits a short
device window and is rehearsed on the CPU in CI, so no typo is first found on the GPU (issue #16).

    PYTHONPATH=. PYTHONUNBUFFERED=1 python3 bench/gpu_campaign.py --data-dir /root/d --out $OUT --budget-s 420
    PYTHONPATH=. python bench/gpu_campaign.py --rehearse --data-dir data --out /tmp/rehearsal   # CPU, < 2 min
    python bench/gpu_campaign.py --table OUT/campaign.jsonl      # the final table again, from the lines

Phases, in order, each with its share of the budget (counted from process start, imports included):
  a  5 %  environment (first line printed: GPU, driver, CUDA, cuDNN, torch, triton, DALI/ray absent,
          commit); the fp16 matmul peak and the device-to-device copy bandwidth, measured
  b 10 %  kernels: lsce and augment compiled by Triton against their PyTorch references (agreement,
          time per call after compilation, compile time), augment's fraction of the copy bandwidth
  c 25 %  picard-short training steps per strategy at K = 1, 8, 32 with the engine's own pieces (build,
          GraphedStep, evaluate): graph capture, s/step after warm-up, projected s/seed (s/step × 2,200
          steps + 6 evaluations), fraction of the matmul peak; then the `--pack auto` choice
  d 45 %  full picard-short seeds at the fastest setting of c until its share is spent, against
          Picard's Table 1 (90.02 ± 0.23, min 89.01, max 90.83): a one-sample t interval of the mean, a
          chi-square interval of the std, and a stated verdict (or "too few seeds to tell")
  e rest  GPU non-determinism: seed 0 trained three times alone (same layout each time) and once in
          another layout (its pack in d), spread in points of accuracy
A phase starts with share × (time left) / (shares of the phases left), so time a phase leaves unused
flows on; it is skipped when that is less than what it needs (its first unit of work, estimated from
what was measured before), and cut (SIGALRM) when it overruns, so later phases are never starved.
A phase that raises is logged with its traceback and the campaign goes on. `--phases ad` runs only
those phases. Exit code 0 once started (the table says what failed); 2 for bad input (one line on
stderr), e.g. an --out that already holds a campaign (never overwritten).

Output files in --out (three, each flushed and fsynced as it grows, so a killed run keeps what it
measured):
  campaign.jsonl  one JSON object per line (the results; NaN/inf written as null):
      every line: t (s since start), phase ("a".."e", null for env/end), kind, then by kind:
      env         device, gpu, driver, cuda, cudnn, torch, triton, triton_interpreted, dali, ray
                  (false = absent), commit (null = unknown), dirty, python, host, scale, protocol, budget_s,
                  rehearsal, command
      phase       status (done | skipped | failed | cut), title, allotted_s, used_s, reason, error
      peak        flops_per_s, n, dtype                     (a: dense n×n matmul)
      copy        gbps, bytes                               (a: read + write bytes / s)
      kernel      name (lsce | augment), shape, dtype, agree (bool), max_abs_diff | identical,
                  compile_s, s_triton, s_torch, speedup, gbps, fraction_of_copy (augment)
      data        source, train, test, load_s
      step        strategy, k, graphs, captured, capture_error (GraphedStep's line), build_s, s_per_step,
                  s_per_seed_step, eval_s_per_seed, steps_per_seed, evals, projected_s_per_seed,
                  fraction_of_peak; or error (e.g. out of memory)
      pack_auto   strategy, k, log (choose_pack's own lines)
      seed        seed, status, acc (0–1), loss, headline_epoch, wall_s, pack {strategy,size,slot,seeds},
                  predictions_sha256, eval_curve, train_curve        (d; kind "repeat" in e, + run)
      table1      n, mean, std, min, max, ci_mean, ci_std, verdict, std_verdict, outside_range,
                  reference, setting {strategy,k}, protocol, s_per_seed (measured)  (d; accuracies in %)
      nondeterminism  seed, layout, runs, accs (%), spread_pp, std_pp, distinct_predictions,
                  other_layout, other_acc, layout_diff_pp             (e)
      end         statuses {phase: status}, skipped, failed, cut (lists of phases), total_s
  campaign.log    everything printed, stderr included (graph-capture failures, warnings, tracebacks)
  summary.md      the final table (also printed last on stdout), rewritten after every phase

Reading the results: summary.md is the table to read first; README's numbers come from campaign.jsonl —
speed from the `step` lines (projected_s_per_seed, fraction_of_peak) and the d line `table1`
(n, mean ± std, min, max, measured s_per_seed), with `env` for device and commit. Commit the three
files under bench/results/<date>-<gpu>/. If the run was killed before its table, `--table` rebuilds
it from campaign.jsonl on any machine.

`--rehearse` runs every phase on the CPU at toy scale (REHEARSAL below: a smoke-sized picard-short,
kernels under triton's interpreter, packs of 1 and 2, two seeds); bench/test_gpu_campaign.py runs it.
The GPU machine has torch, triton, torchvision, timm, pandas, scipy, matplotlib and tqdm, no network
and no DALI: nothing else is imported, and fastseed's pieces are imported inside the phases, so a
missing one fails its phase, not the run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import importlib.util
import io
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

STARTED = time.monotonic()  # the budget counts from here (torch's import included): the window is wall time

REPO = Path(__file__).resolve().parents[1]
# Picard 2021 (arXiv 2109.08203), Table 1, short runs: 10,000 seeds, accuracy in %.
TABLE1 = {"mean": 90.02, "std": 0.23, "min": 89.01, "max": 90.83, "n": 10_000}
SHARES = {"a": 5, "b": 10, "c": 25, "d": 45, "e": 15}  # percent of the time left, see the docstring
TITLES = {"a": "environment", "b": "kernels", "c": "training steps", "d": "seeds vs Table 1",
          "e": "non-determinism"}
AGREE_HALF_WIDTH = 0.25  # pp: a CI of the mean wider than ±this (about Table 1's std) cannot agree
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # Picard's normalisation (kernels)


@dataclass(frozen=True)
class Scale:
    """Every size that differs between the GPU campaign and its CPU rehearsal, in one table."""
    name: str
    protocol: str              # preset; the rehearsal shrinks it further (protocol())
    matmul: tuple              # (n, dtype name) of the peak matmul
    copy_bytes: int            # buffer of the copy-bandwidth measurement
    loss_shape: tuple          # (K, B, C) of the lsce check: Picard's pack of 16 on the GPU
    augment_shape: tuple       # (images, batch) of the augment check: 50,000 → 16·500 on the GPU
    reps: int                  # timed calls per kernel / matmul / copy measurement
    configs: tuple             # (strategy, K) of phase c, in order of importance
    warmup: int                # untimed steps: 3 eager (GraphedStep.WARMUP) + capture + one replay
    steps: int                 # timed steps
    max_seeds: int | None      # phase d stops there (None: when its share is spent)
    repeats: int               # runs of the same seed in phase e
    floors: dict               # seconds a phase needs to start when nothing measured says better
                               # (c, d, e: loading the data included)
    fallback: tuple            # (strategy, K) for d when phase c measured nothing (e: sequential)

    def protocol_for(self):
        from fastseed.recipe.presets import get_preset
        protocol = get_preset(self.protocol)
        if self.name == "rehearsal":  # 2 epochs of 4 steps of 100 images, 500 test images: ~1 s a seed
            protocol = protocol.variant(epochs=2, train_size=400, test_size=500, batch_size=100, chunk_size=100,
                                        lr_decay_end=2)
        return protocol


GPU = Scale(name="gpu", protocol="picard-short", matmul=(8192, "float16"), copy_bytes=1 << 30,
            loss_shape=(16, 500, 10), augment_shape=(50_000, 16 * 500), reps=100,
            configs=(("sequential", 1), ("fused", 1), ("fused", 8), ("fused", 32), ("streams", 1),
                     ("streams", 8), ("streams", 32)),
            warmup=5, steps=10, max_seeds=None, repeats=3,
            floors={"a": 3, "b": 8, "c": 20, "d": 60, "e": 45}, fallback=("fused", 8))
REHEARSAL = Scale(name="rehearsal", protocol="smoke", matmul=(256, "float32"), copy_bytes=1 << 22,
                  loss_shape=(2, 7, 10), augment_shape=(16, 4), reps=2,
                  configs=(("sequential", 1), ("fused", 1), ("fused", 2), ("streams", 1), ("streams", 2)),
                  warmup=1, steps=2, max_seeds=2, repeats=3,
                  floors={"a": 0.2, "b": 3, "c": 10, "d": 15, "e": 15}, fallback=("sequential", 1))


class PhaseCut(BaseException):
    """Raised by SIGALRM when a phase overruns its share. A BaseException, so the engine's own
    `except RuntimeError` (graph capture, out-of-memory retries) cannot swallow it."""


class Alarm:
    """The SIGALRM handler: it cuts the phase (raises PhaseCut) when its time is up, and again every
    second after (in case library code turned the first cut into an error it swallows, e.g. a graph
    capture that then fails and falls back to eager steps), except while `held` (a line or a phase's
    summary is being written), when the cut waits for the end of it. Masking the signal would not do:
    it may hit any of torch's threads, while Python runs its handler in the main one."""

    def __init__(self):
        self.armed, self.holding, self.pending = False, 0, False

    def __call__(self, signum, frame):
        if not self.armed:
            return
        if self.holding:
            self.pending = True
        else:
            raise PhaseCut()

    def arm(self, seconds: float):
        self.armed, self.pending = True, False
        signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)

    def disarm(self):
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.pending = False

    @contextlib.contextmanager
    def held(self):
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
            if not self.holding and self.pending:
                self.pending = False
                raise PhaseCut()


ALARM = Alarm()


class Tee:
    """A text stream that writes through to `primary` and also to `copy` (the log, or a buffer)."""

    def __init__(self, primary, copy):
        self.primary, self.copy = primary, copy

    def write(self, text):
        self.primary.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self):
        self.primary.flush()
        self.copy.flush()

    def __getattr__(self, name):  # fileno, isatty, encoding… of the real stream
        return getattr(self.primary, name)


def finite(value):
    """JSON without NaN/inf (strict parsers refuse them): non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class Campaign:
    """One run: its budget and phase deadlines, its output files, the lines written so far, and the
    facts later phases build on (peak, copy bandwidth, the data on the device)."""

    def __init__(self, out: Path, budget_s: float, scale: Scale, data_dir, device):
        self.out, self.budget_s, self.scale, self.data_dir, self.device = out, budget_s, scale, data_dir, device
        self.lines, self.facts, self.phase, self.deadline = [], {}, None, math.inf
        self.jsonl = open(out / "campaign.jsonl", "a", encoding="utf-8")
        self.log = open(out / "campaign.log", "a", encoding="utf-8")
        self._data = None

    # --- time ----------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - STARTED

    def budget_left(self) -> float:
        return self.budget_s - self.elapsed()

    def left(self) -> float:
        """Seconds until the current phase's deadline."""
        return min(self.deadline, self.budget_s) - self.elapsed()

    def fits(self, seconds: float) -> bool:
        return seconds <= self.left()

    # --- output --------------------------------------------------------------------------------
    def say(self, text: str):
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def emit(self, kind: str, **fields) -> dict:
        line = {"t": round(self.elapsed(), 3), "phase": self.phase, "kind": kind, **finite(fields)}
        text = json.dumps(line, separators=(",", ":"))
        with ALARM.held():  # a cut never leaves half a line, nor a line on disk that the table lacks
            self.jsonl.write(text + "\n")
            self.jsonl.flush()
            os.fsync(self.jsonl.fileno())
            self.lines.append(line)
        return line

    def write_table(self) -> str:
        text = table(self.lines)
        tmp = self.out / "summary.md.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, self.out / "summary.md")
        return text

    # --- shared measurements -------------------------------------------------------------------
    def data(self):
        """CIFAR-10 on the device, loaded by the first phase that needs it (its time counts there)."""
        if self._data is None:
            from fastseed.data.cifar import load_cifar10, to_tensors
            t0 = time.perf_counter()
            raw = load_cifar10(self.data_dir)
            self._data = to_tensors(raw, self.device)
            self.emit("data", source=raw.source, train=int(raw.train_x.shape[0]), test=int(raw.test_x.shape[0]),
                      load_s=time.perf_counter() - t0)
        return self._data

    def sync(self):
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def of_kind(self, kind: str, phase: str | None = None) -> list[dict]:
        return [x for x in self.lines if x["kind"] == kind and (phase is None or x["phase"] == phase)]


def seconds_per_call(fn, reps: int, device) -> float:
    """fn() once to warm up (compilation, autotuning), then `reps` calls timed with one sync at the
    end, so launch latency overlaps as it does in training (CUDA events on a GPU)."""
    import torch
    fn()
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


# --- phase a: environment ------------------------------------------------------------------------
def read_commit(root: Path) -> str | None:
    """HEAD's commit read from the .git files themselves (the GPU machine may have no git): a plain
    .git folder or a worktree's `gitdir:` file, loose or packed refs."""
    git = root / ".git"
    try:
        if git.is_file():
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = git / "commondir"
        folders = [git] + ([(git / common.read_text().strip()).resolve()] if common.is_file() else [])
        for folder in folders:
            if (folder / ref).is_file():
                return (folder / ref).read_text().strip()
            packed = folder / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except (OSError, IndexError):
        pass
    return None


def environment(device, scale: Scale) -> dict:
    """What this machine has, cheaply (no measurement): the campaign's first line."""
    import torch

    def found(name):
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # e.g. a missing parent package (nvidia for nvidia.dali)
            return False

    try:
        from fastseed.engine.provenance import code_version
        version = code_version()
    except Exception:  # noqa: BLE001 - a broken import must not stop the first line
        version = {"commit": None, "dirty": None}
    commit = version.get("commit") or read_commit(REPO)
    driver = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10, check=False)
            driver = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    triton = None
    if found("triton"):
        import triton as triton_module
        triton = triton_module.__version__
    cuda = device.type == "cuda"
    return {"device": device.type, "gpu": torch.cuda.get_device_name(device) if cuda else None,
            "driver": driver, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "torch": torch.__version__, "triton": triton, "triton_interpreted": scale.name == "rehearsal",
            "dali": found("nvidia.dali"), "ray": found("ray"),
            "commit": commit, "dirty": version.get("dirty"), "python": platform.python_version(),
            "host": platform.node(), "scale": scale.name, "protocol": scale.protocol}


def found_line(env: dict, budget_s: float, out: Path) -> str:
    what = (f"{env['gpu']} (driver {env['driver'] or '?'}, CUDA {env['cuda']}, cuDNN {env['cudnn']})"
            if env["device"] == "cuda" else "no GPU: rehearsal on the CPU, kernels interpreted")
    libs = ", ".join(f"{n} {'present' if env[n] else 'absent'}" for n in ("dali", "ray"))
    commit = env["commit"][:12] + (" (modified)" if env["dirty"] else "") if env["commit"] else "unknown"
    return (f"gpu_campaign: found {what}; torch {env['torch']}, triton {env['triton'] or 'absent'}; {libs}; "
            f"commit {commit}; budget {budget_s:.0f} s; out {out}")


def measure_environment(run: Campaign):
    import torch
    n, dtype = run.scale.matmul
    a = torch.randn(n, n, device=run.device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=run.device).to(getattr(torch, dtype))
    peak = 2 * n**3 / seconds_per_call(lambda: a @ b, max(run.scale.reps // 2, 2), run.device)
    run.facts["peak_flops"] = peak
    run.emit("peak", flops_per_s=peak, n=n, dtype=dtype)
    run.say(f"a: matmul peak {peak / 1e12:.3g} TFLOP/s ({dtype}, n={n})")
    measure_copy(run)


def measure_copy(run: Campaign) -> float:
    import torch
    src = torch.empty(run.scale.copy_bytes, dtype=torch.uint8, device=run.device).fill_(7)
    dst = torch.empty_like(src)
    gbps = 2 * src.nbytes / seconds_per_call(lambda: dst.copy_(src), run.scale.reps, run.device) / 1e9
    run.facts["copy_gbps"] = gbps
    run.emit("copy", gbps=gbps, bytes=src.nbytes)
    run.say(f"{run.phase}: device-to-device copy {gbps:.0f} GB/s (read + write)")
    return gbps


# --- phase b: kernels ----------------------------------------------------------------------------
@contextlib.contextmanager
def kernels_compiled_or_interpreted(run: Campaign):
    """On the CPU the Triton kernels run under the interpreter for this phase only (elsewhere the
    engine keeps its PyTorch references); on a GPU they compile."""
    if run.device.type == "cuda":
        yield
        return
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


def check_kernels(run: Campaign):
    with kernels_compiled_or_interpreted(run):
        check_lsce(run)
        check_augment(run)


def check_lsce(run: Campaign):
    import torch
    from fastseed.kernels.lsce import protocol_loss_packed
    K, B, C = run.scale.loss_shape
    dtype = torch.float16 if run.device.type == "cuda" else torch.float32
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(K, B, C, generator=g)).to(dtype).to(run.device)
    targets = torch.randint(0, C, (K, B), generator=g).to(run.device)

    def forward_backward(impl):
        z = logits.detach().requires_grad_()
        loss = protocol_loss_packed(z, targets, eps=0.2, lsce_weight=2.0, impl=impl)
        loss.sum().backward()
        return loss.detach(), z.grad

    t0 = time.perf_counter()
    loss, grad = forward_backward("triton")
    run.sync()
    compile_s = time.perf_counter() - t0
    want_loss, want_grad = forward_backward("torch")
    loss_diff = (loss.double() - want_loss.double()).abs().max().item()
    grad_diff = (grad.double() - want_grad.double()).abs().max().item()
    # tests/kernels/test_lsce_triton.py's tolerances, relative to the largest |value|
    agree = (loss_diff <= 2e-6 * max(want_loss.abs().max().item(), 1.0)
             and grad_diff <= (2e-3 if dtype == torch.float16 else 1e-6) * max(want_grad.abs().max().item(), 1.0))
    s_triton = seconds_per_call(lambda: forward_backward("triton"), run.scale.reps, run.device)
    s_torch = seconds_per_call(lambda: forward_backward("torch"), run.scale.reps, run.device)
    run.emit("kernel", name="lsce", shape=[K, B, C], dtype=str(dtype).removeprefix("torch."), agree=agree,
             max_abs_diff=max(loss_diff, grad_diff), compile_s=compile_s, s_triton=s_triton, s_torch=s_torch,
             speedup=s_torch / s_triton)
    run.say(f"b: lsce {K}x{B}x{C}: {'agrees' if agree else 'DIFFERS'} (max |diff| {max(loss_diff, grad_diff):.2e}), "
            f"{1e6 * s_triton:.1f} µs vs torch {1e6 * s_torch:.1f} µs (first call {compile_s:.2f} s)")


def check_augment(run: Campaign):
    import torch
    from fastseed.kernels.augment import augment
    N, M = run.scale.augment_shape
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=g).to(run.device)
    params = [torch.randint(0, hi, (M,), generator=g).to(run.device) for hi in (N, 9, 9)]
    params += [torch.randint(0, 2, (M,), generator=g).bool().to(run.device)]
    params += [torch.randint(0, 32, (M,), generator=g).to(run.device) for _ in range(2)]
    dtype = torch.float16 if run.device.type == "cuda" else torch.float32
    call = lambda impl: augment(images, *params, MEAN, STD, pad=4, cutout=8, dtype=dtype, channels_last=True,
                                impl=impl)
    t0 = time.perf_counter()
    out = call("triton")
    run.sync()
    compile_s = time.perf_counter() - t0
    identical = torch.equal(out, call("torch"))  # the kernel is bit-identical to its reference by design
    s_triton = seconds_per_call(lambda: call("triton"), run.scale.reps, run.device)
    s_torch = seconds_per_call(lambda: call("torch"), run.scale.reps, run.device)
    gbps = (out.nbytes + out.numel() // 2) / s_triton / 1e9  # output written + uint8 pixels read
    copy = run.facts.get("copy_gbps") or measure_copy(run)
    run.emit("kernel", name="augment", shape=[N, M], dtype=str(dtype).removeprefix("torch."), agree=identical,
             identical=identical, compile_s=compile_s, s_triton=s_triton, s_torch=s_torch,
             speedup=s_torch / s_triton, gbps=gbps, fraction_of_copy=gbps / copy)
    run.say(f"b: augment {M} of {N}: {'bit-identical' if identical else 'DIFFERS'}, {1e6 * s_triton:.1f} µs vs "
            f"torch {1e6 * s_torch:.1f} µs, {gbps:.0f} GB/s = {100 * gbps / copy:.0f} % of copy (first call "
            f"{compile_s:.2f} s)")


# --- phase c: training steps ---------------------------------------------------------------------
def measure_pack(run: Campaign, protocol, strategy: str, k: int) -> dict:
    """One pack built and stepped with the engine's pieces (as autopack.time_pack, plus what it does
    not expose: graph capture and the evaluation), on fixed random batches; the pack is then dropped."""
    import torch
    from fastseed.engine.step import EagerStep, GraphedStep
    from fastseed.engine.train import build, compute_dtype, evaluate, subset
    from fastseed.seeds import Seed
    dtype = compute_dtype(protocol, run.device)
    graphs = run.device.type == "cuda" and strategy != "sequential"  # train_pack's default
    train_x, train_y, test_x, test_y = subset(protocol, run.data())
    t0 = time.perf_counter()
    pack, opt, _ = build(protocol, [Seed(i) for i in range(k)], run.device, dtype, strategy=strategy,
                         graphs=graphs, images=train_x)
    step = (GraphedStep if graphs else EagerStep)(protocol, pack, opt, train_x, train_y, dtype)
    run.sync()
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    shape = (k, protocol.batch_size)
    idx = torch.randint(0, train_x.shape[0], shape, generator=g).to(run.device)
    params = [torch.randint(0, 2 * protocol.crop_pad + 1, shape, generator=g).to(run.device) for _ in range(2)]
    params += [torch.zeros(shape, dtype=torch.bool, device=run.device), idx % 32, idx % 31]
    stderr = io.StringIO()  # GraphedStep reports a failed capture on stderr
    with contextlib.redirect_stderr(Tee(sys.stderr, stderr)):
        for _ in range(run.scale.warmup):
            step(idx, params)
        run.sync()
        t0 = time.perf_counter()
        for _ in range(run.scale.steps):
            step(idx, params)
        run.sync()
        s_step = (time.perf_counter() - t0) / run.scale.steps
    evaluate(pack, protocol, test_x[: protocol.eval_batch_size], test_y[: protocol.eval_batch_size], dtype)
    run.sync()
    t0 = time.perf_counter()
    evaluate(pack, protocol, test_x, test_y, dtype)
    run.sync()
    eval_s = time.perf_counter() - t0
    captured = graphs and not step.failed and step.graph is not None
    said = [line for line in stderr.getvalue().splitlines() if "capture failed" in line]
    del pack, opt, step
    return {"graphs": graphs, "captured": captured, "capture_error": said[0] if said else None,
            "build_s": build_s, "s_per_step": s_step, "eval_s_per_seed": eval_s / k}


def release_memory(run: Campaign):
    gc.collect()
    if run.device.type == "cuda":
        import torch
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(run.device)
        torch.cuda.empty_cache()


def time_steps(run: Campaign):
    from fastseed.engine.flops import seed_flops
    protocol = run.scale.protocol_for()
    flops = seed_flops(protocol)
    peak = run.facts.get("peak_flops")
    run.data()  # loaded once, before the packs' times are taken as estimates of the next ones
    spent = {}  # strategy -> (k, wall s) of its last measured config: the next one's estimate
    too_big = set()
    for strategy, k in run.scale.configs:
        if strategy in too_big:
            continue
        last = spent.get(strategy) or (max(spent.values()) if spent else None)
        estimate = last[1] * k / last[0] if last else 0.0
        if not run.fits(estimate):
            run.say(f"c: {strategy} K={k}: not enough time left (~{estimate:.0f} s needed)")
            continue
        t0 = time.perf_counter()
        try:
            m = measure_pack(run, protocol, strategy, k)
        except RuntimeError as e:
            if "out of memory" not in str(e):
                raise
            too_big.add(strategy)
            run.emit("step", strategy=strategy, k=k, error="out of memory")
            run.say(f"c: {strategy} K={k}: out of memory")
            continue
        finally:
            release_memory(run)
        spent[strategy] = (k, time.perf_counter() - t0)
        per_seed_step = m["s_per_step"] / k
        projected = per_seed_step * flops.steps + m["eval_s_per_seed"] * flops.evals
        line = run.emit("step", strategy=strategy, k=k, **m, s_per_seed_step=per_seed_step,
                        steps_per_seed=flops.steps, evals=flops.evals, projected_s_per_seed=projected,
                        fraction_of_peak=flops.train_step / per_seed_step / peak if peak else None)
        run.say(f"c: {strategy} K={k}: {1e3 * m['s_per_step']:.1f} ms/step, {projected:.2f} s/seed projected"
                + (f", {100 * line['fraction_of_peak']:.1f} % of peak" if peak else "")
                + ("" if not m["graphs"] else ", graph captured" if m["captured"] else ", GRAPH CAPTURE FAILED"))
    choose_auto_pack(run, protocol, spent)


def choose_auto_pack(run: Campaign, protocol, spent: dict):
    """`--pack auto` as the scan runs it (fused, graphs on a GPU): it times packs of 1…64 itself."""
    from fastseed.engine.autopack import CANDIDATES, choose_pack
    from fastseed.engine.train import compute_dtype
    fused = spent.get("fused")  # its candidates' packs, scaled from the last fused pack measured
    estimate = sum(CANDIDATES) * fused[1] / fused[0] if fused and run.device.type == "cuda" else 0.0
    if not run.fits(estimate):
        run.say(f"c: pack auto: not enough time left (~{estimate:.0f} s needed)")
        return
    said = []
    log = lambda text: (said.append(text), run.say(f"c: {text}"))
    try:
        k = choose_pack(protocol, run.data(), run.device, compute_dtype(protocol, run.device), "fused",
                        run.device.type == "cuda", log=log)
    finally:
        release_memory(run)
    run.emit("pack_auto", strategy="fused", k=k, log=said)


# --- phase d: seeds against Table 1 --------------------------------------------------------------
def measured_settings(run: Campaign) -> list[dict]:
    """Phase c's measured settings, fastest projected seconds per seed first."""
    ok = [x for x in run.of_kind("step", "c") if x.get("projected_s_per_seed")]
    return sorted(ok, key=lambda x: x["projected_s_per_seed"])


def pack_seconds(setting: dict) -> float:
    """A whole pack's time from phase c's projection, with a margin for building and recaptures."""
    return 1.2 * setting["k"] * setting["projected_s_per_seed"] + setting.get("build_s", 0.0)


def seed_fields(record) -> dict:
    return {"seed": record.seed, "status": record.status, "acc": record.test_acc, "loss": record.test_loss,
            "headline_epoch": record.headline_epoch, "wall_s": record.wall_time_s, "pack": record.pack,
            "predictions_sha256": hashlib.sha256(bytes(record.predictions)).hexdigest(),
            "eval_curve": record.eval_curve, "train_curve": record.train_curve}


def train_seeds(run: Campaign):
    from fastseed.engine import train_pack
    protocol = run.scale.protocol_for()
    settings = measured_settings(run)
    fitting = [x for x in settings if run.fits(pack_seconds(x))]
    if settings and not fitting:
        run.say("d: not even one pack of any measured setting fits in this phase's time")
        return
    strategy, k = (fitting[0]["strategy"], fitting[0]["k"]) if fitting else run.scale.fallback
    why = ("phase c measured nothing: the fallback" if not fitting else
           "the fastest of phase c" + (" whose pack fits" if fitting[0] is not settings[0] else ""))
    run.say(f"d: training {protocol.name} seeds in {strategy} packs of {k} ({why})")
    estimate, seed, accs, walls = (pack_seconds(fitting[0]) if fitting else 0.0), 0, [], []

    def on_record(record):
        run.emit("seed", **seed_fields(record))
        if record.status == "ok":
            accs.append(100 * record.test_acc)
        walls.append(record.wall_time_s)

    try:
        while (run.scale.max_seeds is None or seed < run.scale.max_seeds) and run.fits(estimate):
            size = k if run.scale.max_seeds is None else min(k, run.scale.max_seeds - seed)
            t0 = time.perf_counter()
            train_pack(protocol, range(seed, seed + size), run.data(), run.device, strategy=strategy,
                       on_record=on_record)
            estimate, seed = (time.perf_counter() - t0) * k / size, seed + size
            mean = f", mean {statistics.fmean(accs):.2f} %" if accs else ""
            run.say(f"d: {seed} seeds trained, {len(accs)} ok{mean}")
    finally:
        with ALARM.held():  # a cut or a failure still compares the seeds that were trained
            result = compare_to_table1(accs)
            run.emit("table1", **result, setting={"strategy": strategy, "k": k}, protocol=protocol.name,
                     s_per_seed=statistics.fmean(walls) if walls else None)
            run.say(f"d: {result['verdict']}")


def compare_to_table1(accs: list[float], reference: dict = TABLE1, level: float = 0.95) -> dict:
    """Our accuracies (%) against Picard's Table 1 (reference mean, std, min, max over 10,000 seeds).

    Mean: the one-sample Student t interval, mean ± t_{1−α/2, n−1}·s/√n (NIST/SEMATECH e-Handbook of
    Statistical Methods, §7.2.2 "Are the data consistent with the assumed process mean?"): agreement
    when the reference mean lies inside it AND the interval is narrower than ±AGREE_HALF_WIDTH (else
    "too few seeds to tell"); disagreement when it lies outside. Std: the chi-square interval
    [s·√((n−1)/χ²_{1−α/2}), s·√((n−1)/χ²_{α/2})] (same handbook, §7.2.3 "Are the data consistent with
    a nominal standard deviation?"). Both assume roughly normal accuracies, as Picard's histograms are.
    Range: with n ≪ 10,000 seeds, ours should fall inside Table 1's min–max."""
    import numpy as np
    from scipy import stats
    x = np.asarray(accs, dtype=float)
    n = int(x.size)
    out = {"n": n, "mean": float(x.mean()) if n else None, "std": float(x.std(ddof=1)) if n > 1 else None,
           "min": float(x.min()) if n else None, "max": float(x.max()) if n else None,
           "ci_mean": None, "ci_std": None, "reference": reference,
           "outside_range": int(((x < reference["min"]) | (x > reference["max"])).sum())}
    if n < 2:
        out["verdict"] = f"too few seeds to tell (n = {n}): Table 1 is {reference['mean']} ± {reference['std']}"
        out["std_verdict"] = "too few seeds to tell"
        return out
    lo, hi = stats.ttest_1samp(x, reference["mean"]).confidence_interval(level)
    s, alpha = out["std"], 1 - level
    std_lo = s * math.sqrt((n - 1) / stats.chi2.ppf(1 - alpha / 2, n - 1))
    std_hi = s * math.sqrt((n - 1) / stats.chi2.ppf(alpha / 2, n - 1))
    out["ci_mean"], out["ci_std"] = [float(lo), float(hi)], [std_lo, std_hi]
    ours = f"n = {n}: {out['mean']:.2f} ± {s:.2f} %, {int(100 * level)} % CI of the mean [{lo:.2f}, {hi:.2f}]"
    if not lo <= reference["mean"] <= hi:
        out["verdict"] = f"disagrees with Table 1 ({reference['mean']}): {ours}"
    elif (hi - lo) / 2 > AGREE_HALF_WIDTH:
        out["verdict"] = (f"too few seeds to tell: {ours} holds Table 1's {reference['mean']} but is wider "
                          f"than ±{AGREE_HALF_WIDTH}")
    else:
        out["verdict"] = f"agrees with Table 1 ({reference['mean']}): {ours}"
    plausible = std_lo <= reference["std"] <= std_hi
    out["std_verdict"] = (f"Table 1's std {reference['std']} is {'inside' if plausible else 'outside'} the "
                          f"{int(100 * level)} % interval [{std_lo:.2f}, {std_hi:.2f}] of ours")
    return out


# --- phase e: non-determinism --------------------------------------------------------------------
def repeat_seed(run: Campaign):
    """Seed 0 alone, the same layout each time (any spread is the GPU's non-determinism), and the
    same seed in another layout (its phase-d pack, else a fused pack of 2): a layout's rounding."""
    from fastseed.engine import train_pack
    protocol, seed = run.scale.protocol_for(), 0
    alone = [x for x in measured_settings(run) if x["k"] == 1]
    strategy = alone[0]["strategy"] if alone else "sequential"
    estimate = pack_seconds(alone[0]) if alone else 0.0
    earlier = [x for x in run.of_kind("seed", "d") if x["seed"] == seed and x["status"] == "ok"]
    other = next((x for x in earlier if (x["pack"]["strategy"], x["pack"]["size"]) != (strategy, 1)), None)
    accs, digests = [], []
    try:
        for r in range(run.scale.repeats):
            if not run.fits(estimate):
                run.say(f"e: no time for run {r + 1} (~{estimate:.0f} s needed)")
                break
            t0 = time.perf_counter()
            record = train_pack(protocol, [seed], run.data(), run.device, strategy=strategy)[0]
            estimate = time.perf_counter() - t0
            line = run.emit("repeat", run=r, **seed_fields(record))
            accs.append(100 * record.test_acc)
            digests.append(line["predictions_sha256"])
            run.say(f"e: seed {seed} alone ({strategy}), run {r + 1}: {accs[-1]:.3f} %")
        if other is None and run.fits(2 * estimate):
            record = train_pack(protocol, [seed, seed + 1], run.data(), run.device, strategy="fused")[0]
            other = run.emit("repeat", run=0, **seed_fields(record))
    finally:
        with ALARM.held():  # a cut still summarises the runs that were made
            summarize_repeats(run, seed, strategy, accs, digests, other)


def summarize_repeats(run: Campaign, seed: int, strategy: str, accs: list, digests: list, other: dict | None):
    other_acc = 100 * other["acc"] if other and other["acc"] is not None else None
    summary = run.emit("nondeterminism", seed=seed, layout={"strategy": strategy, "size": 1}, runs=len(accs),
                       accs=accs, spread_pp=max(accs) - min(accs) if accs else None,
                       std_pp=statistics.stdev(accs) if len(accs) > 1 else None,
                       distinct_predictions=len(set(digests)), other_layout=other["pack"] if other else None,
                       other_acc=other_acc, layout_diff_pp=other_acc - statistics.fmean(accs) + 0.0  # no -0.000
                       if accs and other_acc is not None else None)
    if accs:
        diff = summary["layout_diff_pp"]
        run.say(f"e: {len(accs)} runs of seed {seed} alone: spread {summary['spread_pp']:.3f} pp, "
                f"{summary['distinct_predictions']} distinct prediction vectors"
                + (f"; in {other['pack']['strategy']} K={other['pack']['size']}: {diff:+.3f} pp" if diff is not None
                   else ""))


PHASES = {"a": measure_environment, "b": check_kernels, "c": time_steps, "d": train_seeds, "e": repeat_seed}


def need(run: Campaign, key: str) -> float:
    """Seconds phase `key` needs to start: its first unit of work, from what was measured before."""
    settings = measured_settings(run)
    if key == "d" and settings:
        return min(pack_seconds(s) for s in settings)
    if key == "e" and any(s["k"] == 1 for s in settings):
        return 2 * min(pack_seconds(s) for s in settings if s["k"] == 1)  # two runs show a spread
    return run.scale.floors[key]


# --- the run -------------------------------------------------------------------------------------
def run_phases(run: Campaign, phases: str, fail_phase: str | None):
    for i, key in enumerate(PHASES):
        run.phase, run.deadline = key, math.inf
        if key not in phases:
            run.emit("phase", status="skipped", title=TITLES[key], reason="not selected (--phases)")
            continue
        left = run.budget_left() - 1.0  # a second kept for the final table
        allotted = left if key == "e" else left * SHARES[key] / sum(SHARES[k] for k in list(PHASES)[i:])
        needed = need(run, key)
        if allotted < needed:
            reason = f"not enough time: {max(allotted, 0.0):.1f} s left for it, needs ~{needed:.1f} s"
            run.say(f"{key}: {TITLES[key]}: skipped, {reason}")
            run.emit("phase", status="skipped", title=TITLES[key], allotted_s=max(allotted, 0.0), reason=reason)
            continue
        run.say(f"{key}: {TITLES[key]} ({allotted:.0f} s)")
        t0, status, reason, error = run.elapsed(), "done", None, None
        run.deadline = t0 + allotted
        try:
            try:
                ALARM.arm(allotted)
                if fail_phase == key:
                    raise RuntimeError(f"injected failure in phase {key} (--fail-phase)")
                PHASES[key](run)
            finally:  # disarmed before any handler runs, so a late alarm cannot escape from one
                ALARM.disarm()
        except PhaseCut:
            ALARM.disarm()  # again: an alarm may have cut the `finally` above before it disarmed
            status, reason = "cut", f"overran its {allotted:.0f} s"
        except Exception as e:  # noqa: BLE001 - one phase's failure must not end the campaign
            ALARM.disarm()
            status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            sys.stderr.write(f"phase {key} failed:\n{traceback.format_exc()}")
            sys.stderr.flush()
        release_memory(run)
        used = run.elapsed() - t0
        run.emit("phase", status=status, title=TITLES[key], allotted_s=allotted, used_s=used, reason=reason,
                 error=error)
        run.say(f"{key}: {status} in {used:.1f} s" + (f" ({reason or error})" if reason or error else ""))
        run.write_table()
    run.phase = None


def table(lines: list[dict]) -> str:
    """The campaign's results as Markdown, from its JSON lines alone (so `--table` can rebuild it)."""
    by = lambda kind: [x for x in lines if x.get("kind") == kind]
    f = lambda v, fmt: "–" if v is None else format(v, fmt)
    pct = lambda v, fmt: f(None if v is None else 100 * v, fmt)
    env = (by("env") or [{}])[0]
    out = [(f"# fastseed GPU campaign: {env.get('gpu') or env.get('device', '?')}, commit "
            f"{(env.get('commit') or 'unknown')[:12]}, torch {env.get('torch')}, triton {env.get('triton')}, "
            f"cuDNN {env.get('cudnn')}, budget {env.get('budget_s')} s ({env.get('scale')})"), "",
           "| phase | status | allotted s | used s | note |", "| --- | --- | --- | --- | --- |"]
    for p in by("phase"):
        out.append(f"| {p['phase']} {p.get('title', '')} | {p['status']} | {f(p.get('allotted_s'), '.1f')} | "
                   f"{f(p.get('used_s'), '.1f')} | {p.get('reason') or p.get('error') or ''} |")
    out += [""] + [f"matmul peak: {x['flops_per_s'] / 1e12:.3g} TFLOP/s ({x['dtype']}, n={x['n']})" for x in by("peak")]
    out += [f"device copy: {x['gbps']:.1f} GB/s (read + write)" for x in by("copy")]
    if by("kernel"):
        out += ["", "| kernel | shape | agrees | µs triton | µs torch | speedup | GB/s | % of copy | first call s |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        out += [f"| {x['name']} | {x['shape']} {x['dtype']} | {x['agree']} | {1e6 * x['s_triton']:.1f} | "
                f"{1e6 * x['s_torch']:.1f} | {x['speedup']:.2f} | {f(x.get('gbps'), '.0f')} | "
                f"{pct(x.get('fraction_of_copy'), '.0f')} | {x['compile_s']:.2f} |" for x in by("kernel")]
    if by("step"):
        out += ["", "| strategy | K | graph | ms/step | ms/seed-step | eval s/seed | projected s/seed | % of peak |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for x in by("step"):
            if x.get("error"):
                out.append(f"| {x['strategy']} | {x['k']} | {x['error']} | | | | | |")
                continue
            graph = "captured" if x["captured"] else ("FAILED" if x["graphs"] else "off")
            out.append(f"| {x['strategy']} | {x['k']} | {graph} | {1e3 * x['s_per_step']:.2f} | "
                       f"{1e3 * x['s_per_seed_step']:.2f} | {x['eval_s_per_seed']:.3f} | "
                       f"{x['projected_s_per_seed']:.2f} | {pct(x.get('fraction_of_peak'), '.1f')} |")
    out += [f"\n--pack auto ({x['strategy']}): K = {x['k']}" for x in by("pack_auto")]
    for x in by("table1"):
        diverged = len([s for s in by("seed") if s["status"] != "ok"])
        out += ["", (f"seeds ({x.get('protocol')}, {x['setting']['strategy']} K={x['setting']['k']}, "
                     f"{f(x.get('s_per_seed'), '.2f')} s/seed measured): n = {x['n']}, mean {f(x['mean'], '.2f')} ± "
                     f"{f(x['std'], '.2f')} %, min {f(x['min'], '.2f')}, max {f(x['max'], '.2f')}; {diverged} "
                     f"diverged. Table 1: {TABLE1['mean']} ± {TABLE1['std']}, min {TABLE1['min']}, "
                     f"max {TABLE1['max']}"),
                f"verdict: {x['verdict']}", f"std: {x['std_verdict']}",
                f"outside Table 1's range: {x['outside_range']} of {x['n']}"]
    for x in by("nondeterminism"):
        other = x.get("other_layout")
        out += ["", (f"non-determinism: seed {x['seed']} × {x['runs']} alone ({x['layout']['strategy']}): "
                     f"{', '.join(f'{a:.2f}' for a in x['accs'])} %, spread {f(x['spread_pp'], '.3f')} pp, "
                     f"{x['distinct_predictions']} distinct prediction vectors")
                + (f"; in {other['strategy']} K={other['size']}: {f(x['other_acc'], '.2f')} % "
                   f"({f(x['layout_diff_pp'], '+.3f')} pp)" if other else "")]
    out += ["", *(f"total {x['total_s']:.1f} s; " + "; ".join(f"{kind}: {', '.join(x.get(kind, [])) or 'none'}"
                                                       for kind in ("skipped", "failed", "cut")) for x in by("end"))]
    return "\n".join(out).rstrip()


def read_lines(path: Path) -> list[dict]:
    """A campaign.jsonl's lines; a last line cut short by a kill is left out."""
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            lines.append(json.loads(text))
    return lines


def parse(argv):
    from fastseed.cli import Parser
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="folder for campaign.jsonl, campaign.log, summary.md")
    p.add_argument("--budget-s", type=float, default=None, help="seconds for the whole run (420; rehearsal 115)")
    p.add_argument("--data-dir", default=None, help="CIFAR-10's folder (default: data/ or $FASTSEED_DATA)")
    p.add_argument("--rehearse", action="store_true", help="every phase at toy scale on the CPU")
    p.add_argument("--phases", default="abcde", help="which phases to run (default: abcde)")
    p.add_argument("--table", type=Path, default=None, help="print the table of an existing campaign.jsonl")
    p.add_argument("--fail-phase", default=None, help=argparse.SUPPRESS)  # tests: the campaign goes on
    a = p.parse_args(argv)
    if a.table is None and a.out is None:
        p.error("--out is required")
    if a.budget_s is not None and not a.budget_s > 0:
        p.error(f"--budget-s must be positive, not {a.budget_s}")
    if set(a.phases) - set(PHASES):
        p.error(f"--phases takes letters of {''.join(PHASES)}, not {a.phases!r}")
    return a


def prepare_triton_interpreted():
    """Triton fixes, when first imported, whether its own library is compiled or interpreted (see the
    repository's conftest.py): the rehearsal imports it interpreted before anything else can."""
    if importlib.util.find_spec("triton") is None or "triton" in sys.modules:
        return
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


def campaign(a) -> int:
    from fastseed import FastseedError
    if a.table is not None:
        try:
            print(table(read_lines(a.table)))
        except OSError as e:
            raise FastseedError(f"--table {a.table}: {e}") from None
        return 0
    scale = REHEARSAL if a.rehearse else GPU
    if a.rehearse:
        prepare_triton_interpreted()
    import torch
    if not a.rehearse and not torch.cuda.is_available():
        raise FastseedError("no CUDA GPU visible to torch: the campaign needs one (--rehearse checks it on a CPU)")
    device = torch.device("cpu" if a.rehearse else "cuda")
    budget = a.budget_s if a.budget_s is not None else (115.0 if a.rehearse else 420.0)
    if (a.out / "campaign.jsonl").exists():
        raise FastseedError(f"--out {a.out} already holds a campaign (campaign.jsonl): give another folder")
    try:
        a.out.mkdir(parents=True, exist_ok=True)
        run = Campaign(a.out, budget, scale, a.data_dir, device)
    except OSError as e:
        raise FastseedError(f"--out {a.out}: cannot write there ({e.strerror or e})") from None
    saved_stderr, saved_handler = sys.stderr, signal.signal(signal.SIGALRM, ALARM)
    sys.stderr = Tee(sys.stderr, run.log)  # library warnings and capture failures land in the log too
    try:
        env = environment(device, scale)
        run.say(found_line(env, budget, a.out))
        run.emit("env", **env, budget_s=budget, rehearsal=a.rehearse, command=" ".join(sys.argv))
        run_phases(run, a.phases, a.fail_phase)
        statuses = {p["phase"]: p["status"] for p in run.of_kind("phase")}
        run.emit("end", statuses=statuses, total_s=run.elapsed(),
                 **{kind: [k for k, s in statuses.items() if s == status]
                    for kind, status in (("skipped", "skipped"), ("failed", "failed"), ("cut", "cut"))})
        run.say("\n" + run.write_table())
    finally:
        sys.stderr = saved_stderr
        signal.signal(signal.SIGALRM, saved_handler)
        run.jsonl.close()
        run.log.close()
    return 0


def main(argv=None) -> int:
    from fastseed import FastseedError
    try:
        return campaign(parse(argv))
    except FastseedError as e:
        print(f"gpu_campaign: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
