"""Review figures, one question each: ranking, operating point, calibration, drivers, slices.

Every figure carries a `Caption` (model version or run, as_of, how many persons) in its title, so
a PNG lifted out of MLflow still says what it shows. Figures are built on `matplotlib.figure.Figure`
directly, never through pyplot: nothing here picks a backend or keeps global figure state, so
importing this module has no side effect, and `savefig` renders with Agg wherever it runs (a
server without display, a test, a notebook, which displays a returned Figure as usual).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from scipy.stats import norm
from sklearn.metrics import precision_recall_curve, roc_curve

from commuter_badge.models.core.threshold import clopper_pearson_upper

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before taking log-odds
MIN_BIN = 30  # fewest persons in a reliability bin
FEW = 30  # fewer negatives (positives) than this: a slice's FPR (recall) is shown as counts


@dataclass(frozen=True)
class Caption:
    """What a figure shows: which model, as of when, on how many persons."""

    model: str = ""  # "v3", or "run 1a2b3c4d" before a version exists
    as_of: str = ""
    n: int = 0
    population: str = "persons"

    def title(self, what: str) -> str:
        parts = [p for p in (self.model, f"as_of {self.as_of}" if self.as_of else "") if p]
        if self.n:
            parts.append(f"n = {self.n:,} {self.population}")
        return f"{what}\n{' · '.join(parts)}" if parts else what


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def wilson(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wilson score interval for k events in n trials (n > 0), elementwise."""
    k, n = np.asarray(k, dtype="float64"), np.asarray(n, dtype="float64")
    z = norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _bin_row(y, proba, idx, kind: str) -> dict:
    k, n = int(y[idx].sum()), len(idx)
    lo, hi = wilson(k, n)
    return {
        "predicted": float(proba[idx].mean()),
        "observed": k / n,
        "lower": float(lo),
        "upper": float(hi),
        "n": n,
        "positives": k,
        "kind": kind,
    }


