"""The report's sections, one per question of the study, and `build`, which runs them in order into
one Document. Statistics live in fastseed.stats; figures in figures.py; the page in document.py; the
sections that read every test image's outcome (test-set noise, seed-dependent images, calibration) in
evidence.py. The command line is __main__.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from fastseed import FastseedError
from fastseed.report.document import Document, formatted, listing, num, p_value, signed
from fastseed.store.record import ACCURACY, Metric

SECTION_SEEDS = {"summary": 11, "compare": 12, "factors": 13, "ensembles": 14,  # independent rngs
                 "testset": 15, "calibration": 16, "soft": 17, "estimators": 18}
PUBLISHED = {  # what the paper reports for a preset (PROTOCOLS.md), shown beside the measurement
    "picard-short": "Picard 2021 reports 90.02 ± 0.23 %, min 89.01, max 90.83 over 10,000 seeds.",
    "picard-long": "Picard 2021 reports 90.70 ± 0.20 %, min 90.14, max 91.41 over 500 seeds.",
}
NOTES = {  # protocol name prefix → what a reader comparing with the original must know
    "resnet18-exp3": "the original exp 3 creates its Adam optimizer once, before the loop over runs, so "
                     "every run after the first starts from the previous run's Adam moments and step "
                     "count: its runs form a chain, not independent samples. fastseed starts every run "
                     "with a fresh Adam (PROTOCOLS.md §3), so these runs are independent and their "
                     "spread is not the original's.",
}


def open_runs(paths, labels=None) -> list:
    """One Runs per store, labelled; refuses missing, empty or unlabelled mixed stores."""
    from fastseed.stats.runs import load_runs
    from fastseed.store import Store
    stores = []
    try:
        for path in paths:
            stores.append(Store.open(path))
        if labels is None:
            hashes = {s.protocol_hash for s in stores}
            if len(hashes) > 1:
                names = ", ".join(f"{s.path} ({s.protocol} {s.protocol_hash[:12]})" for s in stores)
                raise FastseedError(f"the stores hold different protocols: {names}; "
                                    f"name each with --label")
            labels = [stores[0].protocol] if len(stores) == 1 else [Path(p).stem for p in paths]
            if len(set(labels)) != len(labels):
                raise FastseedError("stores with the same file name: name each with --label")
        return [load_runs(s, label) for s, label in zip(stores, labels)]
    finally:
        for s in stores:
            s.close()


# ---- the headline metric: test accuracy (%), or what a training function measures --------------------

def metric_of(groups) -> Metric:
    """The headline metric of the report: the first store's (the summary says when stores differ)."""
    return groups[0].metric


def oriented(frame: pd.DataFrame, metric: Metric, columns) -> pd.DataFrame:
    """A table computed on the negated values of a lower-is-better metric (so that "best" is the lowest),
    with its value `columns` turned back into the metric's own values."""
    if not metric.higher_is_better:
        frame = frame.assign(**{c: -frame[c] for c in columns})
    return frame


def signed_values(g) -> np.ndarray:
    """The finished runs' headline, signed so that higher is better (negated for a loss)."""
    return g.ok_acc if g.metric.higher_is_better else -g.ok_acc


# ---- the sections: one per question of the study -------------------------------------------------

def rng_for(section: str, i: int = 0) -> np.random.Generator:
    return np.random.default_rng([SECTION_SEEDS[section], i])


