"""A seed study from Python (a notebook): run a training function under many seeds, read the records as
a DataFrame, build the report with its tables as DataFrames and its figures as matplotlib figures.

    from fastseed import study
    base = study.run("examples.digits_mlp:train", seeds=300, workers=2, until_ci=0.1)
    base.frame()                                    # one row per seed: seed, status, the metric, extras, …
    tuned = study.run("examples.digits_mlp:train", set={"lr": 0.1}, seeds=300, versus=base, margin=0.1)
    tuned.decision                                  # "… is better than …: the whole interval is above 0; …"
    report = study.report(base, tuned, labels=["lr 0.05", "lr 0.1"])   # the same files as the command line
    report.tables["compare"], report.figures["distribution"]
    study.replay(base, seed=3)                      # trains seed 3 again: Replay(identical=True, …)
    study.merge("results/all.sqlite", base, "node2.sqlite")
    study.load("results/old.sqlite").frame()        # a store written before, by the command line or here

`train` is "package.module:function" or the function itself, defined in a file (a function defined in
a notebook cell has no file to hash or to import in a worker: move it to a .py file beside the
notebook). Every call that trains — a scan, a replay, a merge — runs the command line (`python -m
fastseed.scan`, `fastseed.replay`, `fastseed.merge`) as a fresh process and prints its lines here, so
every way of running (`workers`, `gpus`, `ray`, `until_ci`, `versus`) is the command line's own, and
the code that trains is the module file as it is on disk now (the one whose sha256 the protocol
holds), never an older copy this kernel imported. Bad input raises FastseedError with the command's
one line; the training function raising raises UserCodeError after its traceback is printed; Ctrl-C
(interrupting the kernel) stops the scan as in a terminal: the seeds in flight are committed, and the
same call resumes. The protocol (for early refusals and the store's name) and the report are made here,
in this process; the report reads the stores alone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import fastseed
from fastseed import EXIT_INTERRUPTED, EXIT_USAGE, FastseedError, UserCodeError

SEED_LINE = re.compile(r"(\[[^\]]*\] )?seed \d+: ")  # a scan's line per seed ([cpu#0] seed 3: ok …)


# ---- a study: one store --------------------------------------------------------------------------

@dataclass(frozen=True)
class Study:
    """One store of seed records (a protocol under many seeds), as the Python API hands it back."""
    path: Path

    @property
    def protocol(self) -> str:
        from fastseed.store import Store
        with Store.open(self.path) as store:
            return store.protocol

    @property
    def decision(self) -> str | None:
        """What the scan's stopping rule (until_ci, versus) decided, in words; None if it had none or
        did not decide."""
        from fastseed.store import Store
        with Store.open(self.path) as store:
            note = store.stopping_note()
        return None if note is None else note.get("decision")

    def frame(self, blobs: bool = False):
        """The records, one row per seed, in seed order: the scalars, `metric` (the headline as shown:
        test accuracy in %, or the training function's metric), one `extra.NAME` column per extra metric,
        curves, pack, provenance; the predictions and logits blobs with `blobs=True`."""
        from fastseed.store import Store
        with Store.open(self.path) as store:
            frame = store.to_frame()
        from fastseed.store.record import Metric
        metrics = [m or {} for m in frame["metrics"]]
        scale = [Metric.of(m).scale for m in metrics]
        frame.insert(frame.columns.get_loc("test_acc"), "metric", frame["test_acc"] * scale)
        for name in sorted({k for m in metrics for k in m.get("extra", {})}):
            frame[f"extra.{name}"] = [m.get("extra", {}).get(name, float("nan")) for m in metrics]
        return frame if blobs else frame.drop(columns=["predictions", "logits"])

    def report(self, *others, **kw) -> "Report":
        """This study's report, with `others` (Studies or store paths) beside it: see `report`."""
        return report(self, *others, **kw)

    def replay(self, seed: int, **kw) -> "Replay":
        return replay(self, seed, **kw)


def load(path) -> Study:
    """A store written before (by the command line or by `run`)."""
    from fastseed.store import Store
    with Store.open(path):  # refuses what is not a store, in one line
        pass
    return Study(Path(path))


def _path(store) -> Path:
    return store.path if isinstance(store, Study) else Path(store)


# ---- running: the command lines, as processes ----------------------------------------------------

def spec_of(train) -> str:
    """"package.module:function" for a training function given as itself (defined in a file)."""
    if isinstance(train, str):
        return train
    module, name = getattr(train, "__module__", None), getattr(train, "__qualname__", "")
    if not callable(train) or module is None or "<" in name:
        raise FastseedError(f"train must be \"package.module:function\" or a function defined at the top of a "
                            f"module, got {train!r}")
    if module == "__main__":
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        if not main:
            raise FastseedError(f"{name} is defined in this notebook (or the interpreter): fastseed imports a "
                                f"training function by its module path in every worker and in replay, and "
                                f"hashes its file; move it to a .py file beside the notebook and import it")
        folder = str(Path(main).resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module = Path(main).stem
    return f"{module}:{name}"


def _environment(spec: str | None) -> dict:
    """This process's environment, with the folders of fastseed and of the user's module on the path."""
    from fastseed.usercode import code_root
    roots = [str(Path(fastseed.__file__).resolve().parents[1])]
    if spec is not None:
        roots.insert(0, code_root(spec, "--train", "function"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(roots + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _command(module: str, argv: list[str], env: dict | None = None, quiet=lambda line: False) -> tuple[int, list]:
    """`python -m <module> argv` as a process; its lines printed here as they come (but those `quiet`
    says are not), and returned. Ctrl-C here is passed on to it (it commits what is in flight and
    stops), then raised here."""
    proc = subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, env=env or dict(os.environ),
                            start_new_session=True)
    lines, interrupted = [], False
    while True:
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if not quiet(lines[-1]):
                    print(lines[-1], flush=True)
            break
        except KeyboardInterrupt:  # forwarded; a second one drops the seeds in flight, as in a terminal
            interrupted = True
            proc.send_signal(signal.SIGINT)
    code = proc.wait()
    if interrupted:
        raise KeyboardInterrupt(f"{module} stopped: call it again to resume")
    return code, lines


def _raise(module: str, code: int, lines: list[str]) -> None:
    """A command's failure as the API's exception: its one line (exit 2), the user's function raising
    (exit 1, its traceback printed above), anything else with its last line."""
    last = next((line for line in reversed(lines) if line.strip()), "")
    if code == EXIT_USAGE:
        raise FastseedError(last.split(": error: ", 1)[-1])
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt(f"{module} was stopped by a signal: call it again to resume")
    if " raised " in last:
        raise UserCodeError(last.removeprefix("fastseed.scan: "), "\n".join(lines[-40:]))
    raise RuntimeError(f"{module} failed (exit code {code}): {last}")


def run(train=None, *, seeds: int = 100, start: int = 0, set: dict | None = None, protocol=None,  # noqa: A002
        fix=(), fix_seed: int | None = None, deterministic: bool = False, device: str = "auto",
        workers: int | None = None, gpus: str | None = None, ray: str | bool | None = None,
        until_ci: float | None = None, versus=None, margin: float | None = None, ci_method: str | None = None,
        keep_logits: bool = False, out=None, verbose: bool = False) -> Study:
    """Train `train` (a training function: "package.module:function" or the function) under seeds
    [start, start + seeds) into a store, as `python -m fastseed.scan --train …` does, and return it.

    `set` {knob: value} changes the function's knobs (a new protocol, its own store); `protocol` a
    protocol file. `workers` N processes on `device` (several can share one GPU), `gpus` "all", "N" or
    "I,J", `ray` True (a Ray started here) or an address ("auto", "host:port"). `until_ci` W stops once
    the mean is known to ±W; `versus` (a Study or a store) stops once this protocol is better, worse or
    within ±`margin` of that one. `keep_logits` keeps the logits the function returns. `out`: the
    store (default results/<protocol name>.sqlite). The seeds already stored are not trained again.
    `verbose`: print every seed's line too."""
    from fastseed.recipe.overrides import resolve_variant
    if (train is None) == (protocol is None):
        raise FastseedError("run: give train (a training function) or protocol (a protocol file), one of them")
    spec = spec_of(train) if train is not None else None
    sets = [f"{k}={_text(v)}" for k, v in (set or {}).items()]
    fix = tuple(fix.split(",") if isinstance(fix, str) else fix)
    recipe = resolve_variant(None, sets=sets, protocol_file=protocol, train=spec, fix=fix, fix_seed=fix_seed,
                             deterministic=deterministic).protocol  # refusals here, before any process
    path = Path(out) if out is not None else recipe.default_store
    argv = ["--train", spec] if spec is not None else ["--protocol", protocol]
    argv += [a for s in sets for a in ("--set", s)] + ["--seeds", seeds, "--start", start, "--device", device,
                                                       "--out", path, "--no-progress"]
    argv += (["--fix", ",".join(fix)] if fix else []) + (["--fix-seed", fix_seed] if fix and fix_seed is not None
                                                          else []) + (["--deterministic"] if deterministic else [])
    options = {"--workers": workers, "--gpus": gpus, "--until-ci": until_ci, "--margin": margin,
               "--ci-method": ci_method, "--versus": None if versus is None else _path(versus)}
    argv += [a for flag, value in options.items() if value is not None for a in (flag, value)]
    argv += (["--ray"] + ([] if ray is True else [ray]) if ray else []) + (["--keep", "logits"] if keep_logits else [])
    code, lines = _command("fastseed.scan", argv, _environment(getattr(recipe, "train", None)),
                           quiet=lambda line: not verbose and SEED_LINE.match(line) is not None)
    if code:
        _raise("fastseed.scan", code, lines)
    return Study(path)


def _text(value) -> str:
    """A knob's value as `--set` reads it."""
    from fastseed.recipe.knobs import show
    return show(tuple(value) if isinstance(value, list) else value)


@dataclass(frozen=True)
class Replay:
    """A seed trained again: whether its record is the stored one, and the command's lines (the fields
    that differ, when it is not)."""
    identical: bool
    lines: list = field(default_factory=list)


def replay(store, seed: int, *, device: str | None = None, data_dir=None) -> Replay:
    """Train seed `seed` of `store` again (`python -m fastseed.replay`) and compare the records."""
    from fastseed.store import Store
    with Store.open(_path(store)) as opened:
        from fastseed.recipe.protocol import protocol_from_json
        spec = getattr(protocol_from_json(opened.protocol_json), "train", None)
    argv = [_path(store), "--seed", seed] + (["--device", device] if device else []) + \
        (["--data-dir", data_dir] if data_dir else [])
    code, lines = _command("fastseed.replay", argv, _environment(spec))
    if code not in (0, 1):
        _raise("fastseed.replay", code, lines)
    return Replay(code == 0, lines)


def merge(out, *stores, prefer=None) -> Study:
    """Merge `stores` (Studies or paths) of one protocol into `out` (`python -m fastseed.merge`)."""
    argv = [out, *map(_path, stores)] + (["--prefer", _path(prefer)] if prefer is not None else [])
    code, lines = _command("fastseed.merge", argv)
    if code not in (0, 1):  # 1: merged, with conflicts listed above
        _raise("fastseed.merge", code, lines)
    return Study(Path(out))


# ---- the report, made here -----------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    """The report of one or more stores: its tables (name → DataFrame, the numbers of each CSV), its
    figures (name → matplotlib Figure), its Markdown, and the folder it was written to."""
    path: Path
    tables: dict
    figures: dict
    markdown: str

    def __repr__(self) -> str:
        return f"Report({self.path}: {len(self.figures)} figures, {len(self.tables)} tables)"


def report(*stores, labels=None, out=None, top: int = 5, boot: int | None = None, data_dir=None) -> Report:
    """The report of `stores` (Studies or store paths) as `python -m fastseed.report` makes it, written to
    `out` (default: beside the first store, <store>-report) with the same files (report.html,
    report.md, every figure as PNG, every table as CSV), and returned with its tables and figures."""
    from fastseed.report.sections import build, open_runs
    paths = [str(_path(s)) for s in stores]
    if not paths:
        raise FastseedError("report: give at least one store")
    if labels is not None and len(labels) != len(paths):
        raise FastseedError(f"labels name {len(labels)} store(s) but {len(paths)} were given")
    groups = open_runs(paths, labels)
    folder = Path(out) if out is not None else Path(paths[0]).with_name(Path(paths[0]).stem + "-report")
    doc = build(groups, top=top, n_boot=boot, data_dir=data_dir)
    doc.write(folder)
    return Report(folder, doc.tables, doc.figures, doc.markdown())
