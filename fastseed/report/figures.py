"""The report's figures: each a function from Runs (one per label) to a matplotlib Figure.

Figures are built on bare `Figure` objects rendered by Agg (no pyplot, no global state, no display).
They stay readable at 10^4 runs: per-run lines go into one rasterized LineCollection whose alpha falls
with the number of runs, rug ticks and scatter points are rasterized too, and nothing is labelled per
run. Beyond 10^4 runs (5,000 for whole training curves), per-run marks are drawn for that many of them,
evenly spaced in seed order (seeds are iid, so that is a fair sample, and 10^5 overlapping marks show
nothing more but cost a minute to draw); every statistic, band, mean and histogram still uses every
run, and the title says how many are drawn.
Every title carries n; accuracies are in percent.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from fastseed.stats.runs import Runs
from fastseed.stats.summary import curve_bands
from fastseed.stats.transfer import Transfer
from fastseed.store.record import ACCURACY

DPI = 100
SIZES = {  # name → (width, height) in inches; a PNG is SIZES × DPI pixels
    "accuracy_vs_epoch": (9, 5), "distribution": (9, 5), "curves": (12, 8.5),
    "best_of_n": (12, 5), "transfer": (12, 5), "ensembles": (9, 5),
    "images_right": (9, 5), "seed_dependent": (12, 7.5), "calibration": (12, 5),
}
RUG = 0.06  # height of one group's rug strip below the histogram, as a fraction of the density axis
DRAWN = 10_000  # per-run marks (ticks, dots) drawn per group at most
DRAWN_LINES = 5_000  # per-run training curves drawn per group at most (a line costs 22 marks)


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def new_figure(name: str, ncols: int = 1, nrows: int = 1):
    fig = Figure(figsize=SIZES[name], layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def color(i: int) -> str:
    return f"C{i % 10}"


def run_alpha(n: int, floor: float = 0.02, overlap: float = 10) -> float:
    """Opaque enough to see one run, faint enough that 10^4 overlapping runs show their density:
    about `overlap` runs on one pixel saturate it. A dot covers fewer pixels than a line, so dots
    overlap less and get a higher floor."""
    return float(np.clip(overlap / max(n, 1), floor, 0.6))


def heavy(artist):
    """An artist of one element per run: left out of the layout's bounding-box pass, which would
    otherwise walk its 10^4 paths to place the axes (they lie inside the axes anyway)."""
    artist.set_in_layout(False)
    return artist


def drawn(n: int, most: int = DRAWN) -> np.ndarray:
    """Indices of the runs whose marks are drawn: all of them, or `most` evenly spaced."""
    return np.arange(n) if n <= most else np.unique(np.linspace(0, n - 1, most).round().astype(np.int64))


def drawn_text(n: int, most: int = DRAWN) -> str:
    return f", {most:,} of them drawn" if n > most else ""


def n_text(groups: list[Runs]) -> str:
    """'n = 9,997 runs', or 'n = 500 / 480 runs' in legend order: the finished runs a plot shows."""
    return "n = " + " / ".join(f"{g.n_ok:,}" for g in groups) + " runs"


def legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)


def tidy(*axes, which: str = "major") -> None:
    """The last touch of a panel: a light grid and its legend."""
    for ax in axes:
        ax.grid(alpha=0.3, which=which)
        legend(ax)


def log_n_axis(ax, N: int) -> None:
    """Seeds tried, n = 1 … N, on a log axis labelled in plain numbers (1, 10, 100, not 10^2)."""
    ax.set_xscale("log")
    if N <= 10:
        ax.set_xticks(range(1, N + 1))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def axis_label(groups: list[Runs]) -> str:
    """Curves of CIFAR runs are indexed by 0-based epoch, those of ImageNet fine-tunes by global step."""
    return "epoch (0-based)" if groups[0].unit == "epoch" else "training step"


def accuracy_vs_epoch(groups: list[Runs]) -> Figure:
    """Picard's Figure 1: test accuracy per epoch, mean line, ±1 std band and min–max band."""
    fig, axes = new_figure("accuracy_vs_epoch")
    ax = axes[0, 0]
    for i, g in enumerate(groups):
        b = curve_bands(g.eval_epochs, g.eval_acc[g.ok])
        c = color(i)
        ax.fill_between(b.epochs, b.min, b.max, color=c, alpha=0.15, lw=0, label=f"{g.label} min–max")
        ax.fill_between(b.epochs, b.mean - b.std, b.mean + b.std, color=c, alpha=0.35, lw=0,
                        label=f"{g.label} ±1 std")
        ax.plot(b.epochs, b.mean, color=c, marker="o" if len(b.epochs) <= 25 else None, ms=3,
                label=f"{g.label} mean")
    headline = np.unique(np.concatenate([g.headline_epoch[g.ok] for g in groups]))
    if len(headline) == 1:
        ax.axvline(headline[0], color="grey", ls=":", lw=1, label=f"headline {groups[0].unit} {headline[0]}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    m = groups[0].metric
    ax.set(xlabel=axis_label(groups), ylabel=m.label,
           title=f"{m.name.capitalize()} per {groups[0].unit}: mean, ±1 std, min–max ({n_text(groups)})")
    tidy(ax)
    return fig


def bin_edges(x: np.ndarray) -> np.ndarray:
    """About sqrt(n) bins (10 to 60). Accuracies lie on a grid (correct / test images, 0.01 % for
    10^4 images): bins are then a whole number of grid steps wide with edges between steps, or every
    few bins would catch one step more than its neighbours and the histogram would look like a comb."""
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.linspace(lo - 0.5, hi + 0.5, 11)
    width = (hi - lo) / min(60, max(10, int(np.sqrt(len(x)))))
    gaps = np.diff(np.unique(x))
    step = gaps.min()
    if len(gaps) > 1 and np.all(np.abs(gaps / step - np.round(gaps / step)) < 0.01):
        width = step * max(1, round(width / step))
        return np.arange(lo - step / 2, hi + step / 2 + width, width)
    return np.linspace(lo, hi, int(round((hi - lo) / width)) + 1)


def kde(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """scipy's gaussian_kde(x)(grid) (Scott's bandwidth σ · n^(−1/5)), summed over the distinct
    values with their counts: accuracies lie on a grid of 1/test images, so 10^5 runs hold a few
    hundred distinct values, and the sum is 10^3 times shorter."""
    values, counts = np.unique(x, return_counts=True)
    h = x.std(ddof=1) * len(x) ** (-1 / 5)
    density = np.zeros(len(grid))
    for start in range(0, len(values), 4096):  # (grid × 4,096) at a time: losses are all distinct
        z = (grid[:, None] - values[None, start: start + 4096]) / h
        density += np.exp(-0.5 * z * z) @ counts[start: start + 4096]
    return density / (len(x) * h * np.sqrt(2 * np.pi))


def _histogram(ax, groups, values_of, xlabel: str, rug: bool = True) -> None:
    """Histogram (density), Gaussian KDE (Scott's bandwidth) and one rug tick per run, per group.
    The rug gets its own strip below the density axis, where no bar can hide it."""
    samples = [v[np.isfinite(v)] for v in map(values_of, groups)]
    pooled = np.concatenate(samples) if samples else np.array([])
    if len(pooled) == 0:
        ax.text(0.5, 0.5, "no finished runs", transform=ax.transAxes, ha="center")
        return
    edges = bin_edges(pooled)
    margin = 0.05 * (edges[-1] - edges[0])
    grid = np.linspace(edges[0] - margin, edges[-1] + margin, 400)
    for i, (g, x) in enumerate(zip(groups, samples)):
        if len(x) == 0:
            continue
        c = color(i)
        ax.hist(x, bins=edges, density=True, color=c, label=f"{g.label} (n = {len(x):,})",
                **(dict(alpha=0.5) if len(groups) == 1 else dict(histtype="step", lw=1)))
        if len(x) > 1 and np.ptp(x) > 0:
            ax.plot(grid, kde(x, grid), color=c, lw=1.5)
    if rug:  # one tick per run in a strip below zero, a row per group
        top = ax.get_ylim()[1]
        strip = RUG * top
        for i, (g, x) in enumerate(zip(groups, samples)):
            x = x[drawn(len(x))]
            heavy(ax.vlines(x, -(i + 1) * strip + 0.1 * strip, -i * strip - 0.1 * strip, colors=color(i),
                            alpha=run_alpha(len(x), 0.08, overlap=30), lw=0.6, rasterized=True, zorder=3))
        ax.set_ylim(-len(groups) * strip, top)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= top])
    ax.set(xlabel=xlabel, ylabel="density")
    tidy(ax)