def summary_section(doc: Document, groups, n_boot: int) -> None:
    from fastseed.stats.summary import T_UP_TO, summarize
    doc.heading("Summary")
    rows = []
    for i, g in enumerate(groups):
        s = summarize(g.ok_acc, n_boot, rng_for("summary", i))
        epochs = np.unique(g.headline_epoch[g.ok] if g.n_ok else g.headline_epoch)
        rows.append({"label": g.label, "protocol": g.protocol, "n": s.n, "diverged": len(g) - g.n_ok,
                     **{k: getattr(s, k) for k in ("mean", "std", "min", "max", "median", "q05", "q95",
                                                   "ci_low", "ci_high", "ci_method")},
                     "headline_epoch": " ".join(map(str, epochs))})
    d = pd.DataFrame(rows)
    shown = formatted(d).assign(mean=[f"{num(m)} ± {num(s)}" for m, s in zip(d["mean"], d["std"])],
                                ci_low=[f"[{num(a)}, {num(b)}]" for a, b in zip(d["ci_low"], d["ci_high"])])
    shown = shown.drop(columns=["std", "ci_high"]).rename(columns={
        "mean": "mean ± std", "q05": "5 %", "q95": "95 %", "ci_low": "95 % CI of mean", "ci_method": "CI by"})
    m = metric_of(groups)
    doc.table("summary", d, shown, f"Final {m.label} over seeds{'' if m == ACCURACY else f' ({m.direction})'}: n "
              f"finished runs, sample std, 5/95 % quantiles, 95 % CI of the mean (Student's t up to {T_UP_TO} runs, "
              f"where the percentile bootstrap under-covers; percentile bootstrap above), 0-based headline epoch")
    if m != ACCURACY:
        bounds = f", bounded by [{m.bounds[0]:g}, {m.bounds[1]:g}]" if m.bounds else ", unbounded"
        doc.text(f"The headline is {m.name}{f' in {m.unit}' if m.unit else ''}, {m.direction}{bounds}, as the "
                 f"training function returned it.")
    for g in groups:
        if g.metric != m or g.metrics_mixed:
            doc.text(f"{g.label}: its records name {'another metric' if g.metric != m else 'more than one metric'} "
                     f"({g.metric.label}): their numbers are not comparable with {m.label}.")
        if g.n_ok < len(g):
            doc.text(f"{g.label}: {len(g) - g.n_ok} diverged seed(s), counted but left out of every "
                     f"accuracy statistic: {listing(g.seeds[~g.ok])}.")
        if g.n_ok == 0:
            doc.text(f"{g.label}: no finished run; every accuracy statistic is empty.")
        elif g.n_ok == 1:
            doc.text(f"{g.label}: one finished seed ({g.seeds[g.ok][0]}): no spread to estimate; "
                     f"sections that need several runs are left out for it.")
        collapses(doc, g)
        if g.protocol in PUBLISHED:
            doc.text(f"{g.label}: {PUBLISHED[g.protocol]}")
        stopping_rule(doc, g)
        notes(doc, g)
        if g.skipped_rows:
            doc.text(f"{g.label}: {len(g.skipped_rows)} malformed row(s) skipped: "
                     + listing([f"seed {s if s is not None else '?'} ({why})" for s, why in g.skipped_rows],
                               10, "the store") + ".")


def collapses(doc: Document, g) -> None:
    """The runs far below the others (stats.collapses, the stopping rules' test, in seed order), and what
    they do to the mean: they are finished runs, so every statistic counts them."""
    from fastseed.stats.collapses import FALSE_FLAGS, find_collapses
    from fastseed.stats.summary import t_interval
    if g.n_ok < 10:
        return
    far = find_collapses(g.acc)
    if not far.any():
        return
    rest = g.acc[g.ok & ~far]
    listed = listing([f"{s} ({num(a)} %)" for s, a in zip(g.seeds[far], g.acc[far])])
    doc.text(f"{g.label}: {far.sum():,} run(s) of {g.n_ok:,} lie far below the others, collapses by the "
             f"test the stopping rules use (a normal fitted to the other runs would put a run that low with "
             f"probability below 1 in {1 / FALSE_FLAGS:,.0f} over all the seeds): seeds {listed}. They are finished runs and "
             f"count in every statistic here; the other runs' mean is {num(rest.mean())} % "
             f"(t-interval [{num(t_interval(rest)[0])}, {num(t_interval(rest)[1])}]) against "
             f"{num(g.ok_acc.mean())} % for all, a gap of {signed(g.ok_acc.mean() - rest.mean())} pp that the "
             f"collapse rate drives.")


