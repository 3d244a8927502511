"""python -m fastseed.merge OUT IN [IN ...] — merge stores of one protocol (one per machine or Slurm task) into OUT.

    python -m fastseed.merge results/all.sqlite node*/picard-short.sqlite

Every seed's record is copied once. A seed held by several stores with the same outcome (status,
accuracy, loss, headline epoch, curves, predictions, logits, pack layout) is an identical duplicate
and is kept once: wall time, timestamps and provenance (host, versions) may differ, as they do between
two machines. A seed with different outcomes trained under different layouts (store/record.py:
Record.layout -- its pack, dtype, and on a CPU its thread count and vector kernels, which change a
float32 result) is another sample of the same seed, printed as one line and not a conflict. A seed
with different outcomes under the same layout (or one an older record does not state) is a conflict,
printed as one line (seed, fields, the store kept and the one dropped). Either way the record already
in OUT, else that of the first IN holding the seed (in the order given), is kept, unless --prefer
names the store whose record wins.

OUT may exist (a store of the same protocol, scored on the same test labels: merged into) or not
(created). It is never left half-written: an existing OUT receives the new records in one transaction,
a new OUT is built beside its path and linked into place once complete, so a crash mid-merge leaves
OUT as it was. IN stores are only read, without a lock a scan writing to one would wait for; a scan
writing to OUT itself waits for the merge's transaction to commit (up to 30 s: merge into a store no
scan is writing to when the merge is large).

Exit codes: 0 merged (duplicates of another layout included); 1 merged, but with conflicts or
malformed rows skipped (each listed);
2 bad input (nothing written).
"""

from __future__ import annotations

import signal
import sqlite3
import sys
from pathlib import Path

import numpy as np

from fastseed import EXIT_INTERRUPTED, FastseedError
from fastseed.cli import Parser, one_line_errors
from fastseed.store import Store
from fastseed.store.file import build_store_file, new_meta, publish_store_file, remove_stale_temps, side_file, temp_beside

