"""The phases of bench/gpu_campaign.py (see its docstring for what each measures, the budget and the
plan): each is a function of the run (campaign_run.Campaign) that measures through fastseed's own pieces
— autopack.time_pack and choose_pack, train_pack, build/make_step, the graph API — and emits one JSON line
per measurement.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from campaign_run import ALARM, Campaign, seconds_per_call

# Picard 2021 (arXiv 2109.08203), Table 1, short runs: 10,000 seeds, accuracy in %.
TABLE1 = {"mean": 90.02, "std": 0.23, "min": 89.01, "max": 90.83, "n": 10_000}
REAL_DATA = "ef"  # phases that need the real CIFAR-10
AGREE_HALF_WIDTH = 0.25  # pp: a CI of the mean wider than ±this (about Table 1's std) cannot agree
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # Picard's normalisation (kernels)
# d: graph and eager run the same kernels on the same inputs; what may differ is the order of float32
# atomics in non-deterministic kernels, grown over 20 steps (~1e-6–1e-4). A stale learning rate or a lost
# update changes the updates by the schedule's own steps (≥ 2.5 % here), far above.
TOLERANCE = {"loss_rel": 1e-3, "weight_rel": 1e-2, "bn_rel": 1e-2}


# --- phase a: environment ------------------------------------------------------------------------
def environment(device, scale) -> dict:
    """What this machine has, cheaply (no measurement): the campaign's first line."""
    import torch

    def found(name):
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # e.g. a missing parent package (nvidia for nvidia.dali)
            return False

    try:
        from fastseed.engine.provenance import code_version
        version = code_version()  # git, or the .git files on a machine without git
    except Exception:  # noqa: BLE001 - a broken import must not stop the first line
        version = {"commit": None, "dirty": None}
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
            "dali": found("nvidia.dali"), "ray": found("ray"), "commit": version.get("commit"),
            "dirty": version.get("dirty"), "python": platform.python_version(), "host": platform.node(),
            "scale": scale.name, "protocol": scale.protocol}


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
    # each output value reads one uint8 pixel (1 byte; a padded or cut-out one reads none) and writes
    # out.element_size() bytes; the indices and parameters (6 per image) are noise beside 3,072 pixels
    gbps = (out.numel() * images.element_size() + out.nbytes) / s_triton / 1e9
    copy = run.facts.get("copy_gbps") or measure_copy(run)
    run.emit("kernel", name="augment", shape=[N, M], dtype=str(dtype).removeprefix("torch."), agree=identical,
             identical=identical, compile_s=compile_s, s_triton=s_triton, s_torch=s_torch,
             speedup=s_torch / s_triton, gbps=gbps, fraction_of_copy=gbps / copy)
    run.say(f"b: augment {M} of {N}: {'bit-identical' if identical else 'DIFFERS'}, {1e6 * s_triton:.1f} µs vs "
            f"torch {1e6 * s_torch:.1f} µs, {gbps:.0f} GB/s = {100 * gbps / copy:.0f} % of copy (first call "
            f"{compile_s:.2f} s)")


# --- phase c: training steps, short runs, --pack auto -------------------------------------------
def graph_api(run: Campaign):
    """What captures a step: torch.cuda on a GPU; on the CPU (the rehearsal) the stand-in of CUDA's graph
    API with its semantics (engine.graphs.RecordedGraphs), so the rehearsal runs GraphedStep too."""
    import torch
    from fastseed.engine.graphs import RecordedGraphs
    return torch.cuda if run.device.type == "cuda" else RecordedGraphs()


