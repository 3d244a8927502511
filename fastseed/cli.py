"""What the command lines (scan, report, replay, merge) share: one parser class, its typed arguments,
and one way to fail.

Every refusal is a FastseedError: the command prints it as one line on stderr and exits 2. Long
options must be spelled out (`allow_abbrev=False`): argparse would otherwise read `scan --seed 3407`
(replay's spelling) as `--seeds 3407` and train 3,407 seeds. A typed argument (`positive_int`, …)
refuses its value in argparse, before anything runs: `--seeds must be a positive number, got 0`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from fastseed import EXIT_USAGE, FastseedError


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line and exit 2, instead of argparse's usage block
        # a typed argument's refusal reads as a sentence about the flag: "--seeds must be …"
        raise FastseedError(re.sub(r"^argument (--[\w-]+)(?:/\S+)?: (?=must )", r"\1 ", message))


def _number(kind: type, text: str, ok: Callable, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v > 0, "a positive number")


def nonnegative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, ">= 0")


def positive_minutes(text: str) -> float:
    return _number(float, text, lambda v: v > 0 and v != float("inf"), "a positive number of minutes")


def pack_or_auto(text: str) -> int | str:
    """`auto`, or a positive number of seeds."""
    return "auto" if text == "auto" else _number(int, text, lambda v: v > 0, "a positive number or auto")


def name_list(text: str) -> tuple[str, ...]:
    """`a,b` → ('a', 'b'): sorted, each once, blanks dropped."""
    return tuple(sorted({s.strip() for s in text.split(",") if s.strip()}))


def one_line_errors(command: str, run: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """`run(argv)`, with a refusal printed as `<command>: error: ...` on stderr and exit code 2."""
    try:
        return run(argv)
    except FastseedError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
