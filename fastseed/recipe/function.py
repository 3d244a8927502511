"""A user's whole training as a recipe: `--train package.module:function`.

    def train(seed, device, lr: float = 0.05, epochs: int = 10, hidden: tuple[int, ...] = (64,),
              optimizer: Literal["sgd", "adam"] = "sgd", limit: int | None = None):
        ...
        return {"metric": 100 * acc, "name": "accuracy", "unit": "%", "bounds": (0, 100), ...}

fastseed calls `function(seed, device, **knobs)` once per seed (fastseed.engine.function). Its knobs are
the keyword arguments after the first two that have a default: each becomes a `knob` of a frozen
dataclass made from the signature (`TrainProtocol` below, one subclass per signature), so `--set
lr=0.1`, protocol files, `--show-protocol`, the one-line refusals with the closest names, the
canonical JSON and the hash are the same machinery as the built-in recipes'. A knob's type is its
annotation, else its default's: int, float, bool, str, `Literal[...]` of strings or ints (its values
become the knob's choices), `tuple[T, ...]` of those, or any of them `| None`. An argument without a
default, or of another type, is refused in one line naming it.

The protocol holds the spec, the sha256 of the module file (`train_digest`), the signature as text
(`signature`: the knobs and their types, so a store describes its own knobs and its protocol is
rebuilt from its JSON without importing the user's code — a report of the store works where the
module cannot be imported) and every knob's value: editing the file, or setting a knob, makes another
protocol and another store.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import typing
from dataclasses import dataclass
from pathlib import Path

from fastseed import FastseedError
from fastseed.recipe.knobs import A_NAME, NON_NEGATIVE, Recipe, from_plain, knob, optional_of, show
from fastseed.seeds import STREAM_NAME, Streams

FLAG, ROLE = "--train", "function"  # how the spec is named in messages (fastseed.usercode)
BASIC = {"int": int, "float": float, "bool": bool, "str": str}
_CLASSES: dict[tuple, type] = {}  # signature → its dataclass: one class per signature, so equal recipes are ==


@dataclass(frozen=True)
class TrainProtocol(Recipe):
    """What fastseed itself knows of a training function; each signature's subclass adds its knobs."""
    name: str = knob("", rule=A_NAME, settable=False)
    source: str = knob("", settable=False)
    dataset: str = knob("function", choices=("function",), settable=False)  # the job that trains it (jobs.JOBS)
    train: str = knob("", settable=False)          # package.module:function
    train_digest: str = knob("", settable=False)   # sha256 of the function's module file
    signature: tuple[str, ...] = knob((), settable=False)  # "knob: type" for each of the function's knobs
    # randomness: the streams in `fixed` (any names the function draws: fastseed.seeds.Streams) draw from
    # `fix_seed` in every run; `deterministic` runs the function under torch's deterministic kernels
    fixed: tuple[str, ...] = knob(())
    fix_seed: int = knob(0, rule=NON_NEGATIVE)
    deterministic: bool = knob(False)

    KIND = "a training function"

    def __post_init__(self):
        self.validate()

    @property
    def knobs(self) -> dict:
        """The function's keyword arguments, in the order of its signature."""
        return {line.split(":", 1)[0]: getattr(self, line.split(":", 1)[0]) for line in self.signature}

    def fixed_problem(self) -> str | None:
        """`fixed` names streams (any the function draws), sorted, once each."""
        if list(self.fixed) != sorted(set(self.fixed)) or not all(STREAM_NAME.match(s) for s in self.fixed):
            return (f"fixed must be stream names (lowercase letters, digits and _, a letter first), sorted, once "
                    f"each, got {show(self.fixed)}")
        return None

    def relations(self):
        if self.fixed_problem():
            yield self.fixed_problem()

    def seed(self, value: int) -> Streams:
        return Streams(value, fixed=frozenset(self.fixed), fix_seed=self.fix_seed)

    @property
    def default_store(self) -> Path:
        """results/<name>@<the first 8 hex digits of the file's sha256>.sqlite: editing the function (a new
        protocol) starts a store of its own beside the old one, where the same name would be refused."""
        store = super().default_store
        return store.with_name(f"{store.stem}@{self.train_digest[:8]}{store.suffix}")

    @classmethod
    def from_json(cls, text: str) -> "TrainProtocol":
        """The recipe a store's JSON describes, its class rebuilt from its own signature (no import)."""
        try:
            fields = json.loads(text)
            lines = tuple(fields.get("signature") or ())
            table = [parse_line(line) for line in lines]
        except (ValueError, TypeError, AttributeError, SyntaxError, KeyError, IndexError) as e:
            raise FastseedError(f"protocol JSON of a training function is malformed: {e!r}") from None
        kind = knob_class(lines, table)
        unknown = sorted(set(fields) - set(kind.fields()))
        if unknown:
            raise FastseedError(f"protocol JSON has unknown knob(s) {', '.join(unknown)} (written by a newer fastseed?)")
        hints = kind.hints()
        return kind(**{k: from_plain(v, hints[k]) for k, v in fields.items()})


RESERVED = tuple(f.name for f in dataclasses.fields(TrainProtocol))


# --- the signature, as knobs ---------------------------------------------------------------------------
def type_text(hint, choices: tuple) -> str:
    """A knob's type as the protocol's signature writes it: int, tuple[float, ...], Literal['a', 'b'] | None."""
    inner = optional_of(hint)
    if inner is not None:
        return f"{type_text(inner, choices)} | None"
    if choices:
        return f"Literal[{', '.join(map(repr, choices))}]"
    if typing.get_origin(hint) is tuple:
        return f"tuple[{typing.get_args(hint)[0].__name__}, ...]"
    return hint.__name__