def stopping_rule(doc: Document, g) -> None:
    """The rule that ended the scan, as the scan recorded it in the store (--until-ci, --versus)."""
    from fastseed.store import Store
    with Store.open(g.path) as store:
        rule = store.stopping_note()
    if rule is None:
        return
    fed = rule.get("seeds_fed") if isinstance(rule.get("seeds_fed"), dict) else {}
    read = fed.get("A") if isinstance(fed.get("A"), int) else None
    standing = f": {rule['standing']}" if isinstance(rule.get("standing"), str) else ""
    ended = (f"It decided: {rule['decision']}." if rule.get("decision") else
             f"It had not decided when the scan ended{standing}.")
    if read is not None and read < len(g):
        ended += (f" This report covers all {len(g):,} runs of the store, {len(g) - read:,} more than the rule "
                  f"read (the packs in flight when it stopped, or later scans).")
    doc.text(f"{g.label}: Stopping rule ({rule.get('flags', '')}): {rule['rule']} {ended}")


def notes(doc: Document, g) -> None:
    for prefix, note in NOTES.items():
        if g.protocol.startswith(prefix):
            doc.text(f"{g.label}: {note}")


def figures_section(doc: Document, groups, why: dict) -> None:
    """The figures the records support (`why`: fastseed.report.coverage)."""
    from fastseed.report import figures
    doc.heading("Figures")
    name = metric_of(groups).name
    if why["accuracy_vs_epoch"] is None:
        doc.figure("accuracy_vs_epoch", figures.accuracy_vs_epoch(groups), f"{name.capitalize()} per epoch over "
                   "finished runs: mean, ±1 std band, min–max band (Picard Fig. 1)")
    doc.figure("distribution", figures.distribution(groups), f"Final {name}: histogram, "
               "Gaussian KDE, one rug tick per run (Picard Figs. 2–6)")
    if why["curves"] is None:
        doc.figure("curves", figures.curves(groups), f"Training loss and {name.removeprefix('test ')} of every run; "
                   f"final {name} and test loss distributions (the ResNet-18 study's plots)")


def extra_section(doc: Document, groups) -> None:
    """A training function's other metrics: their spread over seeds, and how each moves with the headline."""
    rows = []
    for g in groups:
        for name, values in g.extra.items():
            x, y = values[g.ok], g.acc[g.ok]
            both = np.isfinite(x) & np.isfinite(y)
            r = np.corrcoef(x[both], y[both])[0, 1] if both.sum() > 2 and np.ptp(x[both]) > 0 and np.ptp(y[both]) > 0 \
                else np.nan
            x = x[np.isfinite(x)]
            rows.append({"label": g.label, "metric": name, "n": len(x),
                         "mean": x.mean() if len(x) else np.nan, "std": x.std(ddof=1) if len(x) > 1 else np.nan,
                         "min": x.min() if len(x) else np.nan, "max": x.max() if len(x) else np.nan,
                         "r_with_headline": r})
    if not rows:
        return
    doc.heading("Other metrics")
    d = pd.DataFrame(rows)
    doc.table("extra_metrics", d, formatted(d, 4, n=0, r_with_headline=3),
              f"The training function's other metrics over finished runs: mean, sample std, min, max, and their "
              f"Pearson correlation across seeds with the headline ({metric_of(groups).label})")


