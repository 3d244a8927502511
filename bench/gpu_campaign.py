"""The GPU campaign: everything fastseed needs measured on a GPU, in commands that fit a short device
window, measuring the path production takes (the engine's own build, steps, graphs, autopack and
train_pack), and rehearsed on the CPU in CI so that no typo is first found on the GPU.

    PYTHONPATH=. python3 bench/gpu_campaign.py --synthetic --phases abcd --out OUT   # the engine, no data needed
    PYTHONPATH=. python3 bench/gpu_campaign.py --data-dir D --phases ef --out OUT    # real CIFAR-10 phases
    PYTHONPATH=. python3 bench/gpu_campaign.py --rehearse --data-dir data --out /tmp/r   # CPU, toy scale, < 2 min
    python3 bench/gpu_campaign.py --table OUT/campaign.jsonl      # the final table again, from the lines

Phases, in order, each with its share of the budget (SHARES: share × time left ÷ the shares of the
selected phases left, counted from process start, imports included; what a phase leaves unused flows on):
  a  environment (first line printed: GPU, driver, CUDA, cuDNN, torch, triton, DALI/ray absent, commit);
     the fp16 matmul peak and the device-to-device copy bandwidth, measured
  b  kernels: lsce and augment compiled by Triton against their PyTorch references (agreement, time per
     call after compilation, compile time); augment's bytes (uint8 pixels read, its output written)
     against the copy bandwidth
  c  training steps, as the scan runs them: each (strategy, K) timed by autopack.time_pack (the graph
     captured once, replays timed: s/seed-step, projected training s/seed = s/seed-step × 2,200 steps,
     fraction of the matmul peak); then short runs of picard-short (2 epochs: an epoch boundary, a new
     lr) and fast94 (2 epochs: its whitening bias freezes after the first) through train_pack, each
     reporting what its record's provenance says — graphed, captures (must be 1), replays, eager steps,
     a capture's failure; then the `--pack auto` choice
  d  graph against eager: one init (K = 2, float32), the same 20 batches under an lr that changes every
     step, fused and streams: per-step losses, weight and BatchNorm-statistic updates, agreement within
     TOLERANCE; then `--compile` with fastseed's graphs (default) and without them (reduce-overhead)
  e  full picard-short seeds at the fastest setting of c until its share is spent, against Picard's
     Table 1 (90.02 ± 0.23, min 89.01, max 90.83): a one-sample t interval of the mean, a chi-square
     interval of the std, and a stated verdict (or "too few seeds to tell")         [real data only]
  f  GPU non-determinism: seed 0 trained three times alone (same layout each time) and once in another
     layout (its pack in e), spread in points of accuracy                            [real data only]
`--synthetic` runs a–d on generated CIFAR-shaped images (fastseed.data.synthetic, 50,000 + 10,000), so
the engine is checked while the real data is still on its way; e and f need the real CIFAR-10 from
`--data-dir` and are skipped (with that reason) without it. A phase is skipped when its share is less
than its first unit of work, cut (SIGALRM) when it overruns, logged with its traceback when it raises;
the others go on. Exit code 0 once started (the table says what failed); 2 for bad input (one line on
stderr), e.g. an --out that already holds a campaign (never overwritten).

THE PLAN for a GPU session (this project's device tool: 15 minutes of device time in all, start-up and
idle waits included; a call carries ≤ 64 MiB and runs ≤ 10 min; ≤ 8 files of ≤ 16 MiB come back; a
machine idle 30 s goes back, bare). CIFAR-10 (162 MiB) travels in its three parts, one a call, staged
on the machine's disk between calls made back to back:
  here, once:   mkdir -p .stage && echo /.stage/ >> .git/info/exclude
                cp ../shared/cifar10/cifar-10-binary.tar.gz.part-* ../shared/cifar10/SHA256SUMS .stage/
  call 1  carry [".stage/cifar-10-binary.tar.gz.part-0"], timeout_s 420; ~90 s start + 240 s:
          mkdir -p /root/stage && cp .stage/*.part-0 /root/stage/ && PYTHONPATH=. PYTHONUNBUFFERED=1
          python3 bench/gpu_campaign.py --synthetic --phases abcd --budget-s 240 --out $OUT
          a ~15 s, b ~30 s, c ~105 s, d ~90 s, on generated data: the engine, the graphs, the compile rule
  call 2  at once; carry [".stage/cifar-10-binary.tar.gz.part-1"], timeout_s 60; ~20 s:
          cp .stage/*.part-1 /root/stage/ && ls -l /root/stage
  call 3  at once; carry [".stage/cifar-10-binary.tar.gz.part-2", ".stage/SHA256SUMS"], timeout_s 420; ~320 s:
          cp .stage/*.part-2 .stage/SHA256SUMS /root/stage/ && (cd /root/stage && cat cifar-10-binary.tar.gz.part-*
          > cifar-10-binary.tar.gz && sha256sum -c SHA256SUMS --ignore-missing) && PYTHONPATH=. PYTHONUNBUFFERED=1
          python3 bench/gpu_campaign.py --data-dir /root/stage --phases ef --budget-s 300 --out $OUT
          e ~225 s (seeds vs Table 1), f ~75 s (non-determinism), on the real CIFAR-10
  ≈ 90 + 240 + 20 + 320 s + transfers ≈ 12 min, ~3 min of margin. Each call returns 3 files (below);
  save each call's under bench/results/<date>-<gpu>/call<N>/ before the next call. If the machine went
  back between calls (/root/stage is gone on a fresh one), call 1's results stand; rerun calls 2 and 3
  in a later session. give_back after call 3.

Output files in --out (three, each flushed and fsynced as it grows, so a killed run keeps what it measured):
  campaign.jsonl  one JSON object per line (NaN/inf written as null); every line: t (s since start),
      phase ("a".."f", null for env/end), kind, then by kind:
      env         device, gpu, driver, cuda, cudnn, torch, triton, triton_interpreted, dali, ray (false =
                  absent), commit (null = unknown), dirty, python, host, scale, protocol, budget_s,
                  rehearsal, synthetic, command
      phase       status (done | skipped | failed | cut), title, allotted_s, used_s, reason, error
      peak        flops_per_s, n, dtype                     (a: dense n×n matmul)
      copy        gbps, bytes                               (a: read + write bytes / s)
      kernel      name (lsce | augment), shape, dtype, agree (bool), max_abs_diff | identical, compile_s,
                  s_triton, s_torch, speedup, gbps, fraction_of_copy (augment)
      data        source, train, test, load_s
      step        strategy, k, graphs, s_per_seed_step, s_per_step, steps_per_seed, projected_s_per_seed,
                  fraction_of_peak; or error (out of memory)                                        (c)
      run         preset, protocol, strategy, k, steps, wall_s, s_per_seed, stand_in, graphed, captures,
                  replays, eager_steps, failure (the records' provenance["steps"])                  (c)
      pack_auto   strategy, k, log (choose_pack's own lines)                                        (c)
      graph_check strategy, k, dtype, steps, loss_rel, weight_rel, bn_rel, tolerance, agree, stand_in,
                  graphed, captures, replays, eager_steps, failure                                  (d)
      compile     mode, graphs, k, s_per_seed_step, first_s (compile + warm-up + capture)           (d)
      seed        seed, status, acc (0–1), loss, headline_epoch, wall_s, pack, predictions_sha256,
                  eval_curve, train_curve                        (e; kind "repeat" in f, + run)
      table1      n, mean, std, min, max, ci_mean, ci_std, verdict, std_verdict, outside_range,
                  reference, setting {strategy,k}, protocol, s_per_seed (measured)  (e; accuracies in %)
      nondeterminism  seed, layout, runs, accs (%), spread_pp, std_pp, distinct_predictions, other_layout,
                  other_acc, layout_diff_pp                                                          (f)
      end         statuses {phase: status}, skipped, failed, cut (lists of phases), total_s
  campaign.log    everything printed, stderr included (graph-capture failures, warnings, tracebacks)
  summary.md      the final table (also printed last on stdout), rewritten after every phase

README's numbers come from campaign.jsonl only — speed from the `step` and `run` lines and e's `table1`
(n, mean ± std, min, max, measured s_per_seed), with `env` for device and commit. `--table` rebuilds the
table from campaign.jsonl on any machine.

`--rehearse` runs every phase on the CPU at toy scale (REHEARSAL: a smoke-sized picard-short, kernels
under triton's interpreter, packs of 1 and 2, two seeds; c's runs and d's graphs through the CPU stand-in
of CUDA's graph API, engine.graphs.RecordedGraphs; no --compile, whose C++ build alone would take the
rehearsal's two minutes); bench/test_gpu_campaign.py runs it. The GPU machine has torch, triton,
torchvision, timm, pandas, scipy, matplotlib and tqdm, no network and no DALI: nothing else is imported,
and fastseed's pieces are imported inside the phases, so a missing one fails its phase, not the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STARTED = time.monotonic()  # the budget counts from here (torch's import included): the window is wall time

sys.path.insert(0, str(Path(__file__).parent))
from campaign_phases import PHASES, TABLE1, environment, found_line, need  # noqa: E402
from campaign_run import ALARM, Campaign, Tee, read_lines, run_phases  # noqa: E402

SHARES = {"a": 5, "b": 10, "c": 35, "d": 30, "e": 30, "f": 10}  # see the docstring
TITLES = {"a": "environment", "b": "kernels", "c": "training steps", "d": "graph against eager",
          "e": "seeds vs Table 1", "f": "non-determinism"}


@dataclass(frozen=True)
class Scale:
    """Every size that differs between the GPU campaign and its CPU rehearsal, in one table."""
    name: str
    protocol: str              # preset; the rehearsal shrinks it further (protocol_for)
    matmul: tuple              # (n, dtype name) of the peak matmul
    copy_bytes: int            # buffer of the copy-bandwidth measurement
    loss_shape: tuple          # (K, B, C) of the lsce check: Picard's pack of 16 on the GPU
    augment_shape: tuple       # (images, batch) of the augment check: 50,000 → 16·500 on the GPU
    reps: int                  # timed calls per kernel / matmul / copy measurement
    configs: tuple             # (strategy, K) of phase c, in order of importance
    steps: int                 # timed steps (after autopack's warm-up: the graph's capture included)
    runs: tuple                # c's short runs: (preset, its variant), in order
    check_steps: int           # d's steps of graph against eager
    compile_modes: tuple       # d's --compile modes
    synthetic: tuple           # (train, test) images of --synthetic
    max_seeds: int | None      # phase e stops there (None: when its share is spent)
    repeats: int               # runs of the same seed in phase f
    floors: dict               # seconds a phase needs to start when nothing measured says better
    fallback: tuple            # (strategy, K) for e when phase c measured nothing (f: sequential)
    shrink: dict = field(default_factory=dict)  # the rehearsal's variant of `protocol`

    def protocol_for(self, preset: str | None = None, **changes):
        from fastseed.recipe.presets import get_preset
        protocol = get_preset(preset or self.protocol)
        if preset is None and self.shrink:
            protocol = protocol.variant(**self.shrink)
        return protocol.variant(**changes) if changes else protocol


GPU = Scale(name="gpu", protocol="picard-short", matmul=(8192, "float16"), copy_bytes=1 << 30,
            loss_shape=(16, 500, 10), augment_shape=(50_000, 16 * 500), reps=100,
            configs=(("sequential", 1), ("fused", 1), ("fused", 8), ("fused", 32), ("streams", 1),
                     ("streams", 8), ("streams", 32)),
            steps=10, runs=(("picard-short", dict(epochs=2)),
                            ("fast94", dict(epochs=2, train_epochs=2.0, whiten_bias_epochs=1))),
            check_steps=20, compile_modes=("default", "reduce-overhead"), synthetic=(50_000, 10_000),
            max_seeds=None, repeats=3, floors={"a": 3, "b": 8, "c": 20, "d": 20, "e": 60, "f": 45},
            fallback=("fused", 8))
TOY = dict(train_size=200, test_size=200, batch_size=100, eval_batch_size=200, width=0.0625)  # 2 steps an epoch
REHEARSAL = Scale(name="rehearsal", protocol="smoke", matmul=(256, "float32"), copy_bytes=1 << 22,
                  loss_shape=(2, 7, 10), augment_shape=(16, 4), reps=2,
                  configs=(("sequential", 1), ("fused", 2), ("streams", 2)),
                  steps=2, runs=(("smoke", dict(TOY, chunk_size=100, epochs=3, lr_decay_end=3)),
                                 ("fast94", dict(TOY, batch_size=50, epochs=2, train_epochs=2.0,
                                                 whiten_bias_epochs=1))),  # 8 steps: captured at the 4th
                  check_steps=6, compile_modes=(), synthetic=(200, 200), max_seeds=2, repeats=3,
                  floors={"a": 0.2, "b": 3, "c": 10, "d": 10, "e": 15, "f": 15}, fallback=("sequential", 1),
                  shrink=dict(TOY, chunk_size=100, epochs=3, lr_decay_end=3))  # 6 steps a seed


# --- the table -----------------------------------------------------------------------------------
def grid(*columns: str) -> list[str]:
    """A blank line, then a Markdown table's header and rule."""
    return ["", f"| {' | '.join(columns)} |", f"| {' | '.join('---' for _ in columns)} |"]


