"""python -m fastseed.report — the variance study of one or more stores as tables, figures and answers.

    python -m fastseed.report results/picard-short.sqlite           # → results/picard-short-report/
    python -m fastseed.report a.sqlite b.sqlite --label base tuned --out reports/ab
    python -m fastseed.report e1.sqlite e2.sqlite e3.sqlite --label exp1 exp2 exp3

Writes DIR/report.html (self-contained: figures embedded), DIR/report.md, each figure as PNG and each
table as CSV. Accuracies are in percent; diverged seeds are counted and listed, and left out of every
accuracy statistic; malformed rows are skipped and listed. Statistics live in fastseed.stats, figures
in fastseed.report.figures, the page in fastseed.report.document, the sections that read every test image's outcome
(test-set noise, seed-dependent images, calibration) in fastseed.report.evidence.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastseed import FastseedError
from fastseed.cli import Parser, one_line_errors
from fastseed.report.sections import build, open_runs


def parse(argv) -> argparse.Namespace:
    from fastseed.stats.summary import BOOT
    p = Parser(prog="python -m fastseed.report", description=__doc__.split("\n")[0])
    p.add_argument("stores", nargs="+", metavar="STORE", help="results store(s) written by fastseed.scan")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: beside the first store, <store>-report)")
    p.add_argument("--label", nargs="+", default=None, metavar="NAME",
                   help="one name per store (required when the stores hold different protocols)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="best and worst K seeds (default 5)")
    p.add_argument("--boot", type=int, default=BOOT, metavar="B",
                   help=f"bootstrap resamples (default {BOOT})")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="CIFAR-10 root, to draw the most seed-dependent test images "
                        "(default $FASTSEED_DATA or ./data)")
    a = p.parse_args(argv)
    if a.top < 1:
        raise FastseedError(f"--top must be a positive number, got {a.top}")
    if a.boot < 100:
        raise FastseedError(f"--boot must be at least 100, got {a.boot}")
    if a.label is not None and len(a.label) != len(a.stores):
        raise FastseedError(f"--label names {len(a.label)} store(s) but {len(a.stores)} were given")
    if a.label is not None and len(set(a.label)) != len(a.label):
        raise FastseedError(f"--label names must differ, got {' '.join(a.label)}")
    if len({Path(s).resolve() for s in a.stores}) != len(a.stores):
        raise FastseedError("the same store is given twice")
    return a



def run(argv=None) -> int:
    a = parse(argv)
    groups = open_runs(a.stores, a.label)
    out = Path(a.out) if a.out else Path(a.stores[0]).with_name(Path(a.stores[0]).stem + "-report")
    if out.exists() and not out.is_dir():
        raise FastseedError(f"--out {out} is a file, not a folder")
    doc = build(groups, top=a.top, n_boot=a.boot, data_dir=a.data_dir)
    doc.write(out)
    n = sum(len(g) for g in groups)
    print(f"report of {n:,} runs ({', '.join(g.label for g in groups)}) → {out / 'report.html'} "
          f"({sum(f.endswith('.png') for f in doc.files)} figures, "
          f"{sum(f.endswith('.csv') for f in doc.files)} tables)")
    return 0


def main(argv=None) -> int:
    return one_line_errors("fastseed.report", run, argv)


if __name__ == "__main__":
    sys.exit(main())
