"""Where the variance comes from: the ResNet-18 study's three experiments (PROTOCOLS.md §3).

Exp 1 varies initialization and data order, exp 2 only initialization (order fixed), exp 3 only data
order (init fixed). Each share is a variance with the other factor held at one value, divided by exp1's:
Var2 / Var1 and Var3 / Var1. If the two effects added up, Var1 = Var_init + Var_order and 1 − both shares
("rest") would be what does not add up (interaction, or the estimates' own noise). With chaotic training
they do not add up: changing either factor alone already sends the run down another path, so each
alone gives nearly the whole variance (Summers & Dinneen, "Nondeterminism and instability in neural
network optimization", ICML 2021; Jordan 2024, App. D), the shares add to more than 1 and the rest is
negative — interaction, not a computing error. CIs come from resampling each experiment on its own.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from fastseed.stats.summary import BOOT, bootstrap, percentile_ci

ROLES = {  # role → (experiment, what varies)
    "both": ("exp1", "init + order"),
    "init": ("exp2", "init (order fixed)"),
    "order": ("exp3", "order (init fixed)"),
}
LABEL_ROLES = {"1": "both", "2": "init", "3": "order"}


def role_of(fixed: frozenset | None, label: str = "") -> str | None:
    """The experiment a store is, from the streams its runs held fixed (provenance "fixed"), else
    from a label exp1 / exp2 / exp3 (also "exp-2", "experiment 3"); None when neither says."""
    held = None if fixed is None else frozenset(fixed) & {"init", "order"}
    if held:  # the provenance says what was held: it is authoritative
        return {frozenset({"order"}): "init", frozenset({"init"}): "order"}.get(held)
    match = re.fullmatch(r"exp(?:eriment)?[\s_-]*([123])", label.strip(), flags=re.IGNORECASE)
    if match:  # stores whose records do not say (nothing fixed, or runs that disagree)
        return LABEL_ROLES[match.group(1)]
    return "both" if held is not None else None


def find_experiments(fixed_by_label: dict[str, frozenset | None]) -> dict[str, str] | None:
    """{role: label} when the labelled stores hold exactly one exp1, one exp2 and one exp3."""
    roles = {label: role_of(fixed, label) for label, fixed in fixed_by_label.items()}
    by_role = {}
    for label, role in roles.items():
        if role is not None:
            by_role.setdefault(role, []).append(label)
    if set(by_role) != set(ROLES) or any(len(v) != 1 for v in by_role.values()):
        return None
    return {role: labels[0] for role, labels in by_role.items()}


def variance_shares(acc_both, acc_init, acc_order, n_boot: int = BOOT, rng=None) -> pd.DataFrame:
    """One row per experiment (n, mean, std, variance with CI, share of exp1's variance with CI) and
    a row for the part that is not additive."""
    rng = np.random.default_rng(0) if rng is None else rng
    samples = {}
    for role, x in (("both", acc_both), ("init", acc_init), ("order", acc_order)):
        x = np.asarray(x, float)
        samples[role] = x[np.isfinite(x)]
    if any(len(x) < 2 for x in samples.values()):
        raise ValueError("variance_shares needs at least two runs in every experiment")
    var = {r: samples[r].var(ddof=1) for r in samples}
    if np.ptp(samples["both"]) == 0:  # every share is a fraction of its variance
        raise ValueError(f"{ROLES['both'][0]} has no spread (its {len(samples['both'])} runs have the same "
                         f"accuracy), so no share of it can be given")
    boot = {r: bootstrap(samples[r], lambda s, axis: s.var(axis=axis, ddof=1), n_boot, rng)
            for r in samples}
    rows = []
    # a resample of a few runs can repeat one run only: variance 0, a ratio without a value, and
    # then no interval (percentile_ci), said on the page as "—", not as a warning on the terminal
    quiet = lambda: np.errstate(divide="ignore", invalid="ignore")
    for role in ("both", "init", "order"):
        exp, varies = ROLES[role]
        with quiet():
            ratio = boot[role] / boot["both"]
        rows.append({"experiment": exp, "varies": varies, "n": len(samples[role]),
                     "mean": samples[role].mean(), "std": np.sqrt(var[role]), "variance": var[role],
                     "variance_low": percentile_ci(boot[role])[0],
                     "variance_high": percentile_ci(boot[role])[1],
                     "share": var[role] / var["both"],
                     "share_low": percentile_ci(ratio)[0] if role != "both" else 1.0,
                     "share_high": percentile_ci(ratio)[1] if role != "both" else 1.0})
    with quiet():
        rest = 1 - (boot["init"] + boot["order"]) / boot["both"]
    rows.append({"experiment": "rest", "varies": "not additive (interaction, noise)",
                 "n": np.nan, "mean": np.nan, "std": np.nan, "variance": np.nan,
                 "variance_low": np.nan, "variance_high": np.nan,
                 "share": 1 - (var["init"] + var["order"]) / var["both"],
                 "share_low": percentile_ci(rest)[0], "share_high": percentile_ci(rest)[1]})
    return pd.DataFrame(rows)