def time_steps(run: Campaign):
    from fastseed.engine.autopack import is_oom, time_pack
    from fastseed.engine.flops import seed_flops
    from fastseed.engine.graphs import use_graphs
    from fastseed.engine.pack import get_strategy
    from fastseed.engine.train import compute_dtype
    protocol, data = run.scale.protocol_for(), run.data()  # loaded first: the packs' times estimate the next
    flops, peak, dtype = seed_flops(protocol), run.facts.get("peak_flops"), compute_dtype(protocol, run.device)
    spent, too_big = {}, set()  # strategy -> (k, wall s) of its last measured config: the next one's estimate
    for strategy, k in run.scale.configs:
        if strategy in too_big:
            continue
        last = spent.get(strategy) or (max(spent.values()) if spent else None)
        estimate = last[1] * k / last[0] if last else 0.0
        if not run.fits(estimate):
            run.say(f"c: {strategy} K={k}: not enough time left (~{estimate:.0f} s needed)")
            continue
        graphs, t0 = use_graphs(run.device, get_strategy(strategy).graphs), time.perf_counter()
        try:
            s = time_pack(protocol, data, run.device, dtype, strategy, k, graphs, steps=run.scale.steps)
        except RuntimeError as e:
            if not is_oom(e):
                raise
            too_big.add(strategy)
            run.emit("step", strategy=strategy, k=k, error="out of memory")
            run.say(f"c: {strategy} K={k}: out of memory")
            continue
        finally:
            run.release_memory()
        spent[strategy] = (k, time.perf_counter() - t0)
        line = run.emit("step", strategy=strategy, k=k, graphs=graphs, s_per_seed_step=s, s_per_step=s * k,
                        steps_per_seed=flops.steps, projected_s_per_seed=s * flops.steps,
                        fraction_of_peak=flops.train_step / s / peak if peak else None)
        run.say(f"c: {strategy} K={k}: {1e3 * s * k:.1f} ms/step, {line['projected_s_per_seed']:.2f} s/seed of "
                f"training projected" + (f", {100 * line['fraction_of_peak']:.1f} % of peak" if peak else "")
                + (", graphed" if graphs else ""))
    short_runs(run)
    choose_auto_pack(run, protocol, spent)


def short_runs(run: Campaign):
    """Each of the scale's runs trained as the scan trains it, a fused pack of the fastest measured K
    (2 by default): the epoch boundaries and the freeze are crossed, and the records' provenance says
    whether the pack trained graphed and how many captures it took."""
    from fastseed.engine import train_pack
    fused = [x for x in measured_settings(run) if x["strategy"] == "fused" and x["k"] > 1]
    k = fused[0]["k"] if fused else 2
    for preset, changes in run.scale.runs:
        protocol = run.scale.protocol_for(preset, **changes)
        stand_in = run.device.type != "cuda"
        t0 = time.perf_counter()
        records = train_pack(protocol, range(k), run.data(), run.device, strategy="fused", graph_api=graph_api(run))
        wall, steps = time.perf_counter() - t0, records[0].provenance["steps"]
        run.emit("run", preset=preset, protocol=protocol.name, strategy="fused", k=k,
                 steps=protocol.total_steps(run.data().train_x[: protocol.train_size].shape[0]), wall_s=wall,
                 s_per_seed=wall / k, stand_in=stand_in, **steps)
        run.say(f"c: {preset} ({protocol.epochs} epochs), fused K={k}: {wall:.1f} s, "
                + (f"{steps['captures']} capture(s), {steps['replays']} replays, {steps['eager_steps']} eager steps"
                   if steps["graphed"] else f"NOT graphed ({steps['failure'] or 'graphs off'})")
                + (" (CPU stand-in of CUDA graphs)" if stand_in else ""))
        run.release_memory()


def choose_auto_pack(run: Campaign, protocol, spent: dict):
    """`--pack auto` as the scan runs it (fused, graphs on a GPU): it times packs of 1…64 itself."""
    from fastseed.engine.autopack import CANDIDATES, choose_pack
    from fastseed.engine.graphs import use_graphs
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
                        use_graphs(run.device, True), log=log)
    finally:
        run.release_memory()
    run.emit("pack_auto", strategy="fused", k=k, log=said)