def swans_section(doc: Document, groups, top: int) -> None:
    from fastseed.report import figures
    from fastseed.stats.extremes import best_of_n, decades, extremes, n_grid
    doc.heading("Black swans")
    found = [g for g in groups if g.n_ok >= 2]
    if not found:
        doc.text("Fewer than two finished runs: no extremes to rank.")
        return
    m = metric_of(groups)
    best = ("acc", "z")  # a lower-is-better metric is ranked on its negation, its values turned back
    d = pd.concat([oriented(extremes(g.seeds[g.ok], signed_values(g), top), g.metric, best).assign(label=g.label)
                   for g in found])
    d = d[["label", "side", "rank", "seed", "acc", "z", "normal_tail", "tail_of_n"]]
    probability = lambda p: (f"{p:.1e}" if p < 0.01 else f"{p:.2f}") if np.isfinite(p) else "—"
    doc.table("extremes", d, formatted(d, z=lambda z: f"{z:+.2f}" if np.isfinite(z) else "—",
                                       normal_tail=probability, tail_of_n=probability),
              f"The {top} best and worst seeds: {m.label}{'' if m.higher_is_better else ' (lower is better)'}, "
              f"z-score; the one-tail probability of such a z for one seed chosen in advance (normal_tail), and "
              f"the chance, under a normal, that at least `rank` of all the seeds lie that far out (tail_of_n: "
              f"the n seeds were all looked at)")
    for g in found:
        row = d[(d["label"] == g.label) & (d["rank"] == 1)].set_index("side")
        said = [f"the {side} seed ({signed(row.at[side, 'z'], 2)} sd) would be a "
                f"{probability(row.at[side, 'normal_tail'])} event for one seed chosen in advance, and one of "
                f"{g.n_ok:,} lies that far out by chance with probability {probability(row.at[side, 'tail_of_n'])}"
                for side in ("best", "worst") if np.isfinite(row.at[side, "z"])]
        if said:
            doc.text(f"{g.label}: " + "; ".join(said) + " (if accuracies were normal; Šidák's correction "
                     "of the exact studentized tail, Grubbs 1969).")
    values = ("best", "worst", "dodge_best", "normal_best", "normal_worst")
    d = pd.concat([oriented(best_of_n(signed_values(g), decades(g.n_ok)), g.metric, values).assign(label=g.label)
                   for g in found])
    d = d[["label"] + [c for c in d.columns if c != "label"]]
    doc.table("best_of_n", d, formatted(d), "Expected best, worst and spread (max − min) of n seeds, "
              f"and the gain of the best over one seed ({m.unit or m.name}, {m.points or 'its units'}): exact over "
              "all n-subsets of the runs (unbiased, Tang et al. 2020), Dodge et al. 2019's estimate of the best "
              "(n draws with replacement), and normal theory (the runs' mean and std)")
    curves = {g.label: oriented(best_of_n(signed_values(g), n_grid(g.n_ok)), g.metric, values) for g in found}
    doc.figure("best_of_n", figures.best_of_n(curves), "Expected best/worst and spread of n seeds "
               "tried (solid: the runs; dashed: normal theory)")
    for g in found:
        t = d[d["label"] == g.label].set_index("n")
        pts, unit = (f" {g.metric.points}" if g.metric.points else ""), g.metric.unit
        buys = [f"{n:,} seeds buys {signed(t.at[n, 'gain'])}{pts} (normal theory "
                f"{signed(t.at[n, 'normal_gain'])})" for n in (10, 100, 1000, 10000) if n in t.index]
        if buys:
            top_value = g.ok_acc.max() if g.metric.higher_is_better else g.ok_acc.min()
            doc.text(f"{g.label}: over one seed (mean {num(g.ok_acc.mean())}{' ' + unit if unit else ''}), trying "
                     + "; ".join(buys) + f"{'' if g.metric.higher_is_better else ' (lower is better)'}. The best "
                     f"of all {g.n_ok:,} is {num(top_value)}{' ' + unit if unit else ''}, the spread "
                     f"{num(np.ptp(g.ok_acc))}{pts}.")
    estimators_text(doc, d, found)


def estimators_text(doc: Document, d: pd.DataFrame, found) -> None:
    """Where Dodge et al.'s estimate of the best of n differs from the unbiased one, and its bias on a
    synthetic case with a known answer."""
    from fastseed.stats.extremes import decades, estimator_bias
    for g in found:
        t = d[d["label"] == g.label]
        gap = (t["dodge_best"] - t["best"]).to_numpy()
        worst = int(np.argmin(gap))
        doc.text(f"{g.label}: Dodge et al. 2019 estimate the best of n seeds as the best of n drawn with "
                 f"replacement from the runs; Tang et al. 2020 showed this is biased low and gave the "
                 f"unbiased estimator (the best column). Here they differ by up to {signed(gap[worst], 3)} "
                 f"pp, at n = {int(t['n'].iloc[worst]):,}.")
    runs = 50
    b = estimator_bias(runs, decades(runs), rng=rng_for("estimators"))
    doc.table("best_of_n_bias", b, formatted(b, 4, n=0), f"A synthetic case with a known answer: the mean "
              f"error of both estimators of E[best of n] over 4,000 samples of {runs} standard-normal runs "
              f"(true value by integration), in standard deviations, with its Monte Carlo standard error")
    std = found[0].ok_acc.std(ddof=1)
    last = b.iloc[-1]
    doc.text(f"With {runs} runs and the std of {found[0].label} ({num(std)} pp), Dodge et al.'s estimate "
             f"of the best of all {runs} is off by {signed(last['dodge_bias'] * std, 3)} pp on average, the "
             f"unbiased one by {signed(last['unbiased_bias'] * std, 3)} pp.")


