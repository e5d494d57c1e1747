"""Feature drift across windows the calendar treats differently (pure).

A window holding National Day has 17 working days where November's has 20, so every count of
working days moves (PSI 0.3-1.4 on an unchanged simulated population) without anything being
wrong. Across calendars each feature is therefore compared as one of three kinds:

- **per working day** (`PER_DAY`): counts of working days (or of crossings, or of days off) are
  turned into rates over the window's own count, on both sides: a person with c of D working days
  becomes (c + U) / (D + 1), U uniform on [0, 1). The jitter spreads each count over its own
  stretch of the rate, so 9 of 17 and 11 of 20 land where they belong instead of on bin edges
  chosen for another denominator (the reference's decile edges of 17ths cut 20ths arbitrarily).
  Shares already over the window's working days (`workday_coverage`, ...) are turned back into
  counts first. The reference keeps 5,000 raw values per feature and its window's calendar, so
  references stored before this change are re-expressed the same way;
- **calendar-free** (every other feature not listed below): hours of the day, sites, modes, shares
  of crossings, counts of 7-day blocks; compared as they are;
- **calendar-bound** (`CALENDAR_BOUND`): weekly patterns and recency, which move with which
  weekdays the holidays take and where the window's edges fall; reported, never alarmed across
  calendars.

What is left after normalising is behaviour the calendar changes (commuters on leave around a long
holiday, weekend visitors who do not come on holidays): those PSIs are small but not zero, which is
why their limit is their own (`Thresholds.feature_psi_per_day`, chosen in
benchmarks/monitor_bench.py); calendar-free features keep the limit of same-calendar windows.
"""

from __future__ import annotations

import numpy as np

from commuter_badge.models.core.reference import bin_counts, bin_edges

# feature -> (what it counts, how it is stored): "working" days, "off" days (weekends and
# holidays); stored as a "count", a "share" of that count, or "per_week" (active days * 7 / days)
PER_DAY: dict[str, tuple[str, str]] = {
    "crossings": ("working", "count"),
    "active_days": ("working", "count"),
    "active_days_per_week": ("working", "per_week"),
    "workdays_active": ("working", "count"),
    "morning_entry_workdays": ("working", "count"),
    "evening_exit_workdays": ("working", "count"),
    "workday_coverage": ("working", "share"),
    "workday_round_trip_share": ("working", "share"),
    "workday_entry_share": ("working", "share"),
    "offday_active_share": ("off", "share"),
}
# Which weekdays a holiday takes and where the window's edges fall move these (0.07-0.48 on an
# unchanged population between an October and a November window, and a January and a February).
CALENDAR_BOUND = frozenset(
    {
        "span_workday_coverage",
        "active_week_workday_coverage",
        "top_weekday_share",
        "entry_gap_regularity",
        "fri_in_sun_out_weeks",
        "days_since_last",
        "days_since_first",
        "recent_active_days",
        "recent_vs_earlier",
        "entry_exit_imbalance",
    }
)


def kind(name: str) -> str:
    """How the feature is compared across calendars: per_day, calendar_free or calendar_bound."""
    if name in PER_DAY:
        return "per_day"
    return "calendar_bound" if name in CALENDAR_BOUND else "calendar_free"


def per_day(name: str, values: np.ndarray, calendar: dict, rng: np.random.Generator) -> np.ndarray:
    """The feature's finite values as jittered rates over the window's own days (module docstring)."""
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    what, stored = PER_DAY[name]
    days = (
        calendar["working_days"]
        if what == "working"
        else calendar["days"] - calendar["working_days"]
    )
    if stored == "share":
        counts = np.rint(values * days)
    elif stored == "per_week":
        counts = np.rint(values * calendar["days"] / 7)
    else:
        counts = values
    return (counts + rng.random(len(counts))) / (days + 1)


def per_day_psi(
    name: str,
    reference_sample: list[float],
    reference_calendar: dict,
    values: np.ndarray,
    calendar: dict,
    psi,
    seed: int = 0,
) -> float:
    """PSI of the month's per-day rates over the decile bins of the reference's."""
    rng = np.random.default_rng(seed)
    ref = per_day(name, np.asarray(reference_sample), reference_calendar, rng)
    cur = per_day(name, values, calendar, rng)
    if not len(ref) or not len(cur):
        return float("nan")
    edges = bin_edges(ref)
    return psi(bin_counts(ref, edges)[:-1], bin_counts(cur, edges)[:-1])
