"""Judging an unlabelled month against a model's training reference (pure; no MLflow).

What is compared (the reference is models/core/reference.py's, from the validation persons):
- each feature's distribution: PSI over the reference's decile bins (missing values a bin of their
  own) and the two-sample Kolmogorov–Smirnov test on capped samples (scipy `ks_2samp`);
- the calibrated scores' distribution: PSI over ten equal-width probability bins, and KS;
- the share of persons given a badge against the reference's;
- the FPR and recall the month should have if the calibration still holds: confidence-based
  performance estimation (CBPE, as NannyML does). As there, p is the model's score calibrated once
  more on the reference persons' labels (an isotonic curve stored with the reference: the model's
  own Platt curve is too coarse in the top tail where the badge is decided). Each person with
  probability p counts as p of a commuter and 1 - p of a non-commuter, so
      expected false positives = sum of (1 - p) over badge holders,
      expected non-commuters   = sum of (1 - p) over everyone,
      estimated FPR    = expected FP / expected non-commuters,
      estimated recall = sum of p over badge holders / sum of p over everyone.
  This assumes the calibration is intact under the shift: P(commuter | features) is the same as in
  training and only the mix of features moved (covariate shift). New kinds of people the model
  never saw break that assumption, and then the estimate is too low. The labels are noisy, so
  what is estimated is the FPR against labels like the training ones (README: how far it was off in
  simulation); the drift figures are what flag such a month. A version certified under label
  noise rho (`--param label_noise=RATE`) has its estimate restated against the truth as its
  certificate was (the commuters labelled 0 taken off: models/core/threshold.py `against_truth`);
  `estimated_fpr_labels` keeps the figure against labels.
Between windows the calendar treats alike (the same counts of working days, weekdays off and
make-up weekend days: features/workdays.py `window_calendar`) each feature is compared as it is.
Across calendars (a month after National Day has three more working days than October's window, so
every day-count feature moves, PSI 0.1-1.4 on an unchanged population) each feature is compared
calendar-normalised: counts of working days as rates per working day, calendar-free features as
they are, weekly patterns reported only (models/core/calendar_drift.py), under their own limit.
The label-free estimates carry a sampling band (`band`): where the month's figure lies, at the
band's confidence, if the calibration holds; the estimate and badge-share checks alarm only when
the whole band is beyond their limit. Every check reports its margin to the limit both ways:
positive, the room left before an alarm; negative, how far past the limit it is.
An alarm is raised with one reason per crossed limit (`Thresholds`, chosen by simulation in
benchmarks/monitor_bench.py on DEV seeds and checked on TEST seeds; docs/guide/between-months.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from commuter_badge.errors import CommuterError
from commuter_badge.features.definitions import DESCRIPTIONS, FEATURE_NAMES
from commuter_badge.models.core import calendar_drift
from commuter_badge.models.core.reference import SAMPLE_CAP, bin_counts, score_histogram
from commuter_badge.models.core.threshold import against_truth

PSI_FLOOR = 1e-4  # an empty bin counts as this share, so PSI stays finite
# Fewest persons a month needs to be judged at all. Sampling alone moves a feature's PSI over the
# reference's 10 decile bins by about 9/n (PSI·n is roughly chi-square with 9 degrees of freedom),
# against an alarm line of 0.03 (Thresholds.feature_psi). Drawn from the reference itself (4,000
# draws each): at 500 persons 9.2% of features cross the line, so one of 32 alarming features
# almost surely does (95%); at 1,000 none of 4,000 did (chi-square: 0.04% per feature, about 1% for
# any of 32). Below this the figures say nothing about drift (one person read "recall nan").
MIN_PERSONS = 1_000


class MonitorError(CommuterError, ValueError):
    """A month the monitor cannot judge; the message says why and what to do."""


# Day counts from the window's edges move with the weekday of as_of: a weekly pattern seen from a
# Saturday and from a Monday is the same population, yet these two features' PSI is ~0.8 between
# two months of one simulated population (and between two independent ones). The coverage over
# calendar weeks seen moves too (the window's first and last weeks are partial, by as much as
# the weekday says: PSI 0.084 between those two months). They are reported but raise no alarm on
# their own (benchmarks/monitor_bench.py).
CALENDAR_PHASE = frozenset({"days_since_first", "days_since_last", "active_week_workday_coverage"})


@dataclass(frozen=True)
class Thresholds:
    """When the monitor alarms (any one suffices). Each limit is the largest value its check
    reached on the unchanged months of DEV seeds 0-3 (three month pairs, two of them across
    calendars) times 1.2, rounded up (benchmarks/monitor_bench.py `choose`; the ratios' distance
    from 1 on the log scale, at least x1.05); TEST seeds 4-7 report the rates
    (docs/guide/between-months.md)."""

    # a feature's PSI above this (across calendars: the calendar-free features'); DEV: 0.034
    feature_psi: float = 0.042
    # across calendars, a day count's PSI per working day above this (models/core/calendar_drift.py:
    # what the calendar changes in behaviour stays in them); DEV: 0.124
    feature_psi_per_day: float = 0.15
    # the scores' PSI over ten equal-width bins; DEV: 0.021, so 0.026 by the rule, kept at the
    # earlier 0.03: a 12,000-person world's smaller reference read 0.028 on an unchanged month
    score_psi: float = 0.03
    # across calendars the scores move with the day counts without a badge changing; DEV: 0.265
    score_psi_across_calendars: float = 0.32
    # the badge share's band wholly above this multiple of the reference's (or below 1/x)
    badge_share_ratio: float = 1.05
    # the estimated FPR's band wholly above this multiple of the target; DEV band edge: 1.82
    estimated_fpr_over_target: float = 2.2
    # the estimated FPR's band wholly above this multiple of the reference's own estimate; DEV
    # band edge: 1.44
    estimated_fpr_ratio: float = 1.56
    band_z: float = 1.96  # the bands' half-width in standard errors (two-sided 95%)


def psi(expected: list[int] | np.ndarray, actual: list[int] | np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    if e.sum() == 0 or a.sum() == 0:
        return float("nan")
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def score_psi(reference_histogram: list[int], histogram: list[int]) -> float:
    """PSI of the scores over ten equal-width probability bins (the 50-bin histograms summed by 5).

    Not over score deciles: most persons score near 0, so deciles sit at 1e-4, 1e-3, ..., and a
    shift of tiny probabilities that decides nothing (a weekday phase moving day-count features,
    see CALENDAR_PHASE) would read as a large PSI."""
    fold = len(reference_histogram) // 10
    a = np.asarray(reference_histogram).reshape(10, fold).sum(axis=1)
    b = np.asarray(histogram).reshape(10, fold).sum(axis=1)
    return psi(a, b)


def ks(reference_sample: list[float], sample: np.ndarray) -> tuple:
    """KS statistic and p-value of the reference's sample against the month's (finite values)."""
    current = sample[np.isfinite(sample)]
    if not reference_sample or not len(current):
        return float("nan"), float("nan")
    test = ks_2samp(reference_sample, current, method="asymp")  # exact is slow at n = 5,000
    return float(test.statistic), float(test.pvalue)


def distribution_drift(entry: dict, values: np.ndarray, rows: np.ndarray) -> dict:
    """PSI over the reference's bins; KS on the month's persons `rows` (a capped sample)."""
    counts = bin_counts(values, entry["edges"])
    statistic, pvalue = ks(entry["sample"], values[rows])
    n_ref, n_cur = sum(entry["counts"]), max(len(values), 1)
    return {
        "psi": psi(entry["counts"], counts),
        "ks_statistic": statistic,
        "ks_pvalue": pvalue,
        "missing_share": counts[-1] / n_cur,
        "reference_missing_share": entry["counts"][-1] / n_ref if n_ref else float("nan"),
    }


def label_rate(reference: dict, proba: np.ndarray) -> np.ndarray:
    """P(commuter label | score) by the reference's isotonic curve (models/core/reference.py)."""
    curve = reference["label_rate"]
    return np.interp(np.asarray(proba, dtype="float64"), curve["x"], curve["y"])


