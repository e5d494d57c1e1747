"""Helpers for the feature tests: trips by hand, writing them as CSV/Parquet, comparing frames."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from commuter_badge.features.definitions import FEATURES

SH = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
NOV_AS_OF = dt.date(
    2021, 11, 26
)  # window 2021-10-29 .. 2021-11-25: 20 working days, 8 weekend days
INT_FEATURES = [f.name for f in FEATURES if f.kind == "int"]
FLOAT_FEATURES = [f.name for f in FEATURES if f.kind == "float"]

Persons = list[tuple[str, list[dict]]]


def trip(
    day: dt.date | str,
    hour: int,
    minute: int = 0,
    second: int = 0,
    *,
    direction: str = "in",
    mode: str = "car",
    site_id: str = "CK-G1-XIJI",
    region: str = "langfang-xianghe",
    tz: dt.tzinfo = SH,
) -> dict:
    """One crossing at wall-clock time `day hour:minute:second` in `tz` (default Shanghai)."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    ts = dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=tz)
    return {"ts": ts, "direction": direction, "mode": mode, "site_id": site_id, "region": region}


def flat_rows(persons: Iterable[tuple[str, Iterable[Mapping]]]) -> list[dict]:
    """Persons in the `features_from_trips` shape -> flat contract rows (person_id first)."""
    return [{"person_id": pid, **t} for pid, trips in persons for t in trips]


def iso(ts: dt.datetime) -> str:
    """ISO 8601 with offset, `Z` for UTC (both spellings are in the contract's spirit)."""
    text = ts.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") and ts.tzinfo is UTC else text


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write rows as CSV; `ts` values that are datetimes become ISO 8601 text with their offset."""
    columns = columns or ["person_id", "ts", "direction", "mode", "site_id", "region"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (iso(v) if isinstance(v, dt.datetime) else v) for k, v in r.items()})
    return path


def write_parquet(
    path: Path,
    rows: list[dict],
    ts_type: pa.DataType | None = None,
    columns: list[str] | None = None,
) -> Path:
    """Write rows as Parquet with `ts` as timestamp[us, tz=UTC] (or `ts_type`)."""
    columns = columns or ["person_id", "ts", "direction", "mode", "site_id", "region"]
    ts_type = ts_type or pa.timestamp("us", tz="UTC")
    data = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        if c == "ts" and (not values or isinstance(values[0], dt.datetime)):
            if ts_type.tz is None:
                values = [v.astimezone(UTC).replace(tzinfo=None) for v in values]
            data[c] = pa.array(values, ts_type)
        else:
            data[c] = pa.array(values, pa.string())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data), path)
    return path


def assert_same_features(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    """Same persons, same values exactly. Every float feature is computed row by row from integer
    aggregates, so engines and runs agree to the last bit."""
    assert list(got.columns) == list(want.columns), f"{what}: columns differ: {list(got.columns)}"
    assert got["person_id"].tolist() == want["person_id"].tolist(), (
        f"{what}: persons differ: {got['person_id'].tolist()} vs {want['person_id'].tolist()}"
    )
    got = got.reset_index(drop=True)
    want = want.reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got[["person_id", *INT_FEATURES, "main_mode", "main_region"]],
        want[["person_id", *INT_FEATURES, "main_mode", "main_region"]],
        check_exact=True,
        obj=f"{what} (ints/context)",
    )
    pd.testing.assert_frame_equal(
        got[FLOAT_FEATURES], want[FLOAT_FEATURES], check_exact=True, obj=f"{what} (floats)"
    )


def one(frame: pd.DataFrame, person_id: str) -> pd.Series:
    """The single feature row of `person_id`."""
    rows = frame[frame["person_id"] == person_id]
    assert len(rows) == 1, (
        f"expected one row for {person_id!r}, got {len(rows)}: {frame['person_id'].tolist()}"
    )
    return rows.iloc[0]
