"""Review figures: each says what it shows, and draws what matters where it can be read."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.models.core.metrics import per10k
from commuter_badge.models.reporting import figures
from commuter_badge.models.reporting.figures import (
    MIN_BIN,
    Caption,
    logit,
    reliability_bins,
    wilson,
)

CAPTION = Caption("v7", "2021-10-20", 123_456, "validation persons")


def separated(n: int, seed: int = 0):
    """Scores like a strong model's: most persons confidently 0 or 1, few in between."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.42).astype(int)
    z = np.where(y == 1, rng.normal(8, 3, n), rng.normal(-9, 3, n))
    return y, 1 / (1 + np.exp(-z))


def texts(fig) -> str:
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts += [ax.get_title(), *[t.get_text() for t in ax.texts]]
    return "\n".join(parts)


def test_importing_the_figures_picks_no_backend():
    code = (
        "import sys, commuter_badge.models.reporting.figures, commuter_badge.models.reporting.report; "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported at import time'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_figure_is_titled_with_version_as_of_and_n():
    y, p = separated(5_000)
    names = [f"f{i}" for i in range(5)]
    contrib = np.random.default_rng(1).normal(size=(300, 5))
    table = pd.DataFrame(
        {
            "slice": ["main_mode"],
            "value": ["car"],
            "n": [400],
            "n_neg": [200],
            "n_pos": [200],
            "fpr": [0.01],
            "recall": [0.99],
            "false_positives": [2],
            "false_negatives": [2],
        }
    )
    drawn = [
        figures.roc(y, p, 0.05, 0.01, CAPTION),
        figures.precision_recall(y, p, 0.05, CAPTION),
        figures.calibration(y, p, p**1.2, CAPTION),
        figures.threshold_tradeoff(y, p, 0.05, 0.01, CAPTION, {"cal_fpr_upper95": 0.0098}),
        figures.importance(names, [5.0, 1, 2, 3, 4], CAPTION),
        figures.shap_summary(names, contrib, contrib, CAPTION),
        figures.slices(table, 0.01, CAPTION),
    ]
    for fig in drawn:
        shown = texts(fig)
        for part in ("v7", "as_of 2021-10-20", "n = 123,456"):
            assert part in shown, f"{part!r} missing from a figure titled {shown[:80]!r}"


def test_reliability_bins_of_a_strong_model_still_have_fifteen_points():
    # A 1M-person run once had three calibration points: quantile edges collapsed at 0 and 1.
    y, p = separated(200_000)
    bins = reliability_bins(y, p, n_bins=15)
    assert (bins["kind"] == "quantile").sum() == 15, bins
    assert bins["n"].sum() == len(y), "every person in exactly one bin"
    assert (bins["kind"] == "tail").sum() == 2, "confident persons below and above in one bin each"


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3_000),
    seed=st.integers(0, 10_000),
    n_bins=st.integers(10, 20),
    discrete=st.booleans(),
)
def test_reliability_bins_hold_counts_and_intervals(n, seed, n_bins, discrete):
    rng = np.random.default_rng(seed)
    p = rng.beta(0.3, 0.3, n)
    if discrete:  # ties, like the rule baseline's day counts
        p = np.round(p * 28) / 28
    y = (rng.random(n) < p).astype(int)
    bins = reliability_bins(y, p, n_bins=n_bins)
    assert bins["n"].sum() == n, "every person in exactly one bin"
    quantile = bins[bins["kind"] == "quantile"]
    assert len(quantile) <= n_bins, "no more bins than asked"
    middle = int(((p >= 1e-3) & (p <= 1 - 1e-3)).sum())
    if middle >= MIN_BIN:
        assert quantile["n"].min() >= MIN_BIN, "no bin on a handful of persons"
        assert quantile["n"].max() - quantile["n"].min() <= 1, "equal counts, ties split"
    eps = 1e-12
    assert (bins["lower"] <= bins["observed"] + eps).all(), "interval contains the share"
    assert (bins["observed"] <= bins["upper"] + eps).all(), "interval contains the share"


@given(k=st.integers(0, 500), extra=st.integers(0, 500))
def test_wilson_interval_contains_the_rate_inside_zero_one(k, extra):
    n = k + extra
    if n == 0:
        return
    lo, hi = wilson(k, n)
    assert 0 <= lo <= k / n + 1e-12, (lo, k, n)
    assert k / n - 1e-12 <= hi <= 1, (hi, k, n)


def test_threshold_axis_shows_the_operating_point_away_from_the_edge():
    y, p = separated(50_000)
    for threshold in (0.016, 0.06):
        fig = figures.threshold_tradeoff(
            y, p, threshold, 0.01, CAPTION, {"cal_fpr": 0.008, "cal_fpr_upper95": 0.009849}
        )
        ax = fig.axes[0]
        left, right = ax.get_xlim()
        where = (logit(threshold) - left) / (right - left)
        assert 0.1 < where < 0.9, f"threshold {threshold} drawn at {where:.0%} of the axis"
        assert "margin +1.51 per 10,000" in texts(fig), "the certificate's margin is written"
        labels = [h.get_label() for h in ax.get_legend().legend_handles]
        assert any("certified bound 0.9849%" in s for s in labels), labels


def test_importance_ticks_are_percent_shares_and_sorted():
    names = ["a", "b", "c"]
    fig = figures.importance(names, [120_000.0, 100_000.0, 140_000.0], CAPTION)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a", "c"], "sorted by gain"
    shown = ax.xaxis.get_major_formatter()(0.25, 0)
    assert shown == "25%", f"gain ticks should read as shares, got {shown!r}"


def test_small_slices_are_written_as_counts_not_drawn():
    table = pd.DataFrame(
        {
            "slice": ["archetype", "archetype"],
            "value": ["daily_rail", "truck_driver"],
            "n": [800, 300],
            "n_neg": [3, 300],
            "n_pos": [797, 0],
            "fpr": [2 / 3, 0.02],
            "recall": [0.999, np.nan],
            "false_positives": [2, 6],
            "false_negatives": [1, 0],
        }
    )
    fig = figures.slices(table, 0.01, CAPTION)
    shown = texts(fig)
    assert "2 false positives of 3 labelled non-commuters" in shown, shown
    assert "0 recalled of 0 labelled commuters" in shown, shown
    fpr_ax = fig.axes[0]
    drawn = np.concatenate([line.get_xydata()[:, 0] for line in fpr_ax.lines])
    assert not np.isclose(drawn, 2 / 3).any(), "no dot at 2/3 for a slice of three negatives"
    assert np.isclose(drawn, 0.02).any(), "the truck drivers' FPR on 300 negatives is drawn"


def test_rates_per_10000_tell_a_certificate_from_its_target():
    m = per10k({"cal_fpr_upper95": 0.009849, "cal_fpr": 0.0081}, ("fpr", "fpr_upper95"), "cal_")
    assert round(m["cal_fpr_upper95_per10k"], 2) == 98.49
    assert round(0.01 * 1e4, 2) != round(m["cal_fpr_upper95_per10k"], 2)
