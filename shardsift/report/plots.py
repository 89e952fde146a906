"""The report's plots (matplotlib, Agg backend) as <img> tags with base64 PNG data URIs.

Real outputs have scores that span orders of magnitude (documents of 20 to 100,000 words, DSIR log
weights from 0 down to -300,000), so every axis is chosen from the data (`axis_for`): a log axis for
a positive quantity that spans 100x or more, the central 99% of values when a few extremes lie far
from it (the documents left outside named under the plot), a symmetric log axis for a long
one-sided tail, else a plain linear axis."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from .html import pct, small

KEPT_C, DROP_C, GREY = "#2a9d4b", "#d1495b", "#888888"
WIDE_SPAN = 100.0     # a positive quantity with max/min beyond this gets a log axis
SKEW_SPAN = 20.0      # a largest |value| this many times the median |value| may call for a symmetric log axis
FAR_TAILS = 10.0      # full range beyond this many times the central 99%: clip to the central 99%


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> str:
    """The figure, laid out tight, as an <img>; closes the figure."""
    plt = _plt()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


@dataclass
class Axis:
    """How one quantity is laid on an axis: its scale ("linear", "log", or "symlog": logarithmic on
    both sides of a linear band of half-width ``linthresh`` around 0), the shown range, and what
    falls outside it."""

    scale: str
    lo: float
    hi: float
    below: int = 0
    above: int = 0
    min: float = 0.0
    max: float = 0.0
    linthresh: float = 1.0

    @property
    def log(self) -> bool:
        return self.scale == "log"

    def inside(self, x: np.ndarray) -> np.ndarray:
        return (x >= self.lo) & (x <= self.hi)

    def bins(self, n: int = 50) -> np.ndarray:
        if self.scale == "log":
            return np.geomspace(self.lo, self.hi, n)
        if self.scale == "symlog":
            c = self.linthresh
            lo, hi = (np.sign(v) * np.log10(1 + abs(v) / c) for v in (self.lo, self.hi))
            t = np.linspace(lo, hi, n)
            return np.sign(t) * c * (10 ** np.abs(t) - 1)
        return np.linspace(self.lo, self.hi, n)

    def apply(self, ax, which: str) -> None:
        """Set the axis's scale on a matplotlib axes (after plotting)."""
        if self.scale == "log":
            log_axis(ax, which)
        elif self.scale == "symlog":
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

            axis = ax.xaxis if which == "x" else ax.yaxis
            (ax.set_xscale if which == "x" else ax.set_yscale)("symlog", linthresh=self.linthresh)
            top = int(np.ceil(np.log10(max(abs(self.lo), abs(self.hi), self.linthresh))))
            powers = [10.0 ** k for k in range(int(round(np.log10(self.linthresh))), top + 1)]
            ticks = [t for t in [-p for p in powers[::-1]] + [0.0] + powers if self.lo <= t <= self.hi]
            if len(ticks) > 8:  # every other decade, keeping 0
                ticks = [t for j, t in enumerate(ticks) if t == 0 or j % 2 == ticks.index(0.0) % 2]
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1 or v == 0 else f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())

    def outliers(self, what: str) -> str:
        """A sentence naming the documents outside the axis ('' when none)."""
        parts = []
        if self.below:
            parts.append(f"{self.below:,} below {self.lo:.4g} (lowest {self.min:.4g})")
        if self.above:
            parts.append(f"{self.above:,} above {self.hi:.4g} (highest {self.max:.4g})")
        return f"outliers of {what} not shown: " + "; ".join(parts) if parts else ""

    def label(self, what: str) -> str:
        if self.scale == "log":
            return f"{what} (log scale)"
        if self.scale == "symlog":
            return f"{what} (log scale past \u00b1{self.linthresh:,.0f})"
        return f"{what} (outliers cut)" if self.below or self.above else what