def transfer_section(doc: Document, groups, evidence: dict) -> dict:
    """The val/test halves of every store that has them; returns label → figures.TransferPanel (each
    seed's accuracy on the halves, for seeds.csv too)."""
    from fastseed.report import figures
    from fastseed.stats.extremes import decades, n_grid
    from fastseed.stats.transfer import selection_curve, split_halves, transfer
    doc.heading("Lucky seeds do not transfer")
    rows, selections, panels = [], [], {}
    for g in groups:
        if not g.scorable or g.n_ok < 3:
            why = "fewer than three finished runs" if g.scorable else "no stored test labels or predictions"
            doc.text(f"{g.label}: left out ({why}).")
            continue
        val_half, test_half = split_halves(g.labels)  # counted with the per-image evidence
        right = evidence[g.label].counts.group_right
        val, test = 100 * right[:, 0] / len(val_half), 100 * right[:, 1] / len(test_half)
        t = transfer(g.seeds[g.ok], val, test)
        rows.append({"label": g.label, **t.__dict__, "val_gain": t.val_gain, "test_gain": t.test_gain})
        selections.append(selection_curve(val, test, decades(t.n)).assign(label=g.label))
        panels[g.label] = figures.TransferPanel(g.label, val, test, t, selection_curve(val, test, n_grid(t.n)))
        ci = f" [{num(t.r_low)}, {num(t.r_high)}]" if np.isfinite(t.r_low) else ""
        doc.text(f"{g.label}: the best of {t.n:,} seeds on val (seed {t.best_seed}, {signed(t.val_gain)} pp "
                 f"over the val mean) is {signed(t.test_gain)} pp off the mean on test (rank "
                 f"{t.best_test_rank:,} of {t.n:,}); across seeds r = {num(t.r)}{ci}, so about "
                 f"{num(100 * t.slope, 0)} % of a gain on val carries over to unseen images.")
    if not rows:
        return panels
    d = pd.DataFrame(rows)
    doc.table("transfer", d, formatted(d, r=3, r_low=3, r_high=3, rho=3, slope=3, r_p=p_value),
              "Accuracy (%) on two fixed, class-stratified halves of the test set (val, test): "
              "correlation across seeds (Pearson r, Fisher 95 % CI; Spearman rho), slope of test on "
              "val, and the best seed on val scored on test")
    d = pd.concat(selections)[["label", "n", "picked_val", "picked_test", "oracle_test"]]
    doc.table("selection", d, formatted(d), "Best of n seeds picked on val (expected over all "
              "n-subsets): its val accuracy, its test accuracy, the best test accuracy among the n (%)")
    doc.figure("transfer", figures.transfer(list(panels.values())), "Per-seed accuracy on the val and test "
               "halves; picking the best of n on val, scored on test")
    return panels