def table(lines: list[dict]) -> str:
    """The campaign's results as Markdown, from its JSON lines alone (so `--table` can rebuild it)."""
    by = lambda kind: [x for x in lines if x.get("kind") == kind]
    f = lambda v, fmt: "–" if v is None else format(v, fmt)
    pct = lambda v, fmt: f(None if v is None else 100 * v, fmt)
    env = (by("env") or [{}])[0]
    out = [(f"# fastseed GPU campaign: {env.get('gpu') or env.get('device', '?')}, commit "
            f"{(env.get('commit') or 'unknown')[:12]}, torch {env.get('torch')}, triton {env.get('triton')}, "
            f"cuDNN {env.get('cudnn')}, budget {env.get('budget_s')} s ({env.get('scale')}"
            f"{', synthetic data' if env.get('synthetic') else ''})"), "",
           *grid("phase", "status", "allotted s", "used s", "note")[1:]]
    for p in by("phase"):
        out.append(f"| {p['phase']} {p.get('title', '')} | {p['status']} | {f(p.get('allotted_s'), '.1f')} | "
                   f"{f(p.get('used_s'), '.1f')} | {p.get('reason') or p.get('error') or ''} |")
    out += [""] + [f"matmul peak: {x['flops_per_s'] / 1e12:.3g} TFLOP/s ({x['dtype']}, n={x['n']})" for x in by("peak")]
    out += [f"device copy: {x['gbps']:.1f} GB/s (read + write)" for x in by("copy")]
    if by("kernel"):
        out += grid("kernel", "shape", "agrees", "µs triton", "µs torch", "speedup", "GB/s", "% of copy", "first call s")
        out += [f"| {x['name']} | {x['shape']} {x['dtype']} | {x['agree']} | {1e6 * x['s_triton']:.1f} | "
                f"{1e6 * x['s_torch']:.1f} | {x['speedup']:.2f} | {f(x.get('gbps'), '.0f')} | "
                f"{pct(x.get('fraction_of_copy'), '.0f')} | {x['compile_s']:.2f} |" for x in by("kernel")]
    if by("step"):
        out += grid("strategy", "K", "graphs", "ms/step", "ms/seed-step", "training s/seed (projected)", "% of peak")
        for x in by("step"):
            if x.get("error"):
                out.append(f"| {x['strategy']} | {x['k']} | {x['error']} | | | | |")
                continue
            out.append(f"| {x['strategy']} | {x['k']} | {'on' if x['graphs'] else 'off'} | {1e3 * x['s_per_step']:.2f} | "
                       f"{1e3 * x['s_per_seed_step']:.2f} | {x['projected_s_per_seed']:.2f} | "
                       f"{pct(x.get('fraction_of_peak'), '.1f')} |")
    if by("run"):
        out += grid("run", "K", "steps", "s", "s/seed", "graphed", "captures", "replays", "eager steps", "failure")
        out += [f"| {x['preset']}{' (stand-in)' if x.get('stand_in') else ''} | {x['k']} | {x['steps']} | "
                f"{x['wall_s']:.1f} | {x['s_per_seed']:.2f} | {x['graphed']} | {x['captures']} | {x['replays']} | "
                f"{x['eager_steps']} | {x['failure'] or ''} |" for x in by("run")]
    out += [f"\n--pack auto ({x['strategy']}): K = {x['k']}" for x in by("pack_auto")]
    if by("graph_check"):
        out += grid("graph vs eager", "K", "steps", "losses", "weight updates", "BN statistics", "agree", "captures")
        out += [f"| {x['strategy']}{' (stand-in)' if x.get('stand_in') else ''} | {x['k']} | {x['steps']} | "
                f"{x['loss_rel']:.1e} | {x['weight_rel']:.1e} | {x['bn_rel']:.1e} | {x['agree']} | {x['captures']} |"
                for x in by("graph_check")]
    out += [f"--compile {x['mode']} ({'fastseed graphs' if x['graphs'] else 'no fastseed graphs'}): "
            f"{1e3 * x['s_per_seed_step']:.2f} ms/seed-step at K={x['k']}, {x['first_s']:.0f} s first" for x in by("compile")]
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