def reliability_bins(y, proba, n_bins: int = 15, tail: float = 1e-3) -> pd.DataFrame:
    """Reliability bins that stay informative when most scores pile up at 0 and 1.

    Persons predicted below `tail` or above 1 - `tail` form one bin each (kind "tail"); the rest,
    where calibration decides who gets a badge, are cut into `n_bins` equal-count bins by rank
    (ties split, so the count holds even for discrete scores). Each bin has its predicted mean,
    observed share and 95% Wilson interval.
    """
    y, proba = np.asarray(y).astype(int), np.asarray(proba, dtype="float64")
    rows = []
    low, high = np.flatnonzero(proba < tail), np.flatnonzero(proba > 1 - tail)
    middle = np.flatnonzero((proba >= tail) & (proba <= 1 - tail))
    if len(low):
        rows.append(_bin_row(y, proba, low, "tail"))
    if len(middle):
        order = middle[np.argsort(proba[middle], kind="stable")]
        # At least MIN_BIN persons a bin: a share of 4 persons says nothing about calibration.
        for idx in np.array_split(order, max(1, min(n_bins, len(middle) // MIN_BIN))):
            rows.append(_bin_row(y, proba, idx, "quantile"))
    if len(high):
        rows.append(_bin_row(y, proba, high, "tail"))
    return pd.DataFrame(rows)


def _operating_point(y, proba, threshold):
    at = np.asarray(proba) >= threshold
    neg, pos = y == 0, y == 1
    return at[neg].mean() if neg.any() else np.nan, at[pos].mean() if pos.any() else np.nan


def roc(y, proba, threshold: float, target_fpr: float, caption: Caption = Caption()) -> Figure:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    y = np.asarray(y).astype(int)
    fpr, tpr, _ = roc_curve(y, proba)
    ax.plot(np.maximum(fpr, 1e-5), tpr, label="model")
    x, r = _operating_point(y, proba, threshold)
    ax.scatter([max(x, 1e-5)], [r], color="red", zorder=3, label=f"operating point (FPR {x:.3%})")
    ax.axvline(target_fpr, ls="--", color="grey", label=f"target FPR {target_fpr:.2%}")
    ax.set(xscale="log", xlim=(1e-4, 1), xlabel="false-positive rate (log)", ylabel="recall")
    ax.xaxis.set_major_formatter(FuncFormatter(_percent))
    ax.set_title(caption.title("ROC"), fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def precision_recall(y, proba, threshold: float, caption: Caption = Caption()) -> Figure:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    y = np.asarray(y).astype(int)
    precision, recall, _ = precision_recall_curve(y, proba)
    ax.plot(recall, precision)
    at = np.asarray(proba) >= threshold
    p = y[at].mean() if at.any() else 0
    _, r = _operating_point(y, proba, threshold)
    ax.scatter(
        [r], [p], color="red", zorder=3, label=f"threshold: recall {r:.4f}, precision {p:.4f}"
    )
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.01))
    ax.set_title(caption.title("Precision–recall"), fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def _reliability_panel(ax, bins: pd.DataFrame, label: str) -> None:
    """Observed against predicted on log-odds axes (ticks in probability), Wilson bars, counts."""
    lo_lim, hi_lim = 1e-4, 1 - 1e-4
    x = logit(np.clip(bins["predicted"], lo_lim, hi_lim))
    y = logit(np.clip(bins["observed"], lo_lim, hi_lim))
    lower = logit(np.clip(bins["lower"], lo_lim, hi_lim))
    upper = logit(np.clip(bins["upper"], lo_lim, hi_lim))
    edge = logit(hi_lim)
    ax.plot([-edge, edge], [-edge, edge], ls="--", color="grey", lw=1, label="perfect calibration")
    q = (bins["kind"] == "quantile").to_numpy()
    ax.errorbar(
        x[q],
        y[q],
        yerr=[np.maximum(y - lower, 0)[q], np.maximum(upper - y, 0)[q]],
        fmt="o",
        ms=4,
        capsize=2,
        label="equal-count bin, 95% Wilson interval",
    )
    if (~q).any():
        ax.errorbar(
            x[~q],
            y[~q],
            yerr=[np.maximum(y - lower, 0)[~q], np.maximum(upper - y, 0)[~q]],
            fmt="s",
            ms=6,
            capsize=2,
            color="tab:orange",
            label="all persons below 0.001 / above 0.999",
        )
    clipped = (bins["observed"] <= lo_lim) | (bins["observed"] >= hi_lim)
    if clipped.any():
        ax.scatter(x[clipped], y[clipped], marker="x", color="black", zorder=4, label="0% or 100%")
    for i, (xi, yi, k, n) in enumerate(zip(x, y, bins["positives"], bins["n"], strict=True)):
        text = f"{k:,}" if q[i] else f"{k:,}/{n:,}"
        offset = (4, -9 if i % 2 else 4)
        ax.annotate(text, (xi, yi), xytext=offset, textcoords="offset points", fontsize=6)
    ticks = np.array([1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999])
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(logit(ticks), [f"{t:g}" for t in ticks], fontsize=7)
    ax.set(
        xlim=(-edge - 0.5, edge + 0.5),
        ylim=(-edge - 0.5, edge + 0.5),
        xlabel=f"predicted probability, {label} (log-odds axis)",
        ylabel="observed share labelled commuter",
    )
    ax.legend(loc="upper left", fontsize=7)


def calibration(y, proba, raw_proba=None, caption: Caption = Caption(), n_bins: int = 15) -> Figure:
    """Reliability diagram: calibrated probability and, beside it, the raw booster's sigmoid."""
    # The rule baseline's score is a share of working days, not a calibrated probability.
    first = "rule score" if caption.model.startswith("rule baseline") else "calibrated"
    panels = [(first, proba)] + ([("raw booster", raw_proba)] if raw_proba is not None else [])
    fig = Figure(figsize=(max(7.0, 5.5 * len(panels)), 5.5))
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    for ax, (label, scores) in zip(axes, panels, strict=True):
        bins = reliability_bins(y, scores, n_bins)
        _reliability_panel(ax, bins, label)
        q = bins[bins["kind"] == "quantile"]
        size = f" of ~{int(q['n'].median()):,}" if len(q) else ""
        ax.set_title(
            f"{label}: {len(q)} equal-count bins{size} in [0.001, 0.999]; "
            "numbers: labelled commuters",
            fontsize=8,
        )
    fig.suptitle(caption.title("Calibration (reliability diagram)"), fontsize=10)
    fig.tight_layout()
    return fig


def threshold_tradeoff(
    y,
    proba,
    threshold: float,
    target_fpr: float,
    caption: Caption = Caption(),
    certificate: dict | None = None,
) -> Figure:
    """FPR (with its 95% upper bound) and recall against the threshold, on a log-odds axis around
    the operating point; the certified bound from the calibration part marked at the threshold."""
    y = np.asarray(y).astype(int)
    z = logit(proba)
    neg, pos = z[y == 0], z[y == 1]
    t = float(logit(threshold))
    # The region that matters: from where half the negatives pass to where half the positives fail.
    left = min(np.quantile(neg, 0.5) if len(neg) else t - 4, t - 1)
    right = max(np.quantile(pos, 0.5) if len(pos) else t + 4, t + 1)
    grid = np.unique(np.concatenate([np.linspace(left, right, 301), [t]]))
    n_neg = max(len(neg), 1)
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    fp = len(neg) - np.searchsorted(neg_sorted, grid, side="left")
    fpr = fp / n_neg
    upper = clopper_pearson_upper(fp, n_neg)
    recall = (len(pos) - np.searchsorted(pos_sorted, grid, side="left")) / max(len(pos), 1)

    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    ax.plot(grid, np.maximum(fpr, 1e-5), label="validation FPR")
    ax.plot(grid, upper, ls=":", label="validation FPR, 95% upper bound")
    ax.axhline(target_fpr, ls="--", color="grey", label=f"target {target_fpr:.2%}")
    ax.axvline(t, color="red", lw=1, label=f"threshold {threshold:.4g} (log-odds {t:.2f})")
    if certificate and "cal_fpr_upper95" in certificate:
        bound = float(certificate["cal_fpr_upper95"])
        ax.scatter(
            [t],
            [bound],
            marker="*",
            s=160,
            color="black",
            zorder=5,
            label=f"certified bound {bound:.4%} (calibration)",
        )
        if "cal_fpr" in certificate:
            ax.scatter(
                [t],
                [max(float(certificate["cal_fpr"]), 1e-5)],
                marker="o",
                s=30,
                color="black",
                zorder=5,
                label=f"calibration FPR {certificate['cal_fpr']:.4%}",
            )
        ax.annotate(
            f"margin {(target_fpr - bound) * 1e4:+.2f} per 10,000",
            (t, bound),
            xytext=(-8, 10),
            ha="right",
            textcoords="offset points",
            fontsize=8,
        )
    ax.set(yscale="log", ylim=(1e-4, 1), xlim=(left, right), ylabel="false-positive rate (log)")
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    ax.set_xlabel("threshold, log-odds of the calibrated probability")
    top = ax.secondary_xaxis("top", functions=(lambda v: v, lambda v: v))
    probs = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99, 0.999])
    inside = probs[(logit(probs) >= left) & (logit(probs) <= right)]
    top.set_ticks(logit(inside), [f"{p:g}" for p in inside], fontsize=7)
    top.set_xlabel("probability", fontsize=8)
    right_ax = ax.twinx()
    right_ax.plot(grid, recall, color="green", label="validation recall")
    right_ax.set(ylabel="recall", ylim=(0, 1.01))
    lines = ax.get_legend_handles_labels()[0] + right_ax.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], loc="lower left", fontsize=7)
    ax.set_title(caption.title("FPR and recall against threshold"), fontsize=10)
    fig.tight_layout()
    return fig