EXIT_CONFLICTS = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """SIGINT or SIGTERM: a merge stops at once. Its transaction rolls back (an existing OUT) or its
    temp file is removed (a new OUT): nothing half-written is left. Everything the merge imports is
    imported before the handler is installed, so it is never raised inside an import; it is raised
    once, so the rollback and the stop line are not interrupted in turn."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOPPING = []  # the signal that stopped the merge (or a sentinel once it ended): later ones are ignored


def _interrupt(signum, frame):
    if not STOPPING:
        STOPPING.append(signum)
        raise Interrupted(signum)


def parse(argv):
    p = Parser(prog="python -m fastseed.merge", description=__doc__.split("\n")[0])
    p.add_argument("out", metavar="OUT", help="the merged store (created if it does not exist)")
    p.add_argument("inputs", nargs="+", metavar="IN", help="stores to merge into OUT, read only")
    p.add_argument("--prefer", metavar="STORE", default=None,
                   help="on a conflict keep this store's record (OUT or one of the INs); default: the "
                        "record in OUT, else the first IN's")
    a = p.parse_args(argv)
    a.out, a.inputs = Path(a.out), [Path(s) for s in a.inputs]
    identities = [_identity(s) for s in a.inputs]
    if len(set(identities)) != len(identities):
        raise FastseedError("the same store is given twice as IN")
    if _identity(a.out) in identities:
        raise FastseedError(f"{a.out} is both OUT and an IN")
    if a.prefer is not None:
        stores = [a.out] + a.inputs
        match = [s for s in stores if _identity(s) == _identity(Path(a.prefer))]
        if not match:
            raise FastseedError(f"--prefer {a.prefer} is neither OUT nor one of the INs")
        a.prefer = match[0]
    return a


def _identity(path: Path):
    """One file however it is named (relative, absolute, through a link)."""
    try:
        st = path.stat()
        return st.st_dev, st.st_ino
    except OSError:
        return str(path.resolve())


def common_labels(stores) -> np.ndarray | None:
    """The test labels the stores were scored on; refuses stores scored on different ones."""
    labelled = [s for s in stores if s.test_labels is not None]
    for s in labelled[1:]:
        if not np.array_equal(s.test_labels, labelled[0].test_labels):
            raise FastseedError(f"{s.path} and {labelled[0].path} were scored against different test "
                                f"labels (different test sets): they cannot be merged")
    return labelled[0].test_labels if labelled else None


class Tally:
    """What a merge did, and the lines that say so."""

    def __init__(self):
        self.added = self.identical = self.relaid = self.conflicts = self.skipped = 0

    def summary(self, out: Path, stores: int, total: int) -> str:
        relaid = f"{self.relaid} duplicate(s) trained under another layout, " if self.relaid else ""
        return (f"{out}: {self.added} records added from {stores} store(s), {self.identical} identical "
                f"duplicate(s), {self.conflicts} conflict(s), {relaid}{self.skipped} malformed row(s) skipped; "
                f"{total} records in all")


def merge_into(target, out: Path, sources, prefer: Path | None, tally: Tally, log=print) -> None:
    """Every record of `sources` (read-only stores) into `target` (OUT, or the file it is built in),
    in one transaction."""
    holder: dict[int, Path] = {}  # the store whose record OUT holds, for seeds this merge has seen
    if prefer is not None:  # the preferred store first: later INs then lose their conflicts to it
        sources = sorted(sources, key=lambda s: s.path != prefer)
    with target.transaction(f"merging into {out}"):
        labels = common_labels([target] + sources)
        if labels is not None:
            target.set_test_labels(labels)
        for source in sources:
            for record in source.iter_records():
                try:
                    have = target.record(record.seed)
                    fields = [] if have is None else have.outcome_differences(record)
                    layouts = [] if have is None else have.layout_differences(record)
                except FastseedError as e:  # OUT's own row for the seed is malformed
                    have, fields, layouts = True, [f"OUT's row ({e})"], []
                if have is None:
                    target.add(record)
                    holder[record.seed] = source.path
                    tally.added += 1
                    continue
                if not fields:
                    tally.identical += 1
                    continue
                kept, dropped = holder.get(record.seed, out), source.path
                if source.path == prefer and kept != prefer:
                    target.add(record, replace=True)
                    holder[record.seed], kept, dropped = source.path, source.path, kept
                if layouts:  # another sample of the seed, not a disagreement
                    tally.relaid += 1
                    log(f"another layout: seed {record.seed}: {', '.join(layouts)}: {', '.join(fields)} differ; "
                        f"kept {kept}, dropped {dropped}")
                else:
                    tally.conflicts += 1
                    log(f"conflict: seed {record.seed}: {', '.join(fields)} differ; kept {kept}, "
                        f"dropped {dropped}")
            for seed, why in source.skipped_rows:
                tally.skipped += 1
                log(f"{source.path}: seed {seed}: malformed row skipped: {why}")


def open_sources(paths) -> list:
    """The IN stores, read-only, refused unless they hold one protocol scored on one test set."""
    sources = []
    try:
        for path in paths:
            sources.append(Store.open(path))
            first, last = sources[0], sources[-1]
            if last.protocol_hash != first.protocol_hash:
                raise FastseedError(f"{last.path} holds protocol {last.protocol} ({last.protocol_hash[:12]}), "
                                    f"{first.path} holds {first.protocol} ({first.protocol_hash[:12]}): "
                                    f"only stores of one protocol merge")
        common_labels(sources)
    except BaseException:
        for s in sources:
            s.close()
        raise
    return sources


def run(argv) -> int:
    a = parse(argv)
    sources = open_sources(a.inputs)
    first, tally = sources[0], Tally()
    identity = (first.protocol, first.protocol_hash, first.protocol_json)
    try:
        if a.out.exists():
            with Store.open(a.out) as existing:  # OUT's own refusal first: the message names OUT
                if existing.protocol_hash != first.protocol_hash:
                    raise FastseedError(
                        f"OUT {a.out} holds protocol {existing.protocol} ({existing.protocol_hash[:12]}), "
                        f"the INs {first.protocol} ({first.protocol_hash[:12]}): only stores of one "
                        f"protocol merge")
        Store.check(a.out, first.protocol, first.protocol_hash)  # read-only file or folder, ...
        remove_stale_temps(a.out)  # what a merge killed while building OUT left (kill -9: no handler ran)
        if a.out.exists():
            with Store(a.out, *identity) as target:
                merge_into(target, a.out, sources, a.prefer, tally)
                total = len(target)
        else:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_beside(a.out, "merge")
            try:
                build_store_file(tmp, new_meta(*identity))
                with Store(tmp, *identity) as target:
                    merge_into(target, a.out, sources, a.prefer, tally)
                    total = len(target)
                if not publish_store_file(tmp, a.out):
                    raise FastseedError(f"{a.out} was created by another process during the merge; "
                                        f"run the merge again to merge into it")
            except (OSError, sqlite3.Error) as e:
                raise FastseedError(f"cannot create {a.out}: {e}") from None
            finally:
                for path in (tmp, side_file(tmp, "-wal"), side_file(tmp, "-shm")):
                    path.unlink(missing_ok=True)
    finally:
        for s in sources:
            s.close()
    print(tally.summary(a.out, len(sources), total))
    return EXIT_CONFLICTS if tally.conflicts or tally.skipped else 0


def main(argv=None) -> int:
    """The command line (`argv` None: sys.argv; a signal while Python then exits is ignored)."""
    STOPPING.clear()
    previous = {s: signal.signal(s, _interrupt) for s in STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # (started with them blocked: taken now)
    try:
        return one_line_errors("fastseed.merge", run, argv)
    except Interrupted as e:
        print(f"fastseed.merge: {signal.Signals(e.signum).name}: stopped; OUT is as it was, or complete if the "
              f"merge had just ended: run the same merge again", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        STOPPING.append(None)
        if argv is not None:
            for s, handler in previous.items():
                signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