# --- the command ---------------------------------------------------------------------------------
def parse(argv):
    from fastseed.cli import Parser
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="folder for campaign.jsonl, campaign.log, summary.md")
    p.add_argument("--budget-s", type=float, default=None, help="seconds for the whole run (420; rehearsal 115)")
    p.add_argument("--data-dir", default=None, help="CIFAR-10's folder (default: data/ or $FASTSEED_DATA)")
    p.add_argument("--synthetic", action="store_true", help="generated CIFAR-shaped data: phases a-d only")
    p.add_argument("--rehearse", action="store_true", help="every phase at toy scale on the CPU")
    p.add_argument("--phases", default="".join(PHASES), help=f"which phases to run (default: {''.join(PHASES)})")
    p.add_argument("--table", type=Path, default=None, help="print the table of an existing campaign.jsonl")
    p.add_argument("--fail-phase", default=None, help=argparse.SUPPRESS)  # tests: the campaign goes on
    a = p.parse_args(argv)
    if a.table is None and a.out is None:
        p.error("--out is required")
    if a.budget_s is not None and not a.budget_s > 0:
        p.error(f"--budget-s must be positive, not {a.budget_s}")
    if set(a.phases) - set(PHASES):
        p.error(f"--phases takes letters of {''.join(PHASES)}, not {a.phases!r}")
    if a.synthetic and a.data_dir:
        p.error("--synthetic or --data-dir: generated data or the real CIFAR-10, not both")
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
    import torch._dynamo  # noqa: F401 - torch imports it lazily: a phase cut mid-import would leave it half made
    if not a.rehearse and not torch.cuda.is_available():
        raise FastseedError("no CUDA GPU visible to torch: the campaign needs one (--rehearse checks it on a CPU)")
    device = torch.device("cpu" if a.rehearse else "cuda")
    budget = a.budget_s if a.budget_s is not None else (115.0 if a.rehearse else 420.0)
    if (a.out / "campaign.jsonl").exists():
        raise FastseedError(f"--out {a.out} already holds a campaign (campaign.jsonl): give another folder")
    try:
        a.out.mkdir(parents=True, exist_ok=True)
        run = Campaign(a.out, budget, scale, a.data_dir, device, STARTED,
                       synthetic=scale.synthetic if a.synthetic else None, table=table)
    except OSError as e:
        raise FastseedError(f"--out {a.out}: cannot write there ({e.strerror or e})") from None
    saved_stderr, saved_handler = sys.stderr, signal.signal(signal.SIGALRM, ALARM)
    sys.stderr = Tee(sys.stderr, run.log)  # library warnings and capture failures land in the log too
    try:
        env = environment(device, scale)
        run.say(found_line(env, budget, a.out))
        run.emit("env", **env, budget_s=budget, rehearsal=a.rehearse, synthetic=a.synthetic,
                 command=" ".join(sys.argv))
        run_phases(run, PHASES, a.phases, SHARES, TITLES, need, a.fail_phase)
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
