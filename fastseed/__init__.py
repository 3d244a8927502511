"""fastseed: a speedrun engine for seed-variance studies on one GPU."""

__version__ = "0.1.0"


class FastseedError(Exception):
    """A problem with the user's input or environment: reported as one line, exit code 2."""
