"""python -m fastseed.replay STORE --seed S — train seed S again, exactly as it was trained, and say
whether the new record equals the stored one.

The protocol comes from the store (its JSON, checked against its hash), the pack layout and the
dtype from the record: the same partners in the same slots with the same strategy. On the CPU the
replay is bit-identical; on a GPU it is with --deterministic protocols, and otherwise this reports
the differences — GPU non-determinism measured, not guessed. A training function's store (--train)
is replayed by calling the function again, imported from the current directory: a module file that
changed since the scan is refused in one line.

Exit codes: 0 identical, 1 different, 2 bad input.
"""

from __future__ import annotations

import json
import sys

from fastseed import FastseedError
from fastseed.cli import Parser, one_line_errors

EXIT_DIFFERENT = 1
COMPARED = ("status", "test_acc", "test_loss", "headline_epoch", "eval_curve", "train_curve", "predictions",
            "metrics")


def differences(stored, new) -> list[str]:
    """One line per field of the outcome that differs (wall time and timestamps are not outcome)."""
    out = []
    for name in COMPARED:
        a, b = getattr(stored, name), getattr(new, name)
        if name == "predictions":
            if a != b:
                n = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
                out.append(f"predictions: {n} of {max(len(a), len(b))} test images differ")
        elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):  # NaN equals NaN, in a curve too
            out.append(f"{name}: stored {a!r}, replayed {b!r}")
    return out



def run(argv) -> int:
    p = Parser(prog="python -m fastseed.replay", description=__doc__.split("\n")[0])
    p.add_argument("store", help="a results store written by fastseed.scan")
    p.add_argument("--seed", type=int, required=True, help="the seed to replay")
    p.add_argument("--data-dir", default=None, help="dataset root (default $FASTSEED_DATA or ./data)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the device type of the record)")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="ImageNet stores: the backbone weight file the scan used (its sha256 is checked)")
    p.add_argument("--loader-threads", type=int, default=4, metavar="N", help="ImageNet stores: DALI CPU threads")
    a = p.parse_args(argv)

    from fastseed.jobs import Options, make_job
    from fastseed.recipe.protocol import protocol_from_json
    from fastseed.store import Store
    from fastseed.workers.progress import shown

    with Store.open(a.store) as store:
        protocol = protocol_from_json(store.protocol_json)
        if protocol.hash != store.protocol_hash:
            raise FastseedError(f"{a.store}: its protocol JSON does not hash to its protocol hash "
                                f"(written by another fastseed version, or edited)")
        stored = store.record(a.seed)  # a malformed row: one line naming the seed
    if stored is None:
        raise FastseedError(f"seed {a.seed} is not in {a.store}")
    prov, pack = stored.provenance, stored.pack
    if prov.get("commit") and prov.get("dirty") is not None:
        from fastseed.engine.provenance import code_version
        now = code_version()
        if now.get("commit") != prov["commit"] or now.get("dirty") or prov["dirty"]:
            print(f"note: the record was made by commit {prov['commit'][:12]}{' (modified)' * bool(prov['dirty'])}"
                  f", this is {str(now.get('commit'))[:12]}{' (modified)' * bool(now.get('dirty'))}",
                  file=sys.stderr)
    # the record's pack layout: the same partners in the same slots with the same strategy (a
    # one-after-another pack's partners never touch the seed: it trains alone)
    strategy = pack.get("strategy", "sequential")
    options = Options(device=a.device or prov.get("device_type", "auto"), dtype=prov.get("dtype"),
                      strategy=strategy, data_dir=a.data_dir, weights=a.weights, loader_threads=a.loader_threads)
    job = make_job(protocol, options)  # an ImageNet job checks --weights against the protocol's digest
    seeds = pack.get("seeds", [a.seed]) if job.together else [a.seed]
    job.load()
    print(f"replaying seed {a.seed} of {protocol.name} on {job.device}: {strategy} pack of {len(seeds)} {seeds}",
          flush=True)
    records = []
    job.train(seeds, records.append, stop_flag=False)
    new = next(r for r in records if r.seed == a.seed)
    diffs = differences(stored, new)
    if not diffs:
        print(f"seed {a.seed}: identical ({shown(new)})")
        return 0
    print(f"seed {a.seed}: DIFFERENT in {len(diffs)} field(s)")
    for line in diffs:
        print(f"  {line}")
    return EXIT_DIFFERENT


def main(argv=None) -> int:
    return one_line_errors("fastseed.replay", run, argv)


if __name__ == "__main__":
    sys.exit(main())
