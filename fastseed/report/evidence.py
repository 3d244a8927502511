"""The report's sections that read every test image's outcome (issue #14): how much of the
seed-to-seed spread is only the finite test set, which images depend on the seed, and — when the
store kept logits — each seed's calibration. Like report.py's sections, each is a function of the
document and the Runs; the statistics are in fastseed.stats (examples, testset, calibration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fastseed import FastseedError
from fastseed.report.document import Document, formatted, num
from fastseed.stats.examples import ExampleCounts
from fastseed.stats.testset import TestSetNoise

CALIBRATION_RUNS = 1000  # seeds whose logits are read for calibration: a random sample beyond this


@dataclass(frozen=True)
class Evidence:
    """What one store's per-image outcomes say."""
    counts: ExampleCounts
    noise: TestSetNoise


def gather(groups, n_boot: int, rng_of) -> dict:
    """label → Evidence for every store with scorable predictions and two finished runs; one pass
    over each store's predictions, which also counts each run's right answers on the two halves of
    stats.transfer. `rng_of(i)` is the bootstrap generator of the i-th store."""
    from fastseed.stats.examples import count_examples
    from fastseed.stats.testset import split_variance
    from fastseed.stats.transfer import split_halves
    found = {}
    for i, g in enumerate(groups):
        if g.scorable and g.n_ok >= 2:  # the transfer section's halves are counted in the same pass
            counts = count_examples(g.predictions, g.labels, g.ok_rows, groups=split_halves(g.labels))
            found[g.label] = Evidence(counts, split_variance(counts, n_boot, rng_of(i)))
    return found


def headline(doc: Document, evidence: dict) -> None:
    """One sentence per store: how much of the spread between seeds is the finite test set, the spread on
    an unlimited test set (the distribution), and what a fresh test set of the same size would show."""
    for label, e in evidence.items():
        t = e.noise
        if not np.isfinite(t.distribution) or t.observed <= 0:
            continue
        spread = f"{label}: the ±{num(t.observed_std)} pp spread of test accuracy between seeds"
        fresh = (f"; a fresh test set of the same {t.images:,} images would show about the same ±"
                 f"{num(t.observed_std)} pp, its own noise added back")
        if t.distribution > 0:
            ci = (f" (95 % CI {num(t.std_low, 3)}–{num(t.std_high, 3)}, over seeds, for this test set's images)"
                  if np.isfinite(t.std_high) else "")
            doc.headline(f"{label}: of the ±{num(t.observed_std)} pp spread of test accuracy between seeds, "
                         f"about {num(100 * t.noise_share, 0)} % (of the variance) is test-set noise: on an "
                         f"unlimited test set from the same distribution the seeds would differ by "
                         f"±{num(t.distribution_std, 3)} pp{ci}{fresh}.")
        elif np.isfinite(t.std_high):
            doc.headline(f"{spread} is all test-set noise as far as {t.runs:,} seeds can tell: on an unlimited "
                         f"test set they would differ by less than ±{num(t.std_high, 3)} pp (95 % upper bound, "
                         f"over seeds, for this test set's images){fresh}.")
        else:
            doc.headline(f"{spread} is all test-set noise as far as {t.runs:,} seeds can tell{fresh}.")


def testset_section(doc: Document, evidence: dict) -> None:
    if not evidence:
        return
    doc.heading("Test-set noise vs training variance")
    d = pd.DataFrame([{"label": label, "runs": t.runs, "images": t.images, "std": t.observed_std,
                       "observed": t.observed, "noise": t.noise, "noise_share": t.noise_share,
                       "distribution": t.distribution, "low": t.low, "high": t.high,
                       "distribution_std": t.distribution_std, "std_low": t.std_low, "std_high": t.std_high}
                      for label, t in ((k, e.noise) for k, e in evidence.items())])
    shown = formatted(d, 4, std=2, noise_share=lambda v: f"{num(100 * v, 0)} %", distribution_std=3)
    shown = shown.assign(low=[f"[{a}, {b}]" for a, b in zip(shown["low"], shown["high"])],
                         std_low=[f"[{num(a, 3)}, {num(b, 3)}]" for a, b in zip(d["std_low"], d["std_high"])])
    shown = shown.drop(columns=["high", "std_high"]).rename(columns={
        "std": "std (pp)", "observed": "observed var", "noise": "test-set var", "noise_share": "test-set share",
        "distribution": "distribution var", "low": "95 % CI", "distribution_std": "distribution std (pp)",
        "std_low": "95 % CI (pp)"})
    doc.table("testset", d, shown, "Variance of test accuracy across seeds (pp²): observed; what "
              "sampling the test set alone gives, (1/n²) Σ p_i(1 − p_i) with p_i the share of seeds "
              "right on image i; and the variance on the test distribution, Jordan 2024 Eq. 3 "
              "(unbiased, may be negative), with a bootstrap 95 % CI over seeds")
    doc.text("A run's test accuracy averages n right-or-wrong events, one per image. If which images a "
             "seed gets right were a matter of chance image by image, the spread between seeds would be "
             "the test-set variance alone, and every seed would be equally good on new data. What "
             "exceeds it is how much seeds really differ on the distribution the test set was drawn from "
             "(K. Jordan, On the Variance of Neural Network Training with respect to Test Sets and "
             "Distributions, ICLR 2024, Theorem 2): the spread the seeds would show on an unlimited test "
             "set. Any finite test set adds its own noise back: a fresh one of the same size would show "
             "about the observed spread again (its expected variance, the test-set part plus (n − 1)/n of "
             "the distribution's, is estimated by exactly the observed variance). The interval resamples "
             "seeds; it takes this test set's images as given, not which images were drawn.")


