"""The report's figures: each a function from Runs (one per label) to a matplotlib Figure.

Figures are built on bare `Figure` objects rendered by Agg (no pyplot, no global state, no display).
They stay readable at 10^4 runs: per-run lines go into one rasterized LineCollection whose alpha falls
with the number of runs, rug ticks and scatter points are rasterized too, and nothing is labelled per
run. Every title carries n; accuracies are in percent.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter
from scipy import stats

from fastseed.stats.runs import Runs
from fastseed.stats.summary import curve_bands

DPI = 100
SIZES = {  # name → (width, height) in inches; a PNG is SIZES × DPI pixels
    "accuracy_vs_epoch": (9, 5), "distribution": (9, 5), "curves": (12, 8.5),
    "best_of_n": (12, 5), "transfer": (12, 5), "ensembles": (9, 5),
}


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


def n_text(groups: list[Runs]) -> str:
    """'n = 9,997 runs', or 'n = 500 / 480 runs' in legend order: the finished runs a plot shows."""
    return "n = " + " / ".join(f"{g.n_ok:,}" for g in groups) + " runs"


def legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)


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
    ax.set(xlabel=axis_label(groups), ylabel="test accuracy (%)",
           title=f"Test accuracy per {groups[0].unit}: mean, ±1 std, min–max ({n_text(groups)})")
    ax.grid(alpha=0.3)
    legend(ax)
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


def _histogram(ax, groups, values_of, xlabel: str, rug: bool = True) -> None:
    """Histogram (density), Gaussian KDE (Scott's bandwidth) and one rug tick per run, per group."""
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
            ax.plot(grid, stats.gaussian_kde(x)(grid), color=c, lw=1.5)
        if rug:  # one tick per run along the bottom of the axes, a row per group
            heavy(ax.vlines(x, 0.035 * i, 0.035 * i + 0.03, transform=ax.get_xaxis_transform(),
                            colors=c, alpha=run_alpha(len(x), 0.04, overlap=30), lw=0.6, rasterized=True))
    ax.set(xlabel=xlabel, ylabel="density")
    ax.grid(alpha=0.3)
    legend(ax)


def distribution(groups: list[Runs]) -> Figure:
    """Picard's Figures 2–6: histogram, kernel density and a rug tick per run."""
    fig, axes = new_figure("distribution")
    ax = axes[0, 0]
    _histogram(ax, groups, lambda g: g.ok_acc, "final test accuracy (%)")
    ax.set(ylabel="density (per % point)",
           title=f"Final test accuracy: histogram, KDE, one tick per run ({n_text(groups)})")
    return fig


def _all_runs(ax, groups, epochs_of, values_of, ylabel: str, title: str) -> None:
    for i, g in enumerate(groups):
        values, epochs = values_of(g)[g.ok], epochs_of(g)
        if values.size == 0:
            continue
        lines = np.stack([np.broadcast_to(epochs, values.shape), values], axis=-1)
        ax.add_collection(heavy(LineCollection(lines, colors=color(i), alpha=run_alpha(len(values)),
                                               lw=0.6, rasterized=True)))
        ax.plot(epochs, np.nanmean(values, axis=0), color="black" if len(groups) == 1 else color(i),
                lw=1.5, ls="--", label=f"{g.label} mean")
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=axis_label(groups), ylabel=ylabel, title=f"{title} ({n_text(groups)})")
    ax.grid(alpha=0.3)
    legend(ax)


def curves(groups: list[Runs]) -> Figure:
    """The ResNet-18 study's plots: training loss and accuracy of every run, the distributions of
    final test accuracy and test loss."""
    fig, axes = new_figure("curves", ncols=2, nrows=2)
    _all_runs(axes[0, 0], groups, lambda g: g.train_epochs, lambda g: g.train_loss,
              "mean training loss", "Training loss, every run")
    _all_runs(axes[0, 1], groups, lambda g: g.train_epochs, lambda g: g.train_acc,
              "training accuracy (%)", "Training accuracy, every run")
    _histogram(axes[1, 0], groups, lambda g: g.ok_acc, "final test accuracy (%)", rug=False)
    axes[1, 0].set_title(f"Final test accuracy ({n_text(groups)})")
    _histogram(axes[1, 1], groups, lambda g: g.loss[g.ok], "final test loss (cross-entropy)", rug=False)
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
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        legend(ax)
    return fig


def transfer(items: list) -> Figure:
    """Lucky seeds do not transfer. `items`: (label, val_acc, test_acc, Transfer, selection frame)."""
    fig, axes = new_figure("transfer", ncols=2)
    left, right = axes[0]
    for i, (label, val, test, t, sel) in enumerate(items):
        c = color(i)
        heavy(left.scatter(val, test, s=6 if len(val) > 1000 else 14, color=c,
                           alpha=run_alpha(len(val), 0.06, overlap=100), lw=0, rasterized=True,
                           label=f"{label}: r = {t.r:.2f} (n = {t.n:,})"))
        left.scatter([t.best_val], [t.best_test], marker="*", s=180, color=c, edgecolor="black",
                     zorder=3, label=f"{label}: best on val, seed {t.best_seed}")
        right.plot(sel["n"], sel["picked_val"], color=c, label=f"{label}: picked seed on val")
        right.plot(sel["n"], sel["picked_test"], color=c, ls="--", label=f"{label}: same seed on test")
        right.axhline(t.mean_test, color=c, ls=":", lw=1, label=f"{label}: mean on test")
    ns = " / ".join(f"{t.n:,}" for _, _, _, t, _ in items)
    left.set(xlabel="accuracy on val half (%)", ylabel="accuracy on test half (%)",
             title=f"Per-seed accuracy on two test halves (n = {ns} runs)")
    log_n_axis(right, max(t.n for _, _, _, t, _ in items))
    right.set(xlabel="seeds tried, n (best picked on val)", ylabel="expected accuracy (%)",
              title=f"Best of n picked on val, scored on test (N = {ns})")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        legend(ax)
    return fig


def ensembles(items: list) -> Figure:
    """Majority-vote ensembles of k seeds. `items`: (label, {k: accuracies of the ensembles})."""
    fig, axes = new_figure("ensembles")
    ax = axes[0, 0]
    rng = np.random.default_rng(0)  # jitter only
    width = 0.7 / max(len(items), 1)
    ks = sorted({k for _, accs in items for k in accs})
    for i, (label, accs) in enumerate(items):
        c = color(i)
        pos = {k: ks.index(k) + (i - (len(items) - 1) / 2) * width for k in accs}
        for k, acc in accs.items():
            x = pos[k] + rng.uniform(-0.35, 0.35, len(acc)) * width
            heavy(ax.scatter(x, acc, s=4, color=c, alpha=run_alpha(len(acc), 0.06, overlap=100), lw=0, rasterized=True))
        means = [accs[k].mean() for k in accs]
        ax.plot([pos[k] for k in accs], means, color=c, marker="D", ms=6, mec="black",
                label=f"{label}: mean over the ensembles of each k")
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ns = " / ".join(f"{len(accs.get(1, [])):,}" for _, accs in items)
    ax.set(xlabel="ensemble size k (seeds, majority vote of predictions)", ylabel="test accuracy (%)",
           title=f"Seed ensembles vs single seeds (n = {ns} runs)")
    ax.grid(alpha=0.3)
    legend(ax)
    return fig