def distribution(groups: list[Runs]) -> Figure:
    """Picard's Figures 2–6: histogram, kernel density and a rug tick per run."""
    fig, axes = new_figure("distribution")
    ax = axes[0, 0]
    m = groups[0].metric
    _histogram(ax, groups, lambda g: g.ok_acc, f"final {m.label}")
    ax.set(ylabel=f"density (per {'% point' if m.unit == '%' else 'unit'})",
           title=f"Final {m.name}: histogram, KDE, one tick per run "
                 f"({n_text(groups)}{drawn_text(max(g.n_ok for g in groups))})")
    return fig


def _all_runs(ax, groups, epochs_of, values_of, ylabel: str, title: str) -> None:
    for i, g in enumerate(groups):
        values, epochs = values_of(g)[g.ok], epochs_of(g)
        if values.size == 0 or np.isnan(values).all():  # (a training function's curve without this value)
            continue
        shown = values[drawn(len(values), DRAWN_LINES)]
        lines = np.stack([np.broadcast_to(epochs, shown.shape), shown], axis=-1)
        ax.add_collection(heavy(LineCollection(lines, colors=color(i), alpha=run_alpha(len(shown)),
                                               lw=0.6, rasterized=True)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no run has a value for: NaN, not drawn
            mean = np.nanmean(values, axis=0)
        ax.plot(epochs, mean, color="black" if len(groups) == 1 else color(i), lw=1.5, ls="--",
                label=f"{g.label} mean")
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=axis_label(groups), ylabel=ylabel,
           title=f"{title} ({n_text(groups)}{drawn_text(max(g.n_ok for g in groups), DRAWN_LINES)})")
    tidy(ax)


def curves(groups: list[Runs]) -> Figure:
    """The ResNet-18 study's plots: training loss and accuracy of every run, the distributions of
    final test accuracy and test loss."""
    fig, axes = new_figure("curves", ncols=2, nrows=2)
    losses = " / ".join(dict.fromkeys(g.loss_name for g in groups))
    m = groups[0].metric
    _all_runs(axes[0, 0], groups, lambda g: g.train_epochs, lambda g: g.train_loss,
              f"mean training loss: {losses}", "Training loss, every run")
    _all_runs(axes[0, 1], groups, lambda g: g.train_epochs, lambda g: g.train_acc,
              f"training {m.label.removeprefix('test ')}", f"Training {m.name.removeprefix('test ')}, every run")
    _histogram(axes[1, 0], groups, lambda g: g.ok_acc, f"final {m.label}", rug=False)
    axes[1, 0].set_title(f"Final {m.name} ({n_text(groups)})")
    _histogram(axes[1, 1], groups, lambda g: g.loss[g.ok],
               "final test loss (cross-entropy)" if m == ACCURACY else "final test loss", rug=False)
    axes[1, 1].set_title(f"Final test loss ({n_text(groups)})")
    return fig


def best_of_n(tables: dict) -> Figure:
    """Expected best and worst of n seeds, and their spread, from the runs (solid) and a normal
    with the same mean and std (dashed). `tables`: label → extremes.best_of_n frame."""
    fig, axes = new_figure("best_of_n", ncols=2)
    left, right = axes[0]
    for i, (label, t) in enumerate(tables.items()):
        c = color(i)
        left.plot(t["n"], t["best"], color=c, label=f"{label} best (runs)")
        left.plot(t["n"], t["worst"], color=c, alpha=0.6, label=f"{label} worst (runs)")
        left.plot(t["n"], t["normal_best"], color=c, ls="--", lw=1, label=f"{label} normal theory")
        left.plot(t["n"], t["normal_worst"], color=c, ls="--", lw=1, alpha=0.6)
        right.plot(t["n"], t["spread"], color=c, label=f"{label} runs")
        right.plot(t["n"], t["normal_spread"], color=c, ls="--", lw=1, label=f"{label} normal theory")
    ns = " / ".join(f"{int(t['n'].max()):,}" for t in tables.values())
    N = max(int(t["n"].max()) for t in tables.values())
    for ax in (left, right):
        log_n_axis(ax, N)
    left.set(xlabel="seeds tried, n", ylabel="expected test accuracy (%)",
             title=f"Expected best and worst of n seeds (N = {ns} runs)")
    right.set(xlabel="seeds tried, n", ylabel="expected spread, max − min (% points)",
              title=f"Expected spread of n seeds (N = {ns} runs)")
    tidy(left, right, which="both")
    return fig


@dataclass(frozen=True)
class TransferPanel:
    """One store in the transfer figure: each finished seed's accuracy (%) on the val and test halves,
    their stats.transfer.Transfer, and stats.transfer.selection_curve over n."""
    label: str
    val: np.ndarray
    test: np.ndarray
    transfer: Transfer
    selection: pd.DataFrame


def transfer(panels: list[TransferPanel]) -> Figure:
    """Lucky seeds do not transfer: per-seed accuracy on the two halves, and the best of n picked on val."""
    fig, axes = new_figure("transfer", ncols=2)
    left, right = axes[0]
    for i, p in enumerate(panels):
        c, t, sel = color(i), p.transfer, p.selection
        some = drawn(len(p.val))
        heavy(left.scatter(p.val[some], p.test[some], s=6 if len(p.val) > 1000 else 14, color=c,
                           alpha=run_alpha(len(some), 0.06, overlap=100), lw=0, rasterized=True,
                           label=f"{p.label}: r = {t.r:.2f} (n = {t.n:,})"))
        left.scatter([t.best_val], [t.best_test], marker="*", s=180, color=c, edgecolor="black",
                     zorder=3, label=f"{p.label}: best on val, seed {t.best_seed}")
        right.plot(sel["n"], sel["picked_val"], color=c, label=f"{p.label}: picked seed on val")
        right.plot(sel["n"], sel["picked_test"], color=c, ls="--", label=f"{p.label}: same seed on test")
        right.axhline(t.mean_test, color=c, ls=":", lw=1, label=f"{p.label}: mean on test")
    ns, most = " / ".join(f"{p.transfer.n:,}" for p in panels), max(p.transfer.n for p in panels)
    left.set(xlabel="accuracy on val half (%)", ylabel="accuracy on test half (%)",
             title=f"Per-seed accuracy on two test halves (n = {ns} runs{drawn_text(most)})")
    log_n_axis(right, most)
    right.set(xlabel="seeds tried, n (best picked on val)", ylabel="expected accuracy (%)",
              title=f"Best of n picked on val, scored on test (N = {ns})")
    tidy(left, right)
    return fig


def ensembles(items: list, soft: dict | None = None) -> Figure:
    """Majority-vote ensembles of k seeds. `items`: (label, {k: accuracies of the ensembles});
    `soft`: label → soft_ensembles table (mean soft vote per k), drawn as hollow squares."""
    fig, axes = new_figure("ensembles")
    ax = axes[0, 0]
    rng = np.random.default_rng(0)  # jitter only
    width = 0.7 / max(len(items), 1)
    ks = sorted({k for _, accs in items for k in accs})
    for i, (label, accs) in enumerate(items):
        c = color(i)
        pos = {k: ks.index(k) + (i - (len(items) - 1) / 2) * width for k in accs}
        for k, acc in accs.items():
            acc = acc[drawn(len(acc))]
            x = pos[k] + rng.uniform(-0.35, 0.35, len(acc)) * width
            heavy(ax.scatter(x, acc, s=4, color=c, alpha=run_alpha(len(acc), 0.06, overlap=100), lw=0, rasterized=True))
        means = [accs[k].mean() for k in accs]
        ax.plot([pos[k] for k in accs], means, color=c, marker="D", ms=6, mec="black",
                label=f"{label}: mean over the ensembles of each k")
        t = (soft or {}).get(label)
        if t is not None and len(t):
            ax.plot([pos[k] for k in t["k"] if k in pos], [v for k, v in zip(t["k"], t["soft"]) if k in pos],
                    color=c, marker="s", ms=7, mfc="none", ls=":", label=f"{label}: soft vote (logits)")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ns = " / ".join(f"{len(accs.get(1, [])):,}" for _, accs in items)
    ax.set(xlabel="ensemble size k (seeds, majority vote of predictions)", ylabel="test accuracy (%)",
           title=f"Seed ensembles vs single seeds (n = {ns} runs)")
    tidy(ax)
    return fig


def images_right(items: list) -> Figure:
    """Per test image, the fraction of seeds that classify it right. `items`: (label, fractions,
    runs). Images right under every seed and under none get their own bars at 0 and 1."""
    fig, axes = new_figure("images_right")
    ax = axes[0, 0]
    width = 0.02
    for i, (label, f, runs) in enumerate(items):
        c = color(i)
        f = np.asarray(f, dtype=float)
        inner = f[(f > 0) & (f < 1)]
        ax.hist(inner, bins=np.linspace(width, 1 - width, 49), color=c, label=f"{label}: right under some seeds",
                **(dict(alpha=0.6) if len(items) == 1 else dict(histtype="step", lw=1.2)))
        ends = [(0.0, (f == 0).sum(), "wrong under every seed"), (1.0, (f == 1).sum(), "right under every seed")]
        for x, count, what in ends:
            ax.bar(x, count, width=width, color=c, edgecolor="black", hatch="//" if x == 0 else None,
                   alpha=0.8 if len(items) == 1 else 0.5, label=f"{label}: {what} ({count:,})")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)  # one image still shows; an empty bar stays empty
    ax.axvspan(0.25, 0.75, color="grey", alpha=0.08, lw=0, label="coin flips (25–75 % of seeds)")
    ns = " / ".join(f"{runs:,}" for _, _, runs in items)
    ax.set(xlabel="fraction of seeds that classify the image right", ylabel="test images (log scale)",
           title=f"Which test images depend on the seed (n = {ns} runs, {len(items[0][1]):,} images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", framealpha=0.8)  # the bars at 0 and 1 stay clear
    return fig