def cbpe(p: np.ndarray, badge: np.ndarray, label_noise: float = 0.0) -> dict[str, float]:
    """Estimated FPR and recall from calibrated probabilities `p` alone (module docstring).

    `p` is the rate of commuter labels, so the plain estimate is an FPR against labels; under a
    version's label noise the expected counts are restated against the truth as its certificate
    counts them (models/core/threshold.py `against_truth`), and that is `estimated_fpr`."""
    p, badge = np.asarray(p, dtype="float64"), np.asarray(badge, dtype=bool)
    negatives, positives = float((1 - p).sum()), float(p.sum())
    false_pos = float((1 - p)[badge].sum())
    fp_truth, neg_truth = against_truth(
        false_pos, negatives, float(p[badge].sum()), positives, label_noise
    )
    return {
        "estimated_fpr": fp_truth / neg_truth if negatives else float("nan"),
        "estimated_fpr_labels": false_pos / negatives if negatives else float("nan"),
        "estimated_recall": float(p[badge].sum()) / positives if positives else float("nan"),
        "expected_false_positives": fp_truth,
        "expected_noncommuters": neg_truth,
        "expected_commuters": positives,
    }


def cbpe_band(p: np.ndarray, badge: np.ndarray) -> dict[str, float]:
    """Standard errors of the month's FPR and recall (against labels) around the CBPE estimate.

    If the calibration holds, each person is a non-commuter with probability 1 - p, independently,
    so the month's realised FPR = sum over badge holders of (1 - y) / sum of (1 - y) varies around
    the estimate R with variance ~ sum of p (1 - p) (badge - R)^2 / (sum of (1 - p))^2 (the delta
    method for a ratio of sums; recall likewise with y and p). This is the band NannyML draws from
    chunks of the reference, computed here for the month's own persons."""
    p, badge = np.asarray(p, dtype="float64"), np.asarray(badge, dtype="float64")
    q = 1 - p
    out = {}
    for name, weight in (("fpr", q), ("recall", p)):
        total = float(weight.sum())
        rate = float((weight * badge).sum()) / total if total else float("nan")
        var = float(np.sum(p * q * (badge - rate) ** 2)) / total**2 if total else float("nan")
        out[f"{name}_se"] = float(np.sqrt(var))
    return out


