"""A preset plus the user's changes, as one recipe: `--set KEY=VALUE`, protocol files and `--model`.

    python -m fastseed.scan --preset picard-short --set lr=0.3 --set cutout=0
    python -m fastseed.scan --protocol my.toml [--set …] [--model mynets.wide:make]
    python -m fastseed.scan --protocol my.toml --show-protocol      # the resolved recipe, no training
    python -m fastseed.scan --train examples.digits_mlp:train --set lr=0.1   # a training function's knobs

Any knob of a preset can be changed (fastseed.recipe.protocol: every field but the name, the source and the
digests fastseed fills in; an ImageNet phase's knobs as `head.lr`, `full.steps`). A value is parsed to
the knob's type -- int, float, true/false, a string among the knob's choices, a comma-separated list
(`lr_triangle=0.2,0.23,0.07`, `fixed=init,order`), `none` for an optional knob -- and checked alone and
with the other knobs; every problem is one line naming the knob and what it allows (FastseedError),
with the closest knob names for a misspelt one.

A protocol file is TOML:

    base = "picard-short"          # the preset it starts from (or train = "package.module:function")
    name = "wide-picard"           # optional; else the name says what changed
    model = "mynets.wide:make"     # optional: your own model (fastseed/models/user.py)
    [set]                          # the overrides (top-level keys work too)
    width = 2.0
    lr_triangle = [0.2, 0.25, 0.07]
    [set.head]                     # ImageNet: a phase's knobs (or "head.lr" = 0.05)
    lr = 0.05

A training function's knobs (fastseed.recipe.function) are set the same way, by their names, from the
function's defaults. A change to a knob that nothing reads under the other knobs' values (`width` of a
user model, `celu_alpha` of resnet18, `momentum` under Adam: the kind's `unread`) is refused in one line:
it would make another store for the same training.

They apply in order: the base, the file, each `--set` (a later one wins), `--model`. A change that
equals the base's value is no change: a `--set lr=0.2` on picard-short IS picard-short (same name, same
hash, same store). Otherwise the name says what changed, sorted: `picard-short+lr=0.3,width=0.5`. The
knobs that the scan's own flags set (--augment, --fix, --fix-seed, --deterministic, --classes,
--limit-steps, --limit-batch) keep the names those flags always gave (`smoke[augment=image]`), whether
they come from a flag or a `--set`, so one recipe never gets two names -- the name is part of the hash.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from fastseed import FastseedError
from fastseed.recipe.function import TrainProtocol
from fastseed.recipe.protocol import Finetune, Phase, CifarProtocol
from fastseed.recipe.knobs import describe_type, optional_of, show
from fastseed.seeds import STREAM_NAME

# the knobs the scan's flags set, named as Recipe.variant always named them: base[k=v,…]
BRACKET_KNOBS = ("augment", "classes", "deterministic", "fix_seed", "fixed", "limit_batch", "limit_steps")
FILE_KEYS = ("base", "train", "name", "model", "source", "set")


# --- knobs by name ------------------------------------------------------------------------------------
def knob_names(recipe) -> list[str]:
    """Every knob `--set` can change: the recipe's settable fields, and each phase's as phase.knob."""
    names = [n for n, f in recipe.fields().items() if f.metadata.get("settable", True) and n != "phases"]
    if isinstance(recipe, TrainProtocol):  # the function's own knobs first, in its signature's order
        names = list(recipe.knobs) + [n for n in names if n not in recipe.knobs]
    if isinstance(recipe, Finetune):
        names += [f"{p.name}.{f.name}" for p in recipe.phases for f in dataclasses.fields(Phase) if f.name != "name"]
    return names


def hint_of(recipe, key: str):
    if "." in key:
        return typing.get_type_hints(Phase)[key.split(".", 1)[1]]
    return recipe.hints()[key]


def value_of(recipe, key: str):
    if "." in key:
        phase, knob = key.split(".", 1)
        return getattr(next(p for p in recipe.phases if p.name == phase), knob)
    return getattr(recipe, key)


def check_key(recipe, key: str, where: str) -> None:
    if key in knob_names(recipe):
        return
    if key in recipe.fields():
        raise FastseedError(f"{where}: {key} is filled in by fastseed, not set"
                            + (" (a protocol file's `name` names a recipe)" if key == "name" else ""))
    if key == "model" and isinstance(recipe, Finetune):
        raise FastseedError(f"{where}: an ImageNet fine-tune has no model knob; its network is `backbone`")
    if key == "model" and isinstance(recipe, TrainProtocol):
        raise FastseedError(f"{where}: a training function builds its own model (--model is for the CIFAR presets)")
    close = difflib.get_close_matches(key, knob_names(recipe), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise FastseedError(f"{where}: unknown knob {key!r} of {recipe.name} ({hint}--show-protocol lists every knob)")


# --- values ---------------------------------------------------------------------------------------------
def parse_text(key: str, text: str, hint, where: str):
    """A `--set` value, as the knob's type."""
    text = text.strip()
    inner = optional_of(hint)
    if inner is not None:
        return None if text.lower() in ("none", "null", "") else parse_text(key, text, inner, where)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:  # e.g. int | str
        try:
            return int(text)
        except ValueError:
            return text
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        parts = [t for t in text.strip("()[]").split(",") if t.strip()]
        return canonical(key, tuple(parse_text(key, t, item, where) for t in parts))
    try:
        if hint is bool:
            return {"true": True, "false": False}[text.lower()]
        if hint is int:
            return int(text)
        if hint is float:
            value = float(text)
            if math.isfinite(value):
                return value
            raise ValueError
    except (KeyError, ValueError):
        raise FastseedError(f"{where}: {key} must be {describe_type(hint)}, got {text!r}") from None
    return text