def cifar_test_images(g, data_dir) -> tuple:
    """(images (M × 32 × 32 × 3) uint8 or None, class names or None, why there are no images)."""
    if g.dataset != "cifar10":
        return None, None, "images are drawn for CIFAR-10 stores only"
    from fastseed.data.cifar import CLASSES, load_cifar10
    try:
        data = load_cifar10(data_dir)
    except FastseedError as e:  # its first clause: the rest is the scan's advice (URL, --download)
        return None, CLASSES, f"images not drawn: {str(e).split(':')[0]} (give CIFAR-10's folder with --data-dir)"
    n = len(g.labels)
    if n > len(data.test_y) or not np.array_equal(data.test_y[:n], g.labels):
        return None, CLASSES, "images not drawn: the store's test labels are not CIFAR-10's test set"
    return data.test_x[:n].transpose(0, 2, 3, 1), CLASSES, ""


def images_section(doc: Document, groups, evidence: dict, data_dir) -> None:
    from fastseed.report import figures
    from fastseed.stats.examples import image_table, kinds, most_seed_dependent
    if not evidence:
        return
    doc.heading("Which images depend on the seed")
    by_label = {g.label: g for g in groups}
    d = pd.concat([kinds(e.counts.fraction_right).assign(label=label) for label, e in evidence.items()])
    d = d[["label", "kind", "seeds_right", "images", "share"]]
    doc.table("images_kinds", d, formatted(d, share=lambda v: f"{num(100 * v, 1)} %"),
              "Test images by the share of seeds that classify them right")
    doc.figure("images_right", figures.images_right(
        [(label, e.counts.fraction_right, e.counts.runs) for label, e in evidence.items()]),
        "Per test image, the fraction of seeds that classify it right (log scale); bars at 0 and 1: "
        "images no seed / every seed gets right")
    tables = [image_table(e.counts).assign(store=label) for label, e in evidence.items()]
    frame = pd.concat(tables)
    frame = frame[(["store"] if len(evidence) > 1 else []) + [c for c in tables[0].columns if c != "store"]]
    doc.csv("images", frame)
    label, e = next(iter(evidence.items()))
    g = by_label[label]
    fraction = e.counts.fraction_right
    top = most_seed_dependent(fraction)
    images, names, why = cifar_test_images(g, data_dir)
    name = lambda c: names[c] if names is not None and 0 <= c < len(names) else str(c)
    classes = g.examples == "predictions"  # else right-or-wrong only: no label, no wrong class to name
    t = pd.DataFrame({"image": top, "label": [name(int(c)) if classes else "—" for c in g.labels[top]],
                      "fraction_right": fraction[top],
                      "most_common_wrong": [name(int(c)) if c >= 0 and classes else "—"
                                            for c in e.counts.wrong_class[top]]})
    doc.table("seed_dependent", t, formatted(t, fraction_right=lambda v: f"{num(100 * v, 1)} %"),
              f"{label}: the {len(top)} test images the seed decides most (right under the share of "
              f"seeds nearest one half), with their most common wrong class")
    if images is not None:
        doc.figure("seed_dependent", figures.seed_dependent(
            images[top], g.labels[top], fraction[top], e.counts.wrong_class[top], names,
            f"{label}: the {len(top)} most seed-dependent test images (label, share of seeds right, "
            f"most common wrong class; n = {e.counts.runs:,} runs)"),
            f"{label}: the {len(top)} test images the seed decides most")
    else:
        doc.text(f"{label}: {why}.")
    doc.text("Every test image's share of seeds right and most common wrong class is in images.csv.")


def calibration_section(doc: Document, groups, rng) -> dict:
    """label → Calibration of the stores that kept logits (a sample of CALIBRATION_RUNS seeds at
    most); no section when none did."""
    from fastseed.report import figures
    from fastseed.stats.calibration import BINS, calibrate
    found, sampled = {}, {}
    for g in groups:
        if g.logits is None or not g.scorable or g.n_ok == 0:
            continue
        rows = g.ok_rows
        if len(rows) > CALIBRATION_RUNS:
            rows = np.sort(rng.choice(rows, CALIBRATION_RUNS, replace=False))
            sampled[g.label] = g.n_ok
        classes = int(g.labels.max()) + 1  # logits of fewer classes (a top-k) are no softmax to calibrate
        cal = calibrate(((i, z) for i, z in g.logits(rows) if z.shape[1] >= classes), g.labels)
        if len(cal.rows):
            found[g.label] = cal
    if not found:
        return found
    doc.heading("Calibration (from stored logits)")
    d = pd.DataFrame([{"label": label, "runs": len(c.ece), "mean": 100 * c.ece.mean(),
                       "std": 100 * c.ece.std(ddof=1) if len(c.ece) > 1 else np.nan,
                       "median": 100 * np.median(c.ece), "min": 100 * c.ece.min(), "max": 100 * c.ece.max()}
                      for label, c in found.items()])
    doc.table("calibration", d, formatted(d), f"Expected calibration error of each seed (%), {BINS} "
              f"equal-width confidence bins (Guo et al. 2017, Eq. 3; Naeini et al. 2015)")
    doc.figure("calibration", figures.calibration(list(found.items())), "Reliability of each seed's "
               "softmax: accuracy against confidence per bin (median seed, 5–95 % band), and the "
               "distribution of the seeds' ECE")
    for label, n in sampled.items():
        doc.text(f"{label}: calibration is measured on {CALIBRATION_RUNS:,} seeds drawn at random of "
                 f"{n:,} (each seed's logits are read from disk).")
    return found