def share_log_se(share: float, n: int) -> float:
    """Standard error of log(share) for a binomial share of n persons (delta method)."""
    if not 0 < share < 1 or n <= 0:
        return float("nan")
    return float(np.sqrt((1 - share) / (share * n)))


def check(
    name: str, value: float, low: float, high: float, limit: float, two_sided: bool = False
) -> dict:
    """One alarm check: the value, its band, the limit, and the margins both ways (positive: room
    left before the limit; negative: how far beyond it). Two-sided checks (a ratio) alarm beyond
    `limit` or below 1 / `limit`; the band's nearer edge decides."""
    if two_sided:
        margin = min(limit - value, value - 1 / limit)
        band_margin = min(limit - low, high - 1 / limit)
    else:
        margin, band_margin = limit - value, limit - low
    return {
        "check": name,
        "value": value,
        "band": [low, high],
        "limit": limit,
        "two_sided": two_sided,
        "margin": margin,
        "band_margin": band_margin,
        "alarm": bool(band_margin < 0),
    }


def estimate_checks(
    est: dict, se: dict, reference: dict, target_fpr: float, t: Thresholds
) -> list[dict]:
    """The estimated FPR against its limit over the target and against the reference's own
    estimate (`reference_estimate`, with its band), alarming on the bands."""
    value, scale = est["estimated_fpr"], _truth_scale(est)
    half = t.band_z * se["fpr_se"] * scale
    limit = t.estimated_fpr_over_target * target_fpr
    checks = [check("estimated_fpr", value, value - half, value + half, limit)]
    ref = reference_estimate(reference)
    if ref["estimated_fpr_labels"] > 0 and est["estimated_fpr_labels"] > 0:
        ratio = est["estimated_fpr_labels"] / ref["estimated_fpr_labels"]
        log_se = np.hypot(
            se["fpr_se"] / est["estimated_fpr_labels"],
            ref["fpr_se"] / ref["estimated_fpr_labels"],
        )
        z = t.band_z * log_se
        checks.append(
            check(
                "estimated_fpr_ratio",
                ratio,
                ratio * np.exp(-z),
                ratio * np.exp(z),
                t.estimated_fpr_ratio,
            )
        )
    return checks


