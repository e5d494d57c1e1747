"""The same feature SQL on SQLite (request time) and DuckDB (batch) gives the same rows."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commuter_badge.features.build import features_from_trips
from tests.code.test_feature_properties import PROPERTY_SETTINGS, raw_trip, to_rows
from tests.code.tripdata import NOV_AS_OF, assert_same_features

# Unlike the property tests, reads of one key may fall close together here: both engines must
# apply the double-read rule identically, not merely ignore copies.
close_rows = st.lists(raw_trip, max_size=40).map(
    lambda raw: sorted(to_rows(raw) + to_rows(raw[::2]), key=lambda r: r["ts"])
)


# Window 2022-01-21 .. 2022-02-17: the Spring Festival, its make-up weekend and holiday edges.
FESTIVAL_AS_OF = dt.date(2022, 2, 18)


def run(rows, engine, as_of=NOV_AS_OF):
    persons = [(r["person_id"], [{k: v for k, v in r.items() if k != "person_id"}]) for r in rows]
    return features_from_trips(persons, as_of, engine=engine)


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
@PROPERTY_SETTINGS
@given(rows=close_rows, shift=st.integers(0, 119))
def test_sqlite_and_duckdb_agree(rows, shift):
    # given random trips, some re-read within the double-read window
    moved = [{**r, "ts": r["ts"] + dt.timedelta(seconds=shift)} for r in rows[::3]]
    rows = rows + moved
    # when the request-time engine and the batch engine run the feature SQL
    # then every feature of every person is the same
    assert_same_features(run(rows, "sqlite"), run(rows, "duckdb"), "sqlite vs duckdb")


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
@PROPERTY_SETTINGS
@given(rows=close_rows)
def test_sqlite_and_duckdb_agree_over_the_spring_festival(rows):
    # given random trips moved into a window holding a long holiday and a make-up weekend
    shift = FESTIVAL_AS_OF - NOV_AS_OF
    rows = [{**r, "ts": r["ts"] + shift} for r in rows]
    # then both engines agree there too (holiday-edge and calendar-week masks included)
    assert_same_features(
        run(rows, "sqlite", FESTIVAL_AS_OF), run(rows, "duckdb", FESTIVAL_AS_OF), "festival"
    )


def test_auto_picks_duckdb_for_large_inputs(monkeypatch):
    from commuter_badge.features import build

    monkeypatch.setattr(build, "SQLITE_MAX_TRIPS", 0)
    rows = to_rows([("p1", -3, 25_000, 0, "in", "car", "CK-G1-XIJI", "")])
    assert len(run(rows, "auto")) == 1, "DuckDB path returns the person too"