def axis_for(x: np.ndarray, positive: bool) -> Axis:
    """The axis for finite values ``x``.

    - a positive quantity spanning WIDE_SPAN or more (lengths, cluster sizes): a log axis;
    - a few extremes FAR_TAILS times further out than the central 99%: the central 99% widened by
      half on each side, and the documents left outside counted;
    - a long tail inside that range (log weights of 20- to 100,000-word documents, where a linear axis
      puts most documents in one or two of 50 bins): a symmetric log axis over it;
    - else that range, linear.
    """
    lo, hi = float(x.min()), float(x.max())
    if positive and lo >= 0 and hi > 0:
        floor = lo if lo > 0 else float(x[x > 0].min()) if (x > 0).any() else 1.0
        if hi / floor >= WIDE_SPAN:
            return Axis("log", floor, hi, below=int((x < floor).sum()), min=lo, max=hi)
    lo_in, hi_in, below, above = lo, hi, 0, 0
    qlo, qhi = (float(v) for v in np.quantile(x, [0.005, 0.995]))
    if qhi > qlo and hi - lo > FAR_TAILS * (qhi - qlo):
        # the central 99% and half its width again on each side: a distribution's own tails stay
        lo_in, hi_in = max(lo, qlo - (qhi - qlo) / 2), min(hi, qhi + (qhi - qlo) / 2)
        below, above = int((x < lo_in).sum()), int((x > hi_in).sum())
    inside = x[(x >= lo_in) & (x <= hi_in)]
    a = np.abs(inside)
    if hi_in > lo_in and len(a) and a.max() >= SKEW_SPAN * max(float(np.median(a)), 1e-12):
        counts = np.histogram(inside, bins=50, range=(lo_in, hi_in))[0]
        if np.sort(counts)[-2:].sum() > 0.5 * len(inside):  # a long tail even inside the shown range
            nonzero = a[a > 0]
            c = float(np.quantile(nonzero, 0.05)) if len(nonzero) else 1.0
            c = 10.0 ** np.floor(np.log10(max(c, 1e-12)))  # a power of ten: ticks at 0, +-c, +-10c, ...
            return Axis("symlog", lo_in, hi_in, below, above, lo, hi, linthresh=c)
    return Axis("linear", lo_in, hi_in, below, above, lo, hi)


def log_axis(ax, which: str = "x") -> None:
    """A log axis labelled in plain numbers (10, 100, 1,000; also 20, 50 when it spans three decades
    or fewer) with unlabelled minor ticks. Call it after plotting, when the limits are known."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    if lo > 0 and hi / lo <= 1e3:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def short_count(v: float) -> str:
    """A tick label for a count: 950, 12k, 1.5M (no '1e6' offset, no crowding)."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.0f}"


def count_axis(ax, which: str = "x") -> None:
    """A linear count axis with at most six ticks labelled 950, 12k, 1.5M."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axis.set_major_formatter(FuncFormatter(lambda v, _: short_count(v)))


def _caption(*lines: str) -> str:
    return "".join(small(x) for x in lines if x)


def funnel(names: list[str], series: list[tuple[str, list[int]]]) -> str:
    """Documents (and words) left after each stage, as horizontal bars with counts and shares."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(series), figsize=(5.2 * len(series) + 1, 0.45 * len(names) + 1.6),
                             squeeze=False)
    y = np.arange(len(names))[::-1]
    for ax, (what, vals) in zip(axes[0], series):
        ax.barh(y, vals, color=[GREY] + [KEPT_C] * (len(vals) - 1))
        ax.set_yticks(y, names)
        for yy, v in zip(y, vals):
            ax.text(v, yy, f" {v:,} ({pct(v, vals[0])})", va="center", fontsize=8)
        ax.set_xlim(0, max(vals + [1]) * 1.6)
        count_axis(ax, "x")
        ax.set_xlabel(what)
        ax.set_title(f"{what} left after each stage")
    return png(fig)