def _truth_scale(est: dict) -> float:
    """The band of the FPR against labels restated against the truth, in proportion."""
    labels = est["estimated_fpr_labels"]
    return est["estimated_fpr"] / labels if labels > 0 else 1.0


def reference_estimate(reference: dict) -> dict[str, float]:
    """CBPE on the reference's own scores (its stored sample: every validation person up to
    5,000), with its band: what a month like the reference would estimate."""
    sample = np.asarray(reference["scores"]["sample"], dtype="float64")
    p, badge = label_rate(reference, sample), sample >= float(reference["threshold"])
    return {**cbpe(p, badge), **cbpe_band(p, badge), "n": len(sample)}


def badge_check(share: float, n: int, ref_share: float, ref_n: int, t: Thresholds) -> dict:
    """The badge share over the reference's, with the band of both shares' sampling."""
    ratio = share / ref_share if ref_share > 0 else float("inf")
    z = t.band_z * np.hypot(share_log_se(share, n), share_log_se(ref_share, ref_n))
    z = z if np.isfinite(z) else 0.0
    return check(
        "badge_share_ratio",
        ratio,
        ratio * np.exp(-z),
        ratio * np.exp(z),
        t.badge_share_ratio,
        two_sided=True,
    )


@dataclass(frozen=True)
class MonitorResult:
    as_of: str
    model_version: str
    n: int
    reference_n: int
    target_fpr: float
    threshold: float
    estimated_fpr: float
    estimated_recall: float
    badge_share: float
    reference_badge_share: float
    score_psi: float
    score_ks_statistic: float
    score_ks_pvalue: float
    features: list[dict]
    alarm: bool
    alarm_reasons: list[str]
    thresholds: dict
    estimates: dict = field(default_factory=dict)
    assumptions: str = (
        "estimated FPR and recall assume the calibration still holds (covariate shift only: "
        "P(commuter | features) as in training); new kinds of behaviour break it and the "
        "estimate then runs low; their bands are the month's sampling under that assumption"
    )
    score_histogram: list[int] = field(default_factory=list)
    reference_score_histogram: list[int] = field(default_factory=list)
    # The two windows' calendars and how features were compared (`compare_features`, `note`).
    calendar: dict = field(default_factory=dict)
    # One entry per alarm check: value, band, limit, margin both ways (models/core/monitor.py `check`)
    checks: list[dict] = field(default_factory=list)

    def report(self) -> dict:
        """The `--report` JSON (docs/contract.md §5 fields first)."""
        out = asdict(self)
        head = (
            "alarm",
            "alarm_reasons",
            "checks",
            "estimated_fpr",
            "estimated_recall",
            "badge_share",
            "reference_badge_share",
            "calendar",
            "features",
        )
        ordered = {**{k: out[k] for k in head}, **{k: v for k, v in out.items() if k not in head}}
        return _json_safe(ordered)

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow (per-feature PSI under `psi.<feature>`; each check's value,
        band and margins under `<check>`, `<check>.band_low`, ..., `<check>.margin`)."""
        compared = [f for f in self.features if f["alarms"]]
        m = {
            "estimated_fpr": self.estimated_fpr,
            "estimated_recall": self.estimated_recall,
            "estimated_fpr_per10k": self.estimated_fpr * 1e4,
            "badge_share": self.badge_share,
            "reference_badge_share": self.reference_badge_share,
            "score_psi": self.score_psi,
            "score_ks_statistic": self.score_ks_statistic,
            "n_persons": float(self.n),
            "alarm": float(self.alarm),
            "n_alarm_reasons": float(len(self.alarm_reasons)),
            "max_feature_psi": max((f["psi_compared"] for f in compared), default=float("nan")),
            "feature_psi.margin": min((f["margin"] for f in compared), default=float("nan")),
            **{k: float(v) for k, v in self.estimates.items()},
        }
        for c in self.checks:
            name = c["check"]
            m[name] = c["value"]
            m[f"{name}.band_low"], m[f"{name}.band_high"] = c["band"]
            m[f"{name}.margin"], m[f"{name}.band_margin"] = c["margin"], c["band_margin"]
        for f in self.features:
            m[f"psi.{f['name']}"] = f["psi"]
            m[f"ks.{f['name']}"] = f["ks_statistic"]
            if f["psi_compared"] != f["psi"]:
                m[f"psi_per_day.{f['name']}"] = f["psi_compared"]
        return m


def _json_safe(value):
    """NaN and infinities as null, so the report is strict JSON for any script."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