# --- phase d: graph against eager, compile -------------------------------------------------------
def check_graphs(run: Campaign):
    for strategy in ("fused", "streams"):
        eager, graphed = trajectory(run, strategy, None), trajectory(run, strategy, graph_api(run))
        diffs = {name: relative(eager[name], graphed[name]) for name in ("losses", "weights", "bn")}
        diffs = {"loss_rel": diffs["losses"], "weight_rel": diffs["weights"], "bn_rel": diffs["bn"]}
        agree = all(diffs[k] <= TOLERANCE[k] for k in TOLERANCE)
        run.emit("graph_check", strategy=strategy, k=2, dtype="float32", steps=run.scale.check_steps, **diffs,
                 tolerance=TOLERANCE, agree=agree, stand_in=run.device.type != "cuda", **graphed["report"])
        run.say(f"d: {strategy} K=2, {run.scale.check_steps} steps, graph vs eager: losses {diffs['loss_rel']:.1e}, "
                f"weight updates {diffs['weight_rel']:.1e}, BN statistics {diffs['bn_rel']:.1e}: "
                f"{'agree' if agree else 'DIFFER'} ({graphed['report']['captures']} capture(s))")
        run.release_memory()
    for mode in run.scale.compile_modes:
        time_compiled(run, mode)


def trajectory(run: Campaign, strategy: str, api) -> dict:
    """Seeds 0 and 1 from one init, float32, the same batches, an lr that moves every step; the per-step
    losses, the weights' and BatchNorm statistics' updates, and the step's report."""
    import torch
    from fastseed.engine.autopack import random_batch
    from fastseed.engine.train import build, make_step, subset
    from fastseed.seeds import Seed
    protocol = run.scale.protocol_for()
    train_x, train_y, _, _ = subset(protocol, run.data())
    pack, opt = build(protocol, [Seed(0), Seed(1)], run.device, torch.float32, strategy, images=train_x,
                      graphs=api is not None)
    step = make_step(protocol, pack, opt, train_x, train_y, torch.float32, api)
    before = {k: v.detach().double().cpu() for k, v in pack.state_dict().items() if v.is_floating_point()}
    losses, n = [], run.scale.check_steps
    for i in range(n):
        opt.set_lr_multiplier(0.5 + 0.5 * i / n)
        idx, params = random_batch(protocol, train_x.shape[0], 2, run.device, seed=i)
        losses.append(step(idx, params)[0])
    after = {k: v.detach().double().cpu() for k, v in pack.state_dict().items() if v.is_floating_point()}
    updates = {k: after[k] - before[k] for k in after}
    return {"losses": [torch.stack(losses).double().cpu()], "report": step.report(),
            "weights": [v for k, v in updates.items() if "running_" not in k],
            "bn": [v for k, v in updates.items() if "running_" in k]}


def relative(a: list, b: list) -> float:
    """The largest |a − b| / max |a| over pairs of tensors (0 for no tensors)."""
    return max([((x - y).abs().max() / x.abs().max().clamp_min(1e-30)).item() for x, y in zip(a, b)], default=0.0)


def time_compiled(run: Campaign, mode: str):
    """A fused pack under `--compile mode`, with fastseed's graphs when the mode has none of its own."""
    from fastseed.engine.autopack import time_pack
    from fastseed.engine.graphs import use_graphs
    from fastseed.engine.train import compute_dtype
    protocol, k = run.scale.protocol_for(), 8
    graphs = use_graphs(run.device, True, compile=mode)
    t0 = time.perf_counter()
    try:
        s = time_pack(protocol, run.data(), run.device, compute_dtype(protocol, run.device), "fused", k, graphs,
                      steps=run.scale.steps, compile=mode)
    finally:
        run.release_memory()
    first = time.perf_counter() - t0 - s * k * run.scale.steps
    run.emit("compile", mode=mode, graphs=graphs, k=k, s_per_seed_step=s, first_s=first)
    run.say(f"d: --compile {mode} ({'fastseed graphs' if graphs else 'its own graphs, GraphedStep off'}): "
            f"{1e3 * s * k:.1f} ms/step at K={k}, {first:.0f} s to compile and warm up")