def composition(keys: list[str], series: list[tuple[str, dict]]) -> str:
    """Label counts as bars, one panel per measure (documents, words), with the share in the label."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(series), figsize=(5.6 * len(series), 0.3 * len(keys) + 1.6), squeeze=False)
    y = np.arange(len(keys))
    for ax, (what, counts) in zip(axes[0], series):
        vals = np.array([counts.get(k, 0) for k in keys], dtype=float)
        ax.barh(y, vals, color=KEPT_C)
        total = max(vals.sum(), 1)
        for yy, v in zip(y, vals):
            ax.text(v, yy, f" {int(v):,} ({100 * v / total:.1f}%)", va="center", fontsize=8)
        ax.set_yticks(y, keys)
        ax.invert_yaxis()
        ax.set_xlim(0, max(vals.max(initial=0), 1) * 1.5)
        count_axis(ax, "x")
        ax.set_xlabel(f"{what} in the output")
    return png(fig)


def score_hist(score: np.ndarray, kept: np.ndarray, what: str, positive: bool,
               cut: tuple[float | None, str] = (None, ""), aside: str = "") -> str:
    """Kept and dropped documents stacked over the stage's score, with the cut when there is one."""
    ok = np.isfinite(score)
    if ok.sum() < 2 or np.ptp(score[ok]) == 0:
        return ""
    ax_x = axis_for(score[ok], positive)
    shown = ok.copy()
    shown[ok] = ax_x.inside(score[ok])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    bins = ax_x.bins(80 if ax_x.scale == "symlog" else 50)
    ax.hist([score[shown & kept], score[shown & ~kept]], bins=bins, stacked=True, histtype="stepfilled",
            color=[KEPT_C, DROP_C],
            label=[f"kept ({int((ok & kept).sum()):,})", f"dropped ({int((ok & ~kept).sum()):,})"])
    ax_x.apply(ax, "x")
    counts = np.histogram(score[shown], bins=bins)[0]
    log_counts = ax_x.scale != "linear" and counts.max() >= WIDE_SPAN * counts[counts > 0].min()
    if log_counts:  # a long tail of a few documents per bin stays visible beside the bulk
        log_axis(ax, "y")
    else:
        count_axis(ax, "y")
    at, how = cut
    if at is not None and ax_x.lo <= at <= ax_x.hi:
        ax.axvline(at, color="k", ls="--", lw=1.2, label=f"cut: {how}")
    ax.set_xlabel(ax_x.label(what))
    ax.set_ylabel("documents (log scale)" if log_counts else "documents")
    ax.set_title(f"distribution of {what}", fontsize=10)
    ax.legend(fontsize=8)
    missing = int((~ok).sum())
    return png(fig) + _caption(aside, ax_x.outliers(what),
                               f"{missing:,} documents without a finite score are not shown" if missing else "")


def score_vs_length(words: np.ndarray, score: np.ndarray, kept: np.ndarray, what: str, positive: bool,
                    source: str) -> str:
    """The stage's score against document length (log words), kept and dropped in colour."""
    ok = np.isfinite(score) & (words >= 0)
    if ok.sum() < 3 or np.ptp(score[ok]) == 0:
        return ""
    w = np.maximum(words[ok], 1).astype(np.float64)
    s, k = score[ok], kept[ok]
    ax_y = axis_for(s, positive)
    inside = ax_y.inside(s)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for mask, c, lab in ((~k & inside, DROP_C, "dropped"), (k & inside, KEPT_C, "kept")):
        ax.scatter(w[mask], s[mask], s=5, alpha=0.5, c=c, label=f"{lab} ({int(mask.sum()):,})", linewidths=0)
    log_axis(ax, "x")
    ax_y.apply(ax, "y")
    ax.set_xlabel("document length (words, log scale)")
    ax.set_ylabel(ax_y.label(what).replace(" (", "\n(", 1), fontsize=9)
    r = np.corrcoef(np.log(w), s)[0, 1] if np.ptp(w) > 0 else np.nan
    ax.set_title(f"{what} against length (r with log words = {r:.2f})", fontsize=9)
    ax.legend(fontsize=8, markerscale=3)
    return png(fig) + _caption(ax_y.outliers(what), f"lengths from {source}" if source else "")