_CHECK_WORDS = {
    "estimated_fpr": "estimated FPR {value:.3%} (band {low:.3%}-{high:.3%}) is above {limit:.3%}",
    "estimated_fpr_ratio": "estimated FPR x{value:.2f} the reference's own estimate (band "
    "x{low:.2f}-x{high:.2f}) is above x{limit:g}",
    "badge_share_ratio": "badge share x{value:.3f} the reference's (band x{low:.3f}-x{high:.3f}) "
    "is beyond x{limit:g} either way",
    "score_psi": "score distribution shifted: PSI {value:.3f} > {limit:g}",
}


def alarm_reasons(checks: list[dict], features: list[dict]) -> list[str]:
    """One line per crossed limit, each with its margin (how far beyond the limit)."""
    reasons = []
    for c in checks:
        if c["alarm"]:
            low, high = c["band"]
            text = _CHECK_WORDS[c["check"]].format(
                value=c["value"], low=low, high=high, limit=c["limit"]
            )
            reasons.append(f"{text} (margin {c['band_margin']:+.4g})")
    for f in sorted(features, key=lambda f: f["margin"]):
        if f["alarms"] and f["margin"] < 0:
            how = "per working day, " if f["compared_as"] == "per_day" else ""
            reasons.append(
                f"feature {f['name']} ({f['description']}) drifted: {how}PSI "
                f"{f['psi_compared']:.3f} > {f['limit']:g} (margin {f['margin']:+.3f})"
            )
    return reasons


def calendar_comparison(reference: dict | None, month: dict | None) -> dict:
    """Whether the windows' calendars match (one unknown: as if they did, as references stored
    before calendars were); if not, features are compared calendar-normalised."""
    same = reference is None or month is None or reference == month
    out: dict = {"reference": reference, "month": month, "compare_features": True, "same": same}
    if not same:
        out["note"] = (
            "the month's window has another calendar than the reference's "
            f"({month['working_days']} working days, {month['weekdays_off']} weekdays off, "
            f"{month['weekend_working_days']} make-up weekend days against "
            f"{reference['working_days']}, {reference['weekdays_off']} and "
            f"{reference['weekend_working_days']}): day counts are compared per working day, "
            "weekly patterns reported without alarm (models/core/calendar_drift.py)"
        )
    return out