# --- phase e: seeds against Table 1 --------------------------------------------------------------
def measured_settings(run: Campaign) -> list[dict]:
    """Phase c's measured settings, fastest projected seconds per seed first."""
    ok = [x for x in run.of_kind("step", "c") if x.get("projected_s_per_seed")]
    return sorted(ok, key=lambda x: x["projected_s_per_seed"])


def pack_seconds(setting: dict) -> float:
    """A whole pack's time from phase c's training projection, with a margin for building it and its
    evaluations."""
    return 1.5 * setting["k"] * setting["projected_s_per_seed"] + 5.0


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
        run.say("e: not even one pack of any measured setting fits in this phase's time")
        return
    strategy, k = (fitting[0]["strategy"], fitting[0]["k"]) if fitting else run.scale.fallback
    why = ("phase c measured nothing (in this call): the fallback" if not fitting else
           "the fastest of phase c" + (" whose pack fits" if fitting[0] is not settings[0] else ""))
    run.say(f"e: training {protocol.name} seeds in {strategy} packs of {k} ({why})")
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
            run.say(f"e: {seed} seeds trained, {len(accs)} ok{mean}")
    finally:
        with ALARM.held():  # a cut or a failure still compares the seeds that were trained
            result = compare_to_table1(accs)
            run.emit("table1", **result, setting={"strategy": strategy, "k": k}, protocol=protocol.name,
                     s_per_seed=statistics.fmean(walls) if walls else None)
            run.say(f"e: {result['verdict']}")


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


# --- phase f: non-determinism --------------------------------------------------------------------
def repeat_seed(run: Campaign):
    """Seed 0 alone, the same layout each time (any spread is the GPU's non-determinism), and the
    same seed in another layout (its phase-e pack, else a fused pack of 2): a layout's rounding."""
    from fastseed.engine import train_pack
    protocol, seed = run.scale.protocol_for(), 0
    alone = [x for x in measured_settings(run) if x["k"] == 1]
    strategy = alone[0]["strategy"] if alone else "sequential"
    estimate = pack_seconds(alone[0]) if alone else 0.0
    earlier = [x for x in run.of_kind("seed", "e") if x["seed"] == seed and x["status"] == "ok"]
    other = next((x for x in earlier if (x["pack"]["strategy"], x["pack"]["size"]) != (strategy, 1)), None)
    accs, digests = [], []
    try:
        for r in range(run.scale.repeats):
            if not run.fits(estimate):
                run.say(f"f: no time for run {r + 1} (~{estimate:.0f} s needed)")
                break
            t0 = time.perf_counter()
            record = train_pack(protocol, [seed], run.data(), run.device, strategy=strategy)[0]
            estimate = time.perf_counter() - t0
            line = run.emit("repeat", run=r, **seed_fields(record))
            accs.append(100 * record.test_acc)
            digests.append(line["predictions_sha256"])
            run.say(f"f: seed {seed} alone ({strategy}), run {r + 1}: {accs[-1]:.3f} %")
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
        run.say(f"f: {len(accs)} runs of seed {seed} alone: spread {summary['spread_pp']:.3f} pp, "
                f"{summary['distinct_predictions']} distinct prediction vectors"
                + (f"; in {other['pack']['strategy']} K={other['pack']['size']}: {diff:+.3f} pp" if diff is not None
                   else ""))


PHASES = {"a": measure_environment, "b": check_kernels, "c": time_steps, "d": check_graphs, "e": train_seeds,
          "f": repeat_seed}




def need(run: Campaign, key: str) -> tuple[float, str | None]:
    """(seconds phase `key` needs to start: its first unit of work, from what was measured before;
    why it cannot run here at all, or None)."""
    if key in REAL_DATA and not run.real_data:
        return 0.0, "needs the real CIFAR-10 (--data-dir); this run is --synthetic"
    settings = measured_settings(run)
    if key == "e" and settings:
        return min(pack_seconds(s) for s in settings), None
    if key == "f" and any(s["k"] == 1 for s in settings):
        return 2 * min(pack_seconds(s) for s in settings if s["k"] == 1), None  # two runs show a spread
    return run.scale.floors[key], None


