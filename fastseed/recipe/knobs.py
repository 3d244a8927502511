"""What every recipe kind shares: knobs, their one-line validation, canonical JSON, hash, variants.

A recipe is a frozen dataclass whose every field is a `knob(...)`: its type (the annotation), what values
are allowed, and since when it exists. That one table drives validation (one line naming the knob and
what it allows), the parsing of `--set KEY=VALUE` and protocol files (fastseed.recipe.overrides) and the JSON
round trip. The hash (sha256 of the canonical JSON) keys the results store, so two runs are comparable
exactly when their recipes are equal.

Knobs added after v1 carry `since=2` and are left out of the JSON -- hence of the hash -- while they hold
their default, so every recipe that does not use them keeps the hash (and the results store) it had
before they existed (tests/recipe/test_protocol_hashes.py pins the hashes). The kinds: fastseed.recipe.protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from fastseed import FastseedError
from fastseed.seeds import Seed


# --- knobs ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A condition on one knob's value, and how to say it to a user ("> 0")."""
    text: str
    holds: typing.Callable[[object], bool]


POSITIVE = Rule("> 0", lambda v: v > 0)
NON_NEGATIVE = Rule(">= 0", lambda v: v >= 0)
AT_LEAST_ONE = Rule(">= 1", lambda v: v >= 1)
FRACTION = Rule("in [0, 1]", lambda v: 0 <= v <= 1)
BELOW_ONE = Rule("in [0, 1)", lambda v: 0 <= v < 1)
A_NAME = Rule("a non-empty name on one line", lambda v: bool(v.strip()) and "\n" not in v)


REQUIRED = dataclasses.MISSING  # a knob without a default: every instance names it


def knob(default, *, since: int = 1, choices: tuple = (), rule: Rule | None = None, settable: bool = True):
    """A dataclass field with what the override parser and the validation need to know about it.
    `settable=False`: filled in by fastseed itself (a name, a file's digest), never by `--set`."""
    meta = {"since": since, "choices": tuple(choices), "rule": rule, "settable": settable}
    return dataclasses.field(default=default, metadata=meta)


