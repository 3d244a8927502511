"""fastseed: a speedrun engine for seed-variance studies.

The layers, top to bottom: a module uses the layers below its own and its own package, never a layer
above nor another package of its layer (function-level imports included; tests/test_layering.py
holds this, from the same table, LAYERS):

    command lines    scan, replay, merge, report/__main__, cli (their shared parser)
    report, workers  the report's sections; where packs train (this process, a pool, Ray), stopping rules
    jobs             what a worker trains, built from a protocol and plain options
    recipe, engine, stats
    store, models, data
    kernels, seeds, store.record, fastseed itself (FastseedError, the exit codes)
"""

__version__ = "0.1.0"

LAYERS = (
    ("fastseed.scan", "fastseed.replay", "fastseed.merge", "fastseed.report.__main__", "fastseed.cli"),
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
