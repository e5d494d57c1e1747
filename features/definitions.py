"""The model features: one definition each, a one-line description a reviewer can read as a reason.

`sql` is an expression over the per-person aggregates built in `features/sql.py`; the same text runs
in DuckDB (batch), SQLite (request time) and Spark. Integer features are BIGINT, the rest DOUBLE. A
feature that is undefined for a person (no entries, fewer than two days; a clock-time habit seen
on fewer than two days, `sql.MIN_HABIT_DAYS`) is NULL; LightGBM treats it as missing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    kind: str  # "int" or "float"
    description: str
    sql: str


def _share(num: str, den: str) -> str:
    return f"CAST({num} AS DOUBLE) / NULLIF({den}, 0)"


FEATURES: tuple[Feature, ...] = (
    # frequency
    Feature(
        "crossings",
        "frequency",
        "int",
        "boundary crossings in the window (double reads removed)",
        "p.crossings",
    ),
    Feature("active_days", "frequency", "int", "days with at least one crossing", "p.active_days"),
    Feature(
        "workdays_active",
        "frequency",
        "int",
        "working days with at least one crossing",
        "p.workdays_active",
    ),
    Feature(
        "active_days_per_week",
        "frequency",
        "float",
        "active days per week of the window",
        "CAST(p.active_days AS DOUBLE) * 7 / {window_days}",
    ),
    Feature(
        "workday_coverage",
        "frequency",
        "float",
        "share of the window's working days with a crossing",
        _share("p.workdays_active", "{n_workdays}"),
    ),
    Feature(
        "morning_entry_workdays",
        "frequency",
        "int",
        "working days with the first entry between 05:00 and 10:00",
        "p.morning_entry_workdays",
    ),
    Feature(
        "evening_exit_workdays",
        "frequency",
        "int",
        "working days with the last exit between 16:00 and 22:00",
        "p.evening_exit_workdays",
    ),
    # persistence: how steadily across the window, forgiving a week of leave
    Feature(
        "active_weeks",
        "persistence",
        "int",
        "weeks (7-day blocks back from the scoring date) with at least one crossing",
        "p.active_weeks",
    ),
    Feature(
        "span_workday_coverage",
        "persistence",
        "float",
        "share of working days with a crossing between the person's first and last crossing",
        _share("p.workdays_active", "p.span_workdays"),
    ),
    Feature(
        "active_week_workday_coverage",
        "persistence",
        "float",
        "share of working days with a crossing in the weeks the person was seen at all "
        "(a week away does not count against)",
        _share("p.workdays_active", "p.active_week_workdays"),
    ),
    # regularity
    Feature(
        "entry_hour_mean",
        "regularity",
        "float",
        "average hour of the day's first entry",
        "p.entry_hour_mean",
    ),
    Feature(
        "exit_hour_mean",
        "regularity",
        "float",
        "average hour of the day's last exit",
        "p.exit_hour_mean",
    ),
    Feature(
        "stay_hours_mean",
        "regularity",
        "float",
        "average hours from the day's first entry to its last exit, on days with both",
        "p.stay_hours_mean",
    ),
    Feature(
        "entry_hour_spread",
        "regularity",
        "float",
        "spread (standard deviation, hours) of the day's first entry time",
        "p.entry_hour_std",
    ),
    Feature(
        "exit_hour_spread",
        "regularity",
        "float",
        "spread (standard deviation, hours) of the day's last exit time",
        "p.exit_hour_std",
    ),
    Feature(
        "workday_round_trip_share",
        "regularity",
        "float",
        "share of the window's working days with an entry followed by an exit the same day",
        _share("p.workday_round_trips", "{n_workdays}"),
    ),
    Feature(
        "workday_entry_share",
        "regularity",
        "float",
        "share of the window's working days with an entry",
        _share("p.workday_entries", "{n_workdays}"),
    ),
    Feature(
        "offday_active_share",
        "regularity",
        "float",
        "share of the window's weekends and holidays with a crossing",
        _share("p.offdays_active", "{n_offdays}"),
    ),
    Feature(
        "top_weekday_share",
        "regularity",
        "float",
        "share of active days that fall on the person's most frequent weekday",
        _share("p.top_weekday_days", "p.active_days"),
    ),
    Feature(
        "entry_gap_mode",
        "regularity",
        "int",
        "most common number of days between consecutive entry days",
        "p.gap_mode",
    ),
    Feature(
        "entry_gap_regularity",
        "regularity",
        "float",
        "share of gaps between entry days equal to the most common gap",
        _share("p.gap_mode_n", "p.n_gaps"),
    ),
    Feature(
        "fri_in_sun_out_weeks",
        "regularity",
        "int",
        "weeks with an entry on Friday and an exit on Sunday",
        "p.cycles",
    ),
    # recency
    Feature(
        "days_since_last",
        "recency",
        "int",
        "days from the last crossing to the scoring date",
        "{window_days} - p.last_i",
    ),
    Feature(
        "days_since_first",
        "recency",
        "int",
        "days from the first crossing to the scoring date",
        "{window_days} - p.first_i",
    ),
    Feature(
        "recent_active_days",
        "recency",
        "int",
        "active days in the last 7 days",
        "p.recent_active_days",
    ),
    Feature(
        "recent_vs_earlier",
        "recency",
        "float",
        "active days in the last week relative to an average earlier week (1 = steady)",
        "CAST(p.recent_active_days AS DOUBLE) / "
        "(CAST(p.active_days - p.recent_active_days AS DOUBLE) * 7 / ({window_days} - 7) + 1)",
    ),
    # diversity
    Feature("n_sites", "diversity", "int", "distinct stations and checkpoints used", "a.n_sites"),
    Feature(
        "n_regions",
        "diversity",
        "int",
        "distinct outside regions connected to",
        "a.n_regions",
    ),
    Feature("n_modes", "diversity", "int", "distinct modes used (rail, car, bus)", "a.n_modes"),
    Feature(
        "top_site_share",
        "diversity",
        "float",
        "share of crossings at the most used site",
        _share("a.top_site_n", "p.crossings"),
    ),
    Feature(
        "rail_share",
        "diversity",
        "float",
        "share of crossings by train",
        _share("a.n_rail", "p.crossings"),
    ),
    Feature(
        "bus_share",
        "diversity",
        "float",
        "share of crossings by coach or bus",
        _share("a.n_bus", "p.crossings"),
    ),
    # guards against frequent non-commuters
    Feature(
        "crossings_per_active_day",
        "guard",
        "float",
        "crossings per active day",
        _share("p.crossings", "p.active_days"),
    ),
    Feature(
        "night_share",
        "guard",
        "float",
        "share of crossings between 22:00 and 05:00",
        _share("p.n_night", "p.crossings"),
    ),
    Feature(
        "entry_exit_imbalance",
        "guard",
        "float",
        "difference between entries and exits as a share of crossings",
        "CAST(abs(p.n_in - p.n_out) AS DOUBLE) / NULLIF(p.crossings, 0)",
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
DESCRIPTIONS: dict[str, str] = {f.name: f.description for f in FEATURES}
# Context columns written beside the features: used for slicing metrics, never by the model.
CONTEXT_COLUMNS: tuple[str, ...] = ("main_mode", "main_region")