def ensembles_section(doc: Document, groups, calibrated: dict) -> None:
    """Hard votes of k seeds, and soft votes for the stores whose logits were found (`calibrated`)."""
    from fastseed.report import figures
    from fastseed.stats.ensembles import seed_ensembles, soft_ensembles
    doc.heading("Seed ensembles")
    tables, items, soft = [], [], {}
    for i, g in enumerate(groups):
        if g.scorable and g.examples == "predictions" and g.n_ok >= 2:  # votes need predicted classes
            table, accs = seed_ensembles(g.predictions, g.labels, rng=rng_for("ensembles", i), rows=g.ok_rows,
                                         single=g.ok_acc)
            tables.append(table.assign(label=g.label))
            items.append((g.label, accs))
            if g.label in calibrated:
                soft[g.label] = soft_ensembles(g.logits, g.predictions, g.labels, g.ok_rows,
                                               rng=rng_for("soft", i))
    if not tables:
        doc.text("Needs stored predictions (classes) and test labels and at least two finished runs.")
        return
    d = pd.concat(tables)[["label", "k", "ensembles", "mean", "std", "min", "max", "gain"]]
    doc.table("ensembles", d, formatted(d), "Majority vote of k seeds' predictions (%): mean, std, min "
              "and max over random ensembles (k = 1: every single run); gain over one seed (pp)")
    doc.figure("ensembles", figures.ensembles(items, soft), "Accuracy of majority-vote ensembles of k "
               "seeds (dots: ensembles; diamonds: their mean" + ("; squares: soft vote)" if soft else ")"))
    for label, t in ((t["label"].iloc[0], t) for t in tables):
        gains = "; ".join(f"k = {k}: {signed(gain)} pp" for k, gain in zip(t["k"], t["gain"]) if k > 1)
        if gains:
            doc.text(f"{label}: the majority vote over one seed gains {gains}.")
    doc.text("With k = 2 every disagreement is a tie, won by the first member's vote, so a two-seed vote "
             "is one seed in expectation: its gain is that of which seed came first in each ensemble.")
    if soft:
        d = pd.concat([t.assign(label=label) for label, t in soft.items()])
        d = d[["label"] + [c for c in d.columns if c != "label"]]
        doc.table("soft_ensembles", d, formatted(d), "Soft vote (class of the highest mean softmax "
                  "probability, from stored logits) against majority vote on the same random ensembles "
                  "of k seeds: mean accuracy (%), mean paired difference (pp)")
        for label, t in soft.items():
            diffs = "; ".join(f"k = {k}: {signed(v)} pp" for k, v in zip(t["k"], t["soft_minus_hard"]) if k > 1)
            if diffs:
                doc.text(f"{label}: the soft vote over the majority vote of the same seeds: {diffs}.")
    else:
        doc.text("Soft vote (mean of probabilities) needs each seed's logits: scan with --keep logits.")


def compare_section(doc: Document, groups, n_boot: int) -> None:
    from fastseed.stats.compare import compare
    doc.heading("Comparing recipes")
    pairs = [compare(a.ok_acc, b.ok_acc, a.label, b.label, n_boot, rng_for("compare", 100 * i + j))
             for i, a in enumerate(groups) for j, b in enumerate(groups) if i < j]
    if not metric_of(groups).higher_is_better:  # a seed "beats" another with a lower value
        pairs = [dataclasses.replace(c, p_a_beats_b=1 - c.p_a_beats_b) for c in pairs]
    d = pd.DataFrame([c.__dict__ for c in pairs])
    m = metric_of(groups)
    doc.table("compare", d, formatted(d, welch_p=p_value, mwu_p=p_value, p_a_beats_b=3, seeds_per_arm=0),
              f"A − B in mean {'accuracy' if m == ACCURACY else m.name} ({m.points or 'its units'}) with bootstrap "
              f"95 % CI; Welch's t-test; Mann–Whitney U; P(a random seed of A beats one of B"
              f"{'' if m.higher_is_better else ': scores lower'}); seeds per arm for 80 % power (α = 0.05)")
    for c in pairs:
        doc.text(f"{c.a} − {c.b} = {signed(c.diff)}{f' {m.points}' if m.points else ''} [{num(c.ci_low)}, "
                 f"{num(c.ci_high)}], Welch p = "
                 f"{p_value(c.welch_p)}, Mann–Whitney p = {p_value(c.mwu_p)}; a seed of {c.a} beats "
                 f"one of {c.b} with probability {num(c.p_a_beats_b)}; {num(c.seeds_per_arm, 0)} seeds "
                 f"per recipe detect this difference 4 times in 5.")


