"""Properties every feature row must have, on random small sets of trips (hypothesis).

(a) row order never matters; (b) double reads never matter; (c) the zone a timestamp is written in
never matters; (d) nothing at or after as_of matters; (e) files (CSV, Parquet, a mixed directory)
and the in-memory path give the same frame.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commuter_badge.features.build import build_features, features_from_trips
from commuter_badge.features.schema import DIRECTIONS, MODES
from tests.code.tripdata import NOV_AS_OF, SH, UTC, assert_same_features, write_csv, write_parquet

PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,  # nothing written outside tests/code
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
PERSONS = ["p1", "p2", "p3"]
SITES = ["CK-G1-XIJI", "CK-G4-A", "RL-WUQING"]
REGIONS = ["", "langfang-xianghe", "tianjin-wuqing"]
ZONES = [
    UTC,
    dt.timezone(dt.timedelta(hours=-5)),
    dt.timezone(dt.timedelta(hours=9, minutes=30)),
    dt.timezone(dt.timedelta(hours=5, minutes=45)),
    ZoneInfo("America/New_York"),
    SH,
]
FILE_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=25)  # these also write and read files
SPACING = 600  # base reads of one person/direction/site are at least 10 minutes apart
LAST_SECOND = (
    86400 - 120
)  # copies +1..119 s stay on the same local day, so on the same side of every edge

raw_trip = st.tuples(
    st.sampled_from(PERSONS),
    st.integers(-31, 1),  # local day relative to as_of; the window is -28 .. -1
    st.integers(0, LAST_SECOND - 1),  # second of the local day
    st.sampled_from([0, 0, 0, 250_000, 999_999]),  # microseconds (sub-second instants floor alike)
    st.sampled_from(DIRECTIONS),
    st.sampled_from(MODES),
    st.sampled_from(SITES),
    st.sampled_from(REGIONS),
)


def to_rows(raw: list[tuple]) -> list[dict]:
    """Raw tuples -> contract rows (Shanghai-local ts), same-key reads >= SPACING apart."""
    rows = []
    for pid, day, second, micro, direction, mode, site, region in raw:
        local = dt.datetime.combine(NOV_AS_OF + dt.timedelta(days=day), dt.time(), tzinfo=SH)
        ts = local + dt.timedelta(seconds=second, microseconds=micro)
        rows.append(
            {
                "person_id": pid,
                "ts": ts,
                "direction": direction,
                "mode": mode,
                "site_id": site,
                "region": region,
            }
        )
    rows.sort(key=lambda r: (r["person_id"], r["direction"], r["site_id"], r["ts"]))
    kept, last = [], {}
    for r in rows:
        key = (r["person_id"], r["direction"], r["site_id"])
        if key not in last or (r["ts"] - last[key]).total_seconds() >= SPACING:
            kept.append(r)
            last[key] = r["ts"]
    return kept


trip_rows = st.lists(raw_trip, max_size=30).map(to_rows)


def features(rows: list[dict]):
    """In-memory features, one (person_id, [trip]) pair per row, in the given order."""
    persons = [(r["person_id"], [{k: v for k, v in r.items() if k != "person_id"}]) for r in rows]
    return features_from_trips(persons, NOV_AS_OF)


@PROPERTY_SETTINGS
@given(rows=trip_rows, data=st.data())
def test_row_order_never_matters(rows, data):
    # given random trips and a random reordering of them
    shuffled = data.draw(st.permutations(rows), label="shuffled")
    # when features are computed from both
    # then they are the same
    assert_same_features(features(shuffled), features(rows), "shuffled rows")


@PROPERTY_SETTINGS
@given(rows=trip_rows, data=st.data())
def test_double_reads_never_matter(rows, data):
    # given random trips and, for some of them, one or two extra reads 1..119 s later
    # (same person, direction, site, mode and region: the scanner reading the crossing again)
    extra = []
    for r in rows:
        delays = data.draw(st.lists(st.integers(1, 119), max_size=2, unique=True), label="delays")
        extra += [{**r, "ts": r["ts"] + dt.timedelta(seconds=s)} for s in delays]
    order = data.draw(st.permutations(rows + extra), label="order")
    # when features are computed with and without the double reads
    # then nothing changes
    assert_same_features(features(order), features(rows), f"{len(extra)} double reads added")


@FILE_SETTINGS
@given(rows=trip_rows, data=st.data())
def test_time_zone_of_the_timestamp_never_matters(rows, data):
    # given the same instants in random zones (UTC, -05:00, +09:30, +05:45, New York, Shanghai)
    zones = data.draw(
        st.lists(st.sampled_from(ZONES), min_size=len(rows), max_size=len(rows)), label="zones"
    )
    moved = [{**r, "ts": r["ts"].astimezone(z)} for r, z in zip(rows, zones, strict=True)]
    want = features(rows)
    # when features are computed in memory and from a CSV holding those offsets
    with tempfile.TemporaryDirectory() as tmp:
        from_csv = build_features(write_csv(Path(tmp) / "t.csv", moved), NOV_AS_OF)
    # then nothing changes
    assert_same_features(features(moved), want, "in-memory, other zones")
    assert_same_features(from_csv, want, "CSV, other offsets")


@PROPERTY_SETTINGS
@given(
    rows=trip_rows,
    late=st.lists(
        st.tuples(
            st.sampled_from([*PERSONS, "p9"]),
            st.integers(0, 3),
            st.integers(0, 86399),
            st.sampled_from(DIRECTIONS),
            st.sampled_from(MODES),
            st.sampled_from(SITES),
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_trips_at_or_after_as_of_never_matter(rows, late):
    # given random trips plus trips at or after as_of 00:00 local (and a person seen only then)
    later = []
    for pid, day, second, direction, mode, site in late:
        ts = dt.datetime.combine(NOV_AS_OF + dt.timedelta(days=day), dt.time(), tzinfo=SH)
        later.append(
            {
                "person_id": pid,
                "ts": ts + dt.timedelta(seconds=second),
                "direction": direction,
                "mode": mode,
                "site_id": site,
                "region": "late-region",
            }
        )
    # when features are computed with and without them
    # then nothing changes (point-in-time correctness)
    assert_same_features(
        features(rows + later), features(rows), f"{len(later)} trips at/after as_of"
    )


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
@FILE_SETTINGS
@given(rows=trip_rows, data=st.data())
def test_files_and_memory_agree(rows, data):
    # given random trips written to a Parquet file, a CSV file, and split over a nested directory
    want = features(rows)
    in_csv = data.draw(
        st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)), label="split"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pq_file = write_parquet(root / "all.parquet", rows)
        csv_file = write_csv(root / "all.csv", rows)
        write_csv(root / "mixed" / "a.csv", [r for r, c in zip(rows, in_csv, strict=True) if c])
        write_parquet(
            root / "mixed" / "sub" / "b.parquet",
            [r for r, c in zip(rows, in_csv, strict=True) if not c],
        )
        # when features are built from each
        got = {
            "parquet": build_features(pq_file, NOV_AS_OF),
            "csv": build_features(csv_file, NOV_AS_OF),
            "mixed directory": build_features(root / "mixed", NOV_AS_OF),
        }
    # then each equals the in-memory frame
    for what, frame in got.items():
        assert_same_features(frame, want, what)
