"""Which sections of the report the records support, and why the others are left out.

A built-in recipe's store supports nearly every section; a training function's (`--train`) supports
what its results hold: a number alone gives the summary, the distribution, the black swans and the
comparisons; curves add the curve figures; predictions with labels (or right-or-wrong per example) add
the per-example sections; logits add calibration and soft votes. The report says which sections it
leaves out, and what would bring each back, instead of leaving a reader to wonder.
"""

from __future__ import annotations

import numpy as np

EXAMPLES = ("a training function returns predictions with labels, or correct, per test example")


def has_curve(values: np.ndarray, ok: np.ndarray) -> bool:
    return values.size > 0 and bool(np.isfinite(values[ok]).any())


def supported(groups) -> dict[str, str | None]:
    """section → None when at least one store supports it, else why none does."""
    finished = max(g.n_ok for g in groups)
    scorable = [g for g in groups if g.scorable and g.n_ok >= 2]
    why = {
        "accuracy_vs_epoch": None if any(has_curve(g.eval_acc, g.ok) for g in groups) else
        "the records hold no evaluation curve (a training function returns eval_curve)",
        "curves": None if any(has_curve(g.train_loss, g.ok) for g in groups) else
        "the records hold no training curve (a training function returns train_curve)",
        "testset": None if scorable else
        ("fewer than two finished runs" if finished < 2 else f"the records hold no per-example outcomes ({EXAMPLES})"),
        "black_swans": None if finished >= 2 else "fewer than two finished runs",
        "transfer": None if any(g.scorable and g.n_ok >= 3 for g in groups) else
        ("fewer than three finished runs" if finished < 3 else f"it needs per-example outcomes ({EXAMPLES})"),
        "ensembles": None if any(g.examples == "predictions" for g in scorable) else
        ("votes need each seed's predicted classes; the records hold right-or-wrong only"
         if scorable else f"votes need each seed's predicted classes ({EXAMPLES.split(', or')[0]})"),
        "calibration": None if any(g.logits is not None and g.examples == "predictions" for g in scorable) else
        "it needs each seed's logits (scan with --keep logits; a training function returns logits or probabilities)",
        "compare": None if len(groups) > 1 else "one store: nothing to compare it with",
    }
    return why


TITLES = {"accuracy_vs_epoch": "the metric per epoch (figure)", "curves": "the training curves (figure)",
          "testset": "Test-set noise vs training variance, Which images depend on the seed",
          "black_swans": "Black swans", "transfer": "Lucky seeds do not transfer", "ensembles": "Seed ensembles",
          "calibration": "Calibration", "compare": "Comparing recipes"}


def coverage_section(doc, groups) -> dict:
    """One paragraph naming each section left out and why; returns section → why (None: shown)."""
    why = supported(groups)
    gone = [f"{TITLES[k]} ({reason})" for k, reason in why.items() if reason is not None and k in TITLES]
    if gone:
        doc.text("Left out, as the records do not support them: " + "; ".join(gone) + ".")
    return why