def parse_line(line: str) -> tuple[str, object, tuple]:
    """(name, hint, choices) of one `name: type` line of a signature (`type_text`'s inverse)."""
    name, _, text = line.partition(":")
    text, optional = text.strip(), False
    if text.endswith(" | None"):
        text, optional = text[: -len(" | None")], True
    choices = ()
    if text.startswith("Literal[") and text.endswith("]"):
        choices = tuple(ast.literal_eval(f"[{text[len('Literal['):-1]}]"))
        hint = type(choices[0])
    elif text.startswith("tuple[") and text.endswith(", ...]"):
        hint = tuple[BASIC[text[len("tuple["):-len(", ...]")]], ...]
    else:
        hint = BASIC[text]
    return name.strip(), typing.Optional[hint] if optional else hint, choices


def knob_class(lines: tuple[str, ...], table: list) -> type:
    """The dataclass of one signature: TrainProtocol's fields, then one `knob` per function knob (its
    default filled in by the instance: a class serves every protocol of that signature)."""
    if lines not in _CLASSES:
        fields = [(name, hint, knob(None, choices=choices)) for name, hint, choices in table]
        kind = dataclasses.make_dataclass("FunctionKnobs", fields, bases=(TrainProtocol,), frozen=True)
        kind.__module__ = __name__
        _CLASSES[lines] = kind
    return _CLASSES[lines]


def knob_type(spec: str, name: str, hint, default) -> tuple[object, tuple]:
    """(the knob's type, its choices) from an annotation (or the default's type when there is none);
    one line naming the argument when it is not a knob type."""
    where = f"{FLAG} {spec}: {spec.partition(':')[2]}() argument {name}"
    allowed = "int, float, bool, str, Literal[...], tuple[T, ...] of those, or any of them | None"
    if hint is inspect.Parameter.empty:
        if default is None or default == ():
            raise FastseedError(f"{where} = {default!r}: annotate its type ({allowed})")
        if isinstance(default, tuple):
            kinds = {type(v) for v in default}
            if len(kinds) != 1 or next(iter(kinds)) not in BASIC.values():
                raise FastseedError(f"{where} = {default!r}: a tuple knob holds values of one type; annotate it")
            hint = tuple[next(iter(kinds)), ...]
        else:
            hint = type(default)
    inner, optional = optional_of(hint), False
    if inner is not None:
        hint, optional = inner, True
    choices = ()
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        kinds = {type(c) for c in choices}
        if kinds not in ({str}, {int}):
            raise FastseedError(f"{where}: Literal[...] of strings or of ints only, got {choices!r}")
        hint = kinds.pop()
    elif typing.get_origin(hint) is tuple:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not args or len(set(args)) != 1 or args[0] not in BASIC.values():
            raise FastseedError(f"{where}: {hint} is not a knob type ({allowed})")
        hint = tuple[args[0], ...]
    elif hint not in BASIC.values():
        shown = getattr(hint, "__name__", hint)
        hint_kind = "use a tuple (a knob never changes)" if typing.get_origin(hint) is list or hint is list else allowed
        raise FastseedError(f"{where}: {shown} is not a knob type ({hint_kind})")
    return (typing.Optional[hint] if optional else hint), choices


def canonical_default(default, hint):
    """A default as the knob holds it: an int default of a float knob as a float (one JSON, one hash)."""
    inner = optional_of(hint) or hint
    if inner is float and isinstance(default, int) and not isinstance(default, bool):
        return float(default)
    if typing.get_origin(inner) is tuple and isinstance(default, (tuple, list)):
        item = typing.get_args(inner)[0]
        return tuple(float(v) if item is float and isinstance(v, int) and not isinstance(v, bool) else v
                     for v in default)
    return default


def function_protocol(spec: str) -> TrainProtocol:
    """The recipe of the training function `spec` with every knob at its default: its module imported
    (fastseed.usercode.load, as it is on disk now) and hashed, its signature read. One line for any
    problem: a missing module, a function that does not take (seed, device, ...), a knob without a
    default or of another type, a knob named like one of fastseed's own."""
    from fastseed.usercode import load, source_digest
    function = load(spec, FLAG, ROLE)
    digest = source_digest(spec, FLAG, ROLE)
    short = spec.partition(":")[2]
    try:
        params = list(inspect.signature(function).parameters.values())
        hints = typing.get_type_hints(function)
    except (TypeError, ValueError, NameError) as e:
        raise FastseedError(f"{FLAG} {spec}: cannot read the signature of {short}(): {e}") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 or params[:2] != positional[:2]:
        raise FastseedError(f"{FLAG} {spec}: {short}() must take (seed, device, **knobs): fastseed calls "
                            f"{short}(seed, device, knob=value, …)")
    table, defaults = [], {}
    for p in params[2:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise FastseedError(f"{FLAG} {spec}: {short}() argument {p.name} has no default: every argument after "
                                f"(seed, device) is a knob, and a knob needs a default")
        if p.name in RESERVED:
            raise FastseedError(f"{FLAG} {spec}: {short}() argument {p.name} has the name of one of fastseed's own "
                                f"knobs ({', '.join(RESERVED)}): rename it")
        hint, choices = knob_type(spec, p.name, hints.get(p.name, p.empty), p.default)
        table.append((p.name, hint, choices))
        defaults[p.name] = canonical_default(p.default, hint)
    lines = tuple(f"{name}: {type_text(hint, choices)}" for name, hint, choices in table)
    kind = knob_class(lines, table)
    try:
        return kind(name=spec, source=f"the training function {spec}", train=spec, train_digest=digest,
                    signature=lines, **defaults)
    except FastseedError as e:  # a default its own type refuses (lr: float = "fast")
        raise FastseedError(f"{FLAG} {spec}: the default of {str(e).split(': ', 1)[-1]}") from None