def feature_drift(
    reference: dict,
    frame: pd.DataFrame,
    rows: np.ndarray,
    calendars: dict,
    t: Thresholds,
    seed: int,
) -> list[dict]:
    """Each feature's drift, and what its alarm compares: the PSI itself between windows of one
    calendar; across calendars the per-working-day PSI, the PSI, or nothing (calendar_drift)."""
    features = []
    for k, name in enumerate(FEATURE_NAMES):
        entry, values = reference["features"][name], frame[name].to_numpy(dtype="float64")
        drift = distribution_drift(entry, values, rows)
        how, compared, limit = "as_is", drift["psi"], t.feature_psi
        if not calendars["same"]:
            how = calendar_drift.kind(name)
            if how == "per_day":
                limit = t.feature_psi_per_day
                compared = calendar_drift.per_day_psi(
                    name, entry["sample"], calendars["reference"], values, calendars["month"],
                    psi, seed + k,
                )  # fmt: skip
        alarms = name not in CALENDAR_PHASE and how != "calendar_bound"
        features.append(
            {
                "name": name,
                "description": DESCRIPTIONS[name],
                **drift,
                "compared_as": how if alarms else "reported only",
                "psi_compared": compared,
                "limit": limit,
                "margin": limit - compared if alarms else float("nan"),
                "alarms": alarms,
            }
        )
    return features


def monitor(
    reference: dict,
    frame: pd.DataFrame,
    proba: np.ndarray,
    *,
    threshold: float,
    target_fpr: float,
    as_of: str = "",
    model_version: str = "",
    thresholds: Thresholds | None = None,
    calendar: dict[str, int] | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
) -> MonitorResult:
    """The month `frame` (features) with its calibrated `proba`, judged against `reference`;
    `calendar` is the month's window calendar (features/workdays.py `window_calendar`);
    `label_noise` the rate the version was certified under (its policy)."""
    t = thresholds or Thresholds()
    calendars = calendar_comparison(reference.get("calendar"), calendar)
    # One capped sample of persons for every KS test: the same persons throughout, drawn once.
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(frame), min(len(frame), SAMPLE_CAP), replace=False))
    features = feature_drift(reference, frame, rows, calendars, t, seed)
    proba = np.asarray(proba, dtype="float64")
    scores = distribution_drift(reference["scores"], proba, rows)
    p, badge = label_rate(reference, proba), proba >= threshold
    estimates = cbpe(p, badge, label_noise)
    badge_share = float(np.mean(badge)) if len(proba) else float("nan")
    ref_share = float(reference["badge_share"])
    shift = score_psi(reference["scores"]["histogram"], score_histogram(proba))
    score_limit = t.score_psi if calendars["same"] else t.score_psi_across_calendars
    checks = [
        *estimate_checks(estimates, cbpe_band(p, badge), reference, target_fpr, t),
        badge_check(badge_share, len(proba), ref_share, int(reference["n"]), t),
        check("score_psi", shift, shift, shift, score_limit),
    ]
    reasons = alarm_reasons(checks, features)
    return MonitorResult(
        as_of=as_of,
        model_version=model_version,
        n=len(frame),
        reference_n=int(reference["n"]),
        target_fpr=target_fpr,
        threshold=threshold,
        estimated_fpr=estimates["estimated_fpr"],
        estimated_recall=estimates["estimated_recall"],
        badge_share=badge_share,
        reference_badge_share=ref_share,
        score_psi=shift,
        score_ks_statistic=scores["ks_statistic"],
        score_ks_pvalue=scores["ks_pvalue"],
        features=features,
        alarm=bool(reasons),
        alarm_reasons=reasons,
        thresholds=asdict(t),
        estimates={
            "label_noise": label_noise,
            **{k: v for k, v in estimates.items() if k.startswith(("expected_", "estimated_fpr_"))},
        },
        score_histogram=score_histogram(proba),
        reference_score_histogram=list(reference["scores"]["histogram"]),
        calendar=calendars,
        checks=checks,
    )