def optional_of(hint):
    """T for `T | None`, else None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)) and len(args) == 1:
            return args[0]
    return None


def describe_type(hint) -> str:
    inner = optional_of(hint)
    if inner is not None:
        return f"{describe_type(inner)} or none"
    if typing.get_origin(hint) is tuple:
        return f"a comma-separated list of {describe_type(typing.get_args(hint)[0])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def type_ok(value, hint) -> bool:
    """Whether `value` has the knob's type (an int is a fine float; a bool is never a number)."""
    inner = optional_of(hint)
    if inner is not None:
        return value is None or type_ok(value, inner)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(type_ok(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(type_ok(v, typing.get_args(hint)[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def show(value) -> str:
    """A knob's value as a user writes it after `--set KEY=`."""
    if isinstance(value, tuple):
        return ",".join(show(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


_HINTS: dict[type, dict] = {}


class Knobs:
    """A frozen dataclass whose every field is a `knob`: its table (types, choices, rules) and the
    one-line check of a value. Recipes (below) and an ImageNet fine-tune's phases stand on it."""

    @classmethod
    def hints(cls) -> dict:
        if cls not in _HINTS:  # evaluating the annotations is slow: once per class
            _HINTS[cls] = typing.get_type_hints(cls)
        return _HINTS[cls]

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    def check_knob(self, name: str, value) -> str | None:
        """Why `value` is not allowed for knob `name` (one phrase naming the knob), or None."""
        f, hint = self.fields()[name], self.hints()[name]
        if not type_ok(value, hint):
            return f"{name} must be {describe_type(hint)}, got {value!r}"
        choices, rule = f.metadata.get("choices"), f.metadata.get("rule")
        if choices and value not in choices:
            return f"{name} must be one of {', '.join(map(str, choices))}, got {show(value)}"
        if rule is not None and value is not None and not rule.holds(value):
            return f"{name} must be {rule.text}, got {show(value)}"
        return None

    def knob_problem(self) -> str | None:
        """The first knob whose value is not allowed alone, as one phrase, or None."""
        for name in self.fields():
            problem = self.check_knob(name, getattr(self, name))
            if problem:
                return problem
        return None


class Recipe(Knobs):
    """The base of every recipe kind: canonical JSON, hash, JSON round trip, variants, seeds, knobs and
    their validation. Subclasses are frozen dataclasses whose fields are all `knob`s, with two class
    attributes: KIND (what it trains, for messages) and STREAMS (the seed streams its training draws
    from, sorted)."""
    KIND = "a recipe"
    STREAMS: tuple[str, ...] = ()

    def validate(self) -> None:
        """Every knob alone, then the rules between knobs (`relations`); the first problem is raised."""
        problem = self.knob_problem() or next(iter(self.relations()), None)
        if problem:
            raise FastseedError(f"protocol {self.name!r}: {problem}")

    def fixed_problem(self) -> str | None:
        """`fixed` must name streams this kind draws from, sorted, once each."""
        if list(self.fixed) != sorted(set(self.fixed)) or not set(self.fixed) <= set(self.STREAMS):
            return f"fixed must be streams among {', '.join(self.STREAMS)} (sorted, once each), got {show(self.fixed)}"
        return None

    def relations(self):
        """Yield a phrase for every rule between knobs that this recipe breaks."""
        return iter(())

    def unread(self) -> dict:
        """knob → why nothing reads it under the other knobs' values (`--set` of it is refused: it would
        make another store for the same training): `fix_seed` without fixed streams; a kind adds its own."""
        return {} if self.fixed else {"fix_seed": "it is read only with fixed streams (fixed, --fix)"}

    # --- identity ---------------------------------------------------------------------------------------
    def to_json(self) -> str:
        """Canonical JSON. Knobs added after v1 appear only when they differ from their default, so a
        recipe's hash is the same before and after a knob is added (tests/recipe/test_protocol_hashes.py)."""
        fields = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("since", 1) > 1 and fields[f.name] == f.default:
                del fields[f.name]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def default_store(self) -> Path:
        """results/<name>.sqlite, where a scan stores this recipe without --out: a variant never lands in
        its preset's store. The characters a file name should not hold become '_'; a long name is cut and
        told apart by its hash."""
        name = re.sub(r"[^A-Za-z0-9._,=+-]", "_", self.name)
        if len(name) > 120:
            name = f"{name[:100]}-{self.hash[:12]}"
        return Path("results") / f"{name}.sqlite"

    @classmethod
    def from_json(cls, text: str):
        """The recipe a canonical JSON describes (lists back to tuples, nested phases rebuilt)."""
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as e:
            raise FastseedError(f"protocol JSON is not valid JSON: {e}") from None
        unknown = sorted(set(fields) - set(cls.fields()))
        if unknown:
            raise FastseedError(f"protocol JSON has unknown knob(s) {', '.join(unknown)} "
                                f"(written by a newer fastseed?)")
        hints = cls.hints()
        return cls(**{k: from_plain(v, hints[k]) for k, v in fields.items()})

    def variant(self, **changes):
        """The same recipe with some knobs changed, under a name that says so: `smoke[augment=image]`.
        (The name is part of the hash: this naming is frozen, since stores were written under it.)"""
        changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changes:
            return self
        tag = ",".join(f"{k}={'+'.join(v) if isinstance(v, tuple) else v}" for k, v in sorted(changes.items()))
        return dataclasses.replace(self, name=f"{self.name}[{tag}]", **changes)

    def seed(self, value: int) -> Seed:
        """Run `value`'s random streams under this recipe's fixed-stream settings."""
        return Seed(value, fixed=frozenset(self.fixed), fix_seed=self.fix_seed)


def from_plain(value, hint):
    """A JSON value (lists, dicts) as the knob's Python value (tuples, nested dataclasses)."""
    inner = optional_of(hint)
    if inner is not None:
        return None if value is None else from_plain(value, inner)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        item = typing.get_args(hint)[0]
        return tuple(from_plain(v, item) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return hint(**value)
    return value