def seed_dependent(images, labels, fractions, wrong, names=None, title: str = "") -> Figure:
    """A 4 × 8 grid of test images (uint8, H × W × 3) with their label, the fraction of seeds right
    and the most common wrong class (-1: none)."""
    fig = Figure(figsize=SIZES["seed_dependent"], layout="constrained")
    axes = fig.subplots(4, 8, squeeze=False)
    name = lambda c: (names[c] if names is not None and 0 <= c < len(names) else str(c))
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, label, f, w in zip(axes.ravel(), images, labels, fractions, wrong):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(f"{name(int(label))} {100 * f:.0f} %" + (f"\nelse {name(int(w))}" if w >= 0 else ""),
                     fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


def calibration(items: list) -> Figure:
    """Reliability of every seed's logits. `items`: (label, stats.calibration.Calibration). Left:
    accuracy against confidence per bin, median over seeds and the 5–95 % band; right: the
    distribution of the seeds' ECE."""
    fig, axes = new_figure("calibration", ncols=2)
    left, right = axes[0]
    left.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    for i, (label, cal) in enumerate(items):
        c = color(i)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a bin no seed reaches: all-NaN column
            conf = np.nanmedian(cal.confidence, axis=0)
            mid, lo, hi = np.nanquantile(cal.accuracy, [0.5, 0.05, 0.95], axis=0)
        seen = np.isfinite(conf) & np.isfinite(mid)
        left.fill_between(conf[seen], lo[seen], hi[seen], color=c, alpha=0.25, lw=0,
                          label=f"{label}: 5–95 % of seeds")
        left.plot(conf[seen], mid[seen], color=c, marker="o", ms=3, label=f"{label}: median seed")
        right.hist(100 * cal.ece, bins=min(40, max(5, len(cal.ece) // 5)), color=c,
                   **(dict(alpha=0.6) if len(items) == 1 else dict(histtype="step", lw=1.2)),
                   label=f"{label}: median {100 * np.median(cal.ece):.2f} %")
    ns = " / ".join(f"{len(cal.ece):,}" for _, cal in items)
    left.set(xlabel="confidence (max softmax probability), 15 equal-width bins", ylabel="accuracy",
             xlim=(0, 1), ylim=(0, 1), title=f"Reliability of each seed (n = {ns} runs)")
    right.set(xlabel="expected calibration error (%), 15 bins", ylabel="seeds",
              title=f"Calibration error across seeds (n = {ns} runs)")
    tidy(left, right)
    return fig