def factors_section(doc: Document, groups, n_boot: int) -> None:
    from fastseed.stats.factors import ROLES, find_experiments, variance_shares
    roles = find_experiments({g.label: g.fixed for g in groups})
    if roles is None:
        return
    by_label = {g.label: g for g in groups}
    doc.heading("Initialization vs data order")
    try:
        d = variance_shares(*(by_label[roles[r]].ok_acc for r in ROLES), n_boot, rng_for("factors"))
    except ValueError as e:
        doc.text(f"Left out: {e}.")
        return
    d.insert(1, "label", [roles[r] for r in ROLES] + [""])
    doc.table("factors", d, formatted(d, 4, n=0), "Variance of final accuracy (pp²) per experiment "
              "and its share of exp1's (init and order varied), with bootstrap 95 % CIs")
    s = d.set_index("experiment")
    share = lambda e: f"{num(100 * s.at[e, 'share'], 0)} % [{num(100 * s.at[e, 'share_low'], 0)}, " \
                      f"{num(100 * s.at[e, 'share_high'], 0)}]"
    doc.text(f"Initialization alone gives {share('exp2')} of the variance with both varied, data order "
             f"alone {share('exp3')}; {share('rest')} does not add up (interaction or noise).")
    doc.text("Each share is the variance with the other factor held at one value, divided by exp1's (both "
             "varied). If the effects added up, the shares would sum to 1 and the rest would be their "
             "interaction; with chaotic training either factor alone already sends each run down another "
             "path, so each alone gives nearly the whole variance (Summers & Dinneen 2021; Jordan 2024, "
             "App. D): the shares then sum to more than 1 and the rest is negative. A negative rest says "
             "the factors interact, not that a variance is negative.")
    notes(doc, by_label[roles["order"]])  # exp 3's Adam chain, where its share is read


def seeds_table(doc: Document, groups, halves: dict, calibrated: dict) -> None:
    """Every run, one row: a CSV only (10^4 rows are not for a page). `halves`: transfer_section's
    panels; `calibrated`: evidence.calibration_section's calibrations."""
    frames = []
    for g in groups:
        mean, std = (g.ok_acc.mean(), g.ok_acc.std(ddof=1)) if g.n_ok > 1 else (np.nan, np.nan)
        std = std if std > 0 else np.nan  # identical accuracies: no z-score (not a division by zero)
        frame = pd.DataFrame({"label": g.label, "seed": g.seeds, "status": np.where(g.ok, "ok", "diverged"),
                              "acc": g.acc, "loss": g.loss, "z": (g.acc - mean) / std,
                              "headline_epoch": g.headline_epoch, "wall_time_s": g.wall_time_s,
                              "val_acc": np.nan, "test_half_acc": np.nan, "ece": np.nan})
        if g.label in halves:
            frame.loc[g.ok, "val_acc"], frame.loc[g.ok, "test_half_acc"] = halves[g.label].val, halves[g.label].test
        if g.label in calibrated:
            frame.loc[calibrated[g.label].rows, "ece"] = 100 * calibrated[g.label].ece
        for name, values in g.extra.items():  # a training function's other metrics
            frame[f"extra.{name}"] = values
        frames.append(frame)
    doc.csv("seeds", pd.concat(frames))
    doc.text("Every run (accuracy in %, z-score, accuracy on each test half, calibration error in % "
             "where logits were read) is in seeds.csv.")


def build(groups, top: int = 5, n_boot: int | None = None, data_dir=None) -> Document:
    from fastseed.report import evidence as ev
    from fastseed.report.coverage import coverage_section
    from fastseed.stats.summary import BOOT
    n_boot = BOOT if n_boot is None else n_boot
    doc = Document("Seed variance: " + ", ".join(g.label for g in groups))
    evidence = ev.gather(groups, n_boot, lambda i: rng_for("testset", i))
    ev.headline(doc, evidence)
    stores = pd.DataFrame([{"label": g.label, "store": str(g.path), "protocol": g.protocol,
                            "hash": g.protocol_hash[:12], "runs": len(g), "finished": g.n_ok,
                            "fixed streams": " ".join(sorted(g.fixed)) if g.fixed is not None else "mixed",
                            "median s/seed": num(float(np.median(g.wall_time_s)), 1)} for g in groups])
    doc.table("stores", stores, stores, "Stores: protocol (hash), runs, seed streams held fixed")
    why = coverage_section(doc, groups)
    summary_section(doc, groups, n_boot)
    extra_section(doc, groups)
    figures_section(doc, groups, why)
    ev.testset_section(doc, evidence)
    ev.images_section(doc, groups, evidence, data_dir)
    swans_section(doc, groups, top)
    halves = transfer_section(doc, groups, evidence)
    calibrated = ev.calibration_section(doc, groups, rng_for("calibration"))
    ensembles_section(doc, groups, calibrated)
    if len(groups) > 1:
        compare_section(doc, groups, n_boot)
    factors_section(doc, groups, n_boot)
    seeds_table(doc, groups, halves, calibrated)
    return doc