def _percent(v, _pos=None) -> str:
    return f"{v * 100:.3g}%"


def _share(v, _pos) -> str:
    return f"{v:.0%}" if v >= 0.1 or v == 0 else f"{v:.1%}"


def importance(names, gains, caption: Caption = Caption()) -> Figure:
    """Total gain per feature as a share of all gain: sorted horizontal bars, percent ticks."""
    gains = np.asarray(gains, dtype="float64")
    share = gains / gains.sum() if gains.sum() > 0 else gains
    order = np.argsort(share)
    fig = Figure(figsize=(7, 0.26 * len(share) + 1.8))
    ax = fig.subplots()
    ax.barh(np.arange(len(share)), share[order], color="tab:blue")
    ax.set_yticks(np.arange(len(share)), np.asarray(names)[order], fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(_share))
    ax.set(xlabel="share of total gain (LightGBM split gain)", ylim=(-0.6, len(share) - 0.4))
    ax.set_title(caption.title("Feature importance"), fontsize=10)
    fig.tight_layout()
    return fig


def shap_summary(names, contrib, values, caption: Caption = Caption(), top: int = 15) -> Figure:
    """Global view of what drives the model: mean |TreeSHAP contribution| per feature (left) and,
    for the `top` features, each person's contribution coloured by the rank of their value."""
    contrib = np.asarray(contrib, dtype="float64")
    values = np.asarray(values, dtype="float64")
    mean_abs = np.abs(contrib).mean(axis=0)
    order = np.argsort(mean_abs)
    shown = order[-top:]
    fig = Figure(figsize=(13, 0.3 * len(names) + 2))
    ax_bar, ax_swarm = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    ax_bar.barh(np.arange(len(order)), mean_abs[order], color="tab:purple")
    ax_bar.set_yticks(np.arange(len(order)), np.asarray(names)[order], fontsize=8)
    ax_bar.set(xlabel="mean |contribution| (log-odds)", ylim=(-0.6, len(order) - 0.4))
    ax_bar.set_title("all features", fontsize=9)
    rng = np.random.default_rng(0)
    scatter = None
    for row, j in enumerate(shown):
        col = values[:, j]
        ok = ~np.isnan(col)
        rank = np.full(len(col), np.nan)
        rank[ok] = pd.Series(col[ok]).rank(pct=True).to_numpy()
        jitter = rng.uniform(-0.3, 0.3, len(col))
        scatter = ax_swarm.scatter(
            contrib[:, j],
            row + jitter,
            c=rank,
            cmap="coolwarm",
            s=3,
            alpha=0.6,
            vmin=0,
            vmax=1,
            rasterized=True,
        )
    ax_swarm.axvline(0, color="grey", lw=1)
    ax_swarm.set_yticks(np.arange(len(shown)), np.asarray(names)[shown], fontsize=8)
    ax_swarm.set(
        xlabel="contribution to the log-odds (toward the badge >0)", ylim=(-0.6, len(shown) - 0.4)
    )
    ax_swarm.set_title(f"top {len(shown)}: one dot per person", fontsize=9)
    if scatter is not None:
        fig.colorbar(scatter, ax=ax_swarm, label="feature value (rank: low → high)", fraction=0.04)
    fig.suptitle(caption.title("What drives the model (TreeSHAP)"), fontsize=10)
    fig.tight_layout()
    return fig


