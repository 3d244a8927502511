"""What the command lines (scan, report, replay, merge) share: one parser class and one way to fail.

Every refusal is a FastseedError: the command prints it as one line on stderr and exits 2. Long
options must be spelled out (`allow_abbrev=False`): argparse would otherwise read `scan --seed 3407`
(replay's spelling) as `--seeds 3407` and train 3,407 seeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from fastseed import EXIT_USAGE, FastseedError


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line and exit 2, instead of argparse's usage block
        raise FastseedError(message)


def one_line_errors(command: str, run: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """`run(argv)`, with a refusal printed as `<command>: error: ...` on stderr and exit code 2."""
    try:
        return run(argv)
    except FastseedError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
