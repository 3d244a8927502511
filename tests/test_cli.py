"""The command lines share one parser: a misspelt or abbreviated option is refused in one line."""

import pytest

from fastseed import FastseedError
from fastseed.cli import Parser


def test_abbreviated_option_is_refused_not_guessed():
    p = Parser(prog="x")
    p.add_argument("--seeds", type=int)
    with pytest.raises(FastseedError, match="unrecognized arguments: --seed"):
        p.parse_args(["--seed", "3407"])
    assert p.parse_args(["--seeds", "3"]).seeds == 3


def test_scan_refuses_replay_spelling_of_seed(capsys):
    from fastseed.scan import main
    assert main(["--seed", "3407", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seed" in err[0]