def slices(
    table: pd.DataFrame, target_fpr: float, caption: Caption = Caption(), few: int = FEW
) -> Figure:
    """FPR and recall per slice as points with their 95% interval; a rate resting on fewer than
    `few` negatives (positives) is written as counts, not drawn, since its dot would mean little."""
    table = table.reset_index(drop=True)
    groups = list(dict.fromkeys(table["slice"]))
    heights = [max(int((table["slice"] == g).sum()), 1) for g in groups]
    fig = Figure(figsize=(13, 0.3 * sum(heights) + 1.2 * len(groups) + 1.5))
    axes = fig.subplots(len(groups), 2, squeeze=False, gridspec_kw={"height_ratios": heights})
    for (ax_fpr, ax_rec), group in zip(axes, groups, strict=True):
        part = table[table["slice"] == group].sort_values("value").reset_index(drop=True)
        ypos = np.arange(len(part))
        labels = [f"{v}  (n = {int(n):,})" for v, n in zip(part["value"], part["n"], strict=True)]
        _slice_panel(ax_fpr, part, ypos, "fpr", "n_neg", "false_positives", few, target_fpr)
        _slice_panel(ax_rec, part, ypos, "recall", "n_pos", "false_negatives", few, None)
        ax_fpr.set_yticks(ypos, labels, fontsize=8)
        ax_rec.set_yticks(ypos, [""] * len(ypos))
        ax_fpr.set_title(f"FPR by {group} (linear to 1%, log above)", fontsize=9)
        ax_rec.set_title(f"recall by {group}", fontsize=9)
    fig.suptitle(
        caption.title(f"Slices: rates with 95% Wilson intervals; counts where fewer than {few}"),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _slice_panel(ax, part, ypos, rate, denom, errors, few, target) -> None:
    n = part[denom].to_numpy().astype(int)
    k = part[errors].to_numpy().astype(int)
    events = k if rate == "fpr" else n - k  # false positives, or recalled positives
    enough = n >= few
    if enough.any():
        lo, hi = wilson(events[enough], n[enough])
        r = part[rate].to_numpy()[enough]
        ax.errorbar(
            r,
            ypos[enough],
            xerr=[np.maximum(r - lo, 0), np.maximum(hi - r, 0)],
            fmt="o",
            ms=4,
            capsize=2,
            color="tab:red" if rate == "fpr" else "tab:green",
        )
    for y, ni, ei, ok in zip(ypos, n, events, enough, strict=True):
        if not ok:
            what = "false positives" if rate == "fpr" else "recalled"
            of = "labelled non-commuters" if rate == "fpr" else "labelled commuters"
            ax.annotate(
                f"{ei} {what} of {ni} {of}",
                (0, y),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color="dimgrey",
            )
    if rate == "fpr":
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(FuncFormatter(_percent))
        if target is not None:
            ax.axvline(target, ls="--", color="grey")
    else:
        # Recalls of commuter slices sit near 1: start the axis just below the lowest interval.
        low = min(lo.min(), 0.9) if enough.any() else 0.0
        ax.set_xlim(max(0.0, low - 0.02), 1.005)
    ax.set_ylim(len(ypos) - 0.5, -0.5)