def from_toml(key: str, value, hint, where: str):
    """A protocol file's value (TOML-typed), as the knob's type: an integer is a fine float, a list a
    tuple, and a string is parsed as `--set` parses it (so "none" works for an optional knob)."""
    accepts_str = hint is str or str in typing.get_args(hint) or str in typing.get_args(optional_of(hint) or str)
    if isinstance(value, str) and not accepts_str:
        return parse_text(key, value, hint, where)
    inner = optional_of(hint) or hint
    if typing.get_origin(inner) is tuple and isinstance(value, list):
        item = typing.get_args(inner)[0]
        return canonical(key, tuple(from_toml(key, v, item, where) for v in value))
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (dict, list)):
        raise FastseedError(f"{where}: {key} must be {describe_type(hint)}, got {value!r}")
    return value


def canonical(key: str, value):
    """One spelling per value: the fixed streams sorted (as the JSON keeps them)."""
    return tuple(sorted(set(value))) if key == "fixed" else value


def checked(recipe, key: str, value, where: str):
    """The value if the knob allows it alone (its type, choices, range), else one line saying what it allows."""
    if "." in key:
        phase_name, knob = key.split(".", 1)
        phase = next(p for p in recipe.phases if p.name == phase_name)
        problem = dataclasses.replace(phase, **{knob: value}).problem()
    else:
        problem = recipe.check_knob(key, value)
    if problem:
        raise FastseedError(f"{where}: {problem}")
    return value


# --- applying changes -----------------------------------------------------------------------------------
def changed(recipe, changes: dict, name: str):
    """`recipe` with `changes` ({key: value}, phase knobs as phase.knob) under `name`, validated."""
    top = {k: v for k, v in changes.items() if "." not in k}
    phases = recipe.phases if isinstance(recipe, Finetune) else None
    if phases is not None:
        phases = tuple(dataclasses.replace(p, **{k.split(".", 1)[1]: v for k, v in changes.items()
                                                 if k.startswith(p.name + ".")}) for p in phases)
        top["phases"] = phases
    return dataclasses.replace(recipe, name=name, **top)