def top_keys(top: list[dict]) -> str:
    keys = [str(x.get("key", "?")) for x in top]
    est = np.array([float(x.get("estimate") or 0.0) for x in top])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 0.3 * len(keys) + 1.4))
    y = np.arange(len(keys))
    ax.barh(y, est, color=[KEPT_C if e >= 0 else DROP_C for e in est])
    ax.set_yticks(y, keys)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("correlation of the key's loss with benchmark scores (estimate)")
    ax.set_title("top keys by correlation", fontsize=10)
    return png(fig)


def classifier(quality: dict[str, float]) -> str:
    keys = list(quality)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 0.4 * len(keys) + 1.3))
    y = np.arange(len(keys))
    vals = [quality[k] for k in keys]
    ax.barh(y, vals, color="#4c72b0")
    ax.set_yticks(y, keys)
    ax.set_xlim(0, 1.12)
    ax.invert_yaxis()
    for yy, v in zip(y, vals):
        ax.text(v, yy, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlabel("fraction (0 to 1)")
    ax.set_title("classifier quality on held-out documents", fontsize=10)
    return png(fig)


def cluster_size_hist(sizes: np.ndarray, what: str) -> str:
    """How many duplicate clusters have each size (log counts; log sizes past 40)."""
    dup = sizes[sizes >= 2]
    top = int(dup.max())
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    bins = np.arange(2, top + 2) - 0.5 if top <= 40 else np.unique(np.geomspace(2, top + 1, 30).astype(int))
    ax.hist(dup, bins=bins, color="#4c72b0")
    log_axis(ax, "y")
    if top > 40:
        log_axis(ax, "x")
    ax.set_xlabel(f"{what} (documents{', log scale' if top > 40 else ''})")
    ax.set_ylabel("clusters (log scale)")
    summary = f"{len(dup):,} duplicate clusters, {int(dup.sum()):,} documents, largest {top:,}"
    ax.set_title("duplicate clusters by size", fontsize=10)
    return png(fig) + small(summary)


def cluster_bars(before: np.ndarray, after: np.ndarray) -> str:
    """Documents per cluster before and after the stage, clusters by size before."""
    order = np.argsort(-before, kind="stable")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    x = np.arange(len(order))
    ax.bar(x, before[order], color="#bbbbbb", label=f"before ({int(before.sum()):,})", width=0.85)
    ax.bar(x, after[order], color=KEPT_C, label=f"after ({int(after.sum()):,})", width=0.5)
    if len(order) <= 30:
        ax.set_xticks(x, [str(c) for c in order], fontsize=7)
    if (before > 0).any() and before.max() >= WIDE_SPAN * before[before > 0].min():
        log_axis(ax, "y")
    else:
        count_axis(ax, "y")
    ax.set_xlabel(f"cluster, largest first ({len(order)} clusters)")
    ax.set_ylabel("documents" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title("documents per cluster before / after", fontsize=10)
    ax.legend(fontsize=8)
    return png(fig)


def projection(xy: np.ndarray, kept: np.ndarray, cluster: np.ndarray, title: str) -> str:
    """Two panels of the same 2-D projection: kept/dropped, and cluster colours."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True, sharey=True)
    axes[0].scatter(xy[~kept, 0], xy[~kept, 1], s=6, c=DROP_C, alpha=0.5, linewidths=0,
                    label=f"dropped ({int((~kept).sum()):,})")
    axes[0].scatter(xy[kept, 0], xy[kept, 1], s=6, c=KEPT_C, alpha=0.7, linewidths=0,
                    label=f"kept ({int(kept.sum()):,})")
    axes[0].legend(fontsize=8, markerscale=3)
    axes[0].set_title("kept / dropped")
    axes[1].scatter(xy[:, 0], xy[:, 1], s=6, c=cluster % 20, cmap="tab20", alpha=0.7, linewidths=0)
    axes[1].set_title("cluster (colour)")
    for ax in axes:
        ax.set_xlabel("first principal component")
    axes[0].set_ylabel("second principal component")
    fig.suptitle(title, fontsize=10)
    return png(fig)


def pca2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2 or x.shape[1] < 2:
        return np.c_[x[:, :1], np.zeros(len(x))] if x.shape[1] else np.zeros((len(x), 2))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :2] * s[:2]
