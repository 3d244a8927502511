"""fastseed: a speedrun engine for seed-variance studies.

The layers, top to bottom: a module uses the layers below its own and its own package, never a layer
above nor another package of its layer (function-level imports included; tests/test_layering.py
holds this, from the same table, LAYERS):

    command lines    scan, replay, merge, report/__main__, cli (their shared parser), study (the Python API)
    report, workers  the report's sections; where packs train (this process, a pool, Ray), stopping rules
    jobs             what a worker trains, built from a protocol and plain options
    recipe, engine, stats
    store, models, data
    kernels, seeds, store.record, fastseed itself (the errors, the exit codes, usercode: a user's module:attribute)
"""

__version__ = "0.1.0"

LAYERS = (
    ("fastseed.scan", "fastseed.replay", "fastseed.merge", "fastseed.report.__main__", "fastseed.cli",
     "fastseed.study"),
    ("fastseed.report", "fastseed.workers"),
    ("fastseed.jobs",),
    ("fastseed.recipe", "fastseed.engine", "fastseed.stats"),
    ("fastseed.store", "fastseed.models", "fastseed.data"),
    ("fastseed.kernels", "fastseed.seeds", "fastseed.store.record", "fastseed"),
)

# Exit codes of every command line
EXIT_FAILED = 1        # scan: workers failed before the range was stored
EXIT_USAGE = 2         # bad input: one line on stderr
EXIT_INTERRUPTED = 130  # stopped by a signal; rerun the same command to resume


class FastseedError(Exception):
    """A problem with the user's input or environment: reported as one line, exit code 2."""


class UserCodeError(Exception):
    """The user's own training function (`--train`) raised. The scan stops, shows the user's traceback
    (their frames, not fastseed's: `traceback_text`) and keeps every seed committed before; exit code 1
    (EXIT_FAILED). Not a FastseedError: the fault is in code fastseed runs, not in its input."""

    def __init__(self, message: str, traceback_text: str = ""):
        super().__init__(message, traceback_text)  # both in args: it crosses processes (Ray) pickled
        self.message, self.traceback_text = message, traceback_text

    def __str__(self) -> str:
        return self.message