def name_for(name: str, changes: dict) -> str:
    """`base+a=1,b=2` for the changes, then `[k=v,…]` for the flag knobs, as Recipe.variant names them."""
    plus = {k: v for k, v in changes.items() if k not in BRACKET_KNOBS}
    flags = {k: v for k, v in changes.items() if k in BRACKET_KNOBS}
    label = lambda v: f"({show(v)})" if isinstance(v, tuple) else show(v)
    if plus:
        name += "+" + ",".join(f"{k}={label(v)}" for k, v in sorted(plus.items()))
    if flags:
        name += "[" + ",".join(f"{k}={'+'.join(v) if isinstance(v, tuple) else v}" for k, v in sorted(flags.items())) + "]"
    return name


@dataclass(frozen=True)
class Resolved:
    """The recipe a scan trains, the preset it starts from, and where each changed knob came from."""
    protocol: CifarProtocol | Finetune
    base: CifarProtocol | Finetune
    origins: dict  # key -> "--set", "--model" or "file NAME"

    def describe(self) -> str:
        return describe_protocol(self.protocol, self.base, self.origins)


def read_protocol_file(path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise FastseedError("protocol files need Python 3.11 (tomllib) or the tomli package") from None
    path = Path(path)
    if not path.is_file():
        raise FastseedError(f"--protocol {path}: no such file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise FastseedError(f"--protocol {path}: not valid TOML: {str(e).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FastseedError(f"--protocol {path}: cannot read it: {e}") from None


def flatten(table: dict, prefix: str = "") -> dict:
    """{"head": {"lr": 0.05}} -> {"head.lr": 0.05}: a phase's knobs as [set.head] tables."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resolve(base: str | None, sets=(), protocol_file=None, model: str | None = None,
            train: str | None = None) -> Resolved:
    """The recipe of preset `base` or of training function `train` (a protocol file's own base or train
    wins) with the file's changes, then each `--set KEY=VALUE`, then `--model`. FastseedError (one line)
    for any bad input."""
    from fastseed.recipe.presets import PRESETS, get_preset

    table = read_protocol_file(protocol_file) if protocol_file is not None else {}
    if protocol_file is not None:
        if ("base" in table) == ("train" in table) or not isinstance(table.get("base", table.get("train")), str):
            raise FastseedError(f"--protocol {protocol_file}: needs base = \"<preset>\" (one of {', '.join(PRESETS)}) "
                                f"or train = \"package.module:function\", one of them")
        base, train = table.get("base"), table.get("train")
        for key in ("name", "source"):
            if key in table and (not isinstance(table[key], str) or not table[key].strip()):
                raise FastseedError(f"--protocol {protocol_file}: {key} must be a non-empty string")
        if not isinstance(table.get("set", {}), dict):
            raise FastseedError(f"--protocol {protocol_file}: [set] must be a table of knob = value")
    if base is None and train is None:
        raise FastseedError("no preset to start from: give --preset NAME or a protocol file with base = \"NAME\"")
    if train is not None:
        from fastseed.recipe.function import function_protocol
        start = function_protocol(train)
    else:
        start = get_preset(base)

    steps = []  # (key, value, origin, where), in the order they apply
    origin = f"file {Path(protocol_file).name}" if protocol_file is not None else ""
    overrides = {**{k: v for k, v in table.items() if k not in FILE_KEYS}, **table.get("set", {})}
    for key, value in flatten(overrides).items():
        where = f"--protocol {protocol_file}: {key}"
        check_key(start, key, where)
        steps.append((key, from_toml(key, value, hint_of(start, key), where), origin, where))
    if "model" in table:
        steps.append(("model", table["model"], origin, f"--protocol {protocol_file}: model"))
    for text in sets:
        key, eq, raw = text.partition("=")
        key, where = key.strip(), f"--set {text}"
        if not eq or not key:
            raise FastseedError(f"{where}: expected KEY=VALUE, e.g. --set lr=0.3")
        check_key(start, key, where)
        steps.append((key, parse_text(key, raw, hint_of(start, key), where), "--set", where))
    if model is not None:
        steps.append(("model", model, "--model", f"--model {model}"))

    values, origins, wheres, from_file = {}, {}, {}, {}
    for key, value, came, where in steps:
        if key == "model":  # the others were checked before their value was parsed
            check_key(start, key, where)
        values[key] = checked(start, key, value, where)
        origins[key], wheres[key] = came, where
        if came == origin and origin:
            from_file[key] = values[key]
    return finish(start, values, origins, wheres, from_file, table, protocol_file)


def finish(start, values: dict, origins: dict, wheres: dict, from_file: dict, table: dict, protocol_file) -> Resolved:
    """Apply the checked values, fill in a user model's digest, and name the result: the file's name (then
    what the command line changed from the file's recipe), else the preset's name and what changed."""
    from fastseed.recipe.presets import PRESETS
    changes = {k: v for k, v in values.items() if v != value_of(start, k)}
    origins = {k: o for k, o in origins.items() if k in changes}
    name_given, source = table.get("name"), table.get("source")
    if not changes and name_given in (None, start.name):
        return Resolved(start, start, {})  # nothing changed: the preset itself, its name, its hash
    if name_given is not None:
        if name_given in PRESETS:
            raise FastseedError(f"--protocol {protocol_file}: name {name_given!r} is a preset's name; choose another")
        later = {k: v for k, v in changes.items() if v != from_file.get(k, value_of(start, k))}
        name = name_for(name_given, later)
    else:
        name = name_for(start.name, changes)
    extra = {}
    if ":" in changes.get("model", ""):
        from fastseed.models.user import check_user_model
        extra["model_digest"] = check_user_model(changes["model"])
    try:
        recipe = changed(start, changes, name)
        if extra or source is not None:
            recipe = dataclasses.replace(recipe, source=source or recipe.source, **extra)
    except FastseedError as e:
        what = ", ".join(wheres[k] for k in changes)
        raise FastseedError(f"{what}: {str(e).split(': ', 1)[-1]}") from None
    unread = recipe.unread()
    for key in changes:
        if key in unread:
            raise FastseedError(f"{wheres[key]}: nothing reads {key} in this protocol: {unread[key]} (the change "
                                f"would make another store for the same training)")
    return Resolved(recipe, start, origins)


def resolve_protocol(base: str | None, sets=(), protocol_file=None, model: str | None = None,
                     train: str | None = None):
    """The recipe to train: preset `base` (or the protocol file's base), or training function `train`,
    with the user's changes."""
    return resolve(base, sets, protocol_file, model, train).protocol


def describe_protocol(protocol, base=None, origins: dict | None = None) -> str:
    """Every knob of the resolved recipe, its value and where it came from ("preset" when it is the
    base's, else the file, --set or --model that changed it, with the base's value), for --show-protocol."""
    base = base or protocol
    origins = origins or {}
    function = isinstance(base, TrainProtocol)
    start = "default" if function else "preset"  # where an unchanged knob's value comes from
    based = f"the training function {base.train}" if function else f"preset {base.name}: {base.source}"
    lines = [f"protocol {protocol.name}  (hash {protocol.hash[:12]})",
             f"based on {based}" if base is not protocol else f"source: {protocol.source}"]
    if protocol.source != base.source:
        lines.append(f"source: {protocol.source}")
    types = dict(line.split(": ", 1) for line in protocol.signature) if function else {}
    width = max([len(k) for k in knob_names(protocol)] + [4])
    lines.append(f"{'knob':<{width}}  {'value':<24}  from")
    for key in knob_names(protocol):
        value, before = value_of(protocol, key), value_of(base, key)
        origin = start if value == before else f"{origins.get(key, 'override')} ({start}: {show(before)})"
        lines.append(f"{key:<{width}}  {show(value):<24}  {origin}" + (f"  [{types[key]}]" if key in types else ""))
    for key in ("model_digest", "weights", "train_digest"):
        if getattr(protocol, key, ""):
            lines.append(f"{key:<{width}}  {getattr(protocol, key)}  (filled in by fastseed)")
    return "\n".join(lines)


# --- the scan's variation flags: --augment, --fix, --deterministic, --classes, … ----------------------
def flag(name: str) -> str:
    """The command-line spelling of a knob a flag sets, for messages: limit_steps → --limit-steps."""
    return "--" + name.replace("_", "-")


def flag_sets(*, augment: str | None = None, fix: tuple = (), fix_seed: int | None = None,
              deterministic: bool = False, classes: int | None = None, limit_steps: int | None = None,
              limit_batch: int | None = None) -> list[str]:
    """The scan's variation flags as the `--set KEY=VALUE` texts they stand for (fastseed.recipe.overrides
    names these knobs as the flags always did, so each flag keeps its protocol's name and hash).
    None/()/False mean "as the preset has it"; `fix_seed` counts only with `fix`."""
    sets = [f"augment={augment}"] if augment is not None else []
    if fix:
        sets += [f"fixed={','.join(sorted(set(fix)))}"] + ([f"fix_seed={fix_seed}"] if fix_seed is not None else [])
    sets += ["deterministic=true"] if deterministic else []
    given = dict(classes=classes, limit_steps=limit_steps, limit_batch=limit_batch)
    return sets + [f"{k}={v}" for k, v in given.items() if v is not None]


def resolve_variant(preset: str | None, *, sets=(), protocol_file=None, model: str | None = None,
                    train: str | None = None, **flags):
    """The recipe a scan trains (a `fastseed.recipe.overrides.Resolved`): preset `preset` (or the protocol
    file's base) or training function `train`, the file, each `--set`, `--model`, then the scan's
    variation flags (`flag_sets`). A flag the protocol's kind has no knob for, or a `fix` stream it never
    draws from, is refused in one line naming the flag."""
    from fastseed.recipe.presets import PRESETS
    table = read_protocol_file(protocol_file) if protocol_file is not None else {}
    base = table.get("base") if protocol_file is not None else preset
    if isinstance(base, str) and base in PRESETS:  # else resolve() says what is wrong with it
        check_flags(PRESETS[base], **flags)
    elif train is not None or "train" in table:
        check_flags(TrainProtocol(name="a training function"), **flags)
    return resolve(preset, list(sets) + flag_sets(**flags), protocol_file, model, train)


def check_flags(base, *, augment=None, fix=(), classes=None, limit_steps=None, limit_batch=None, **_):
    """A flag whose knob the preset's kind does not have (--augment on a fine-tune, --classes on a CIFAR
    protocol), or a `--fix` stream the kind never draws from, refused in one line naming the flag. (A
    training function draws streams of its own names: they are checked as it draws them.)"""
    foreign = [flag(n) for n, v in (("augment", augment), ("classes", classes), ("limit_steps", limit_steps),
                                    ("limit_batch", limit_batch)) if v is not None and n not in base.fields()]
    if foreign:
        raise FastseedError(f"{' '.join(foreign)}: not a knob of {base.name} ({base.KIND})")
    if isinstance(base, TrainProtocol):
        bad = [s for s in fix if not STREAM_NAME.match(s)]
        if bad:
            raise FastseedError(f"--fix {','.join(bad)}: a stream name is lowercase letters, digits and _, a "
                                f"letter first")
        return
    unknown = sorted(set(fix) - set(base.STREAMS))
    if unknown:
        raise FastseedError(f"--fix {','.join(unknown)}: {base.name} draws no {' or '.join(unknown)} stream; "
                            f"its streams are {', '.join(base.STREAMS)}")


def protocol_variant(base, **flags):
    """Preset `base` with the scan's variation flags (see `flag_sets`): the same protocol, name and hash
    as `--set` of the same knobs. `base` must be a preset (it is looked up by its name)."""
    return resolve_variant(base.name, **flags).protocol
