"""The service's request features (serving/request_features.py) are the batch path's numbers."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from commuter_badge.features.build import features_from_trips, model_matrix
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.serving import request_features as rf
from tests.code.test_feature_properties import PROPERTY_SETTINGS, raw_trip, to_rows
from tests.code.tripdata import NOV_AS_OF

WINDOW_DAYS = 28


def persons_of(rows):
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["person_id"], []).append({k: v for k, v in r.items() if k != "person_id"})
    return list(by.items())


def assert_same(persons, what):
    want = features_from_trips(persons, NOV_AS_OF, window_days=WINDOW_DAYS, engine="duckdb")
    ids, frame = rf.request_features(persons, NOV_AS_OF, WINDOW_DAYS, con=None)
    assert ids == want["person_id"].tolist(), f"{what}: persons differ: {ids}"
    assert list(frame.columns) == list(FEATURE_NAMES), f"{what}: columns differ"
    got, expected = model_matrix(frame), model_matrix(want)
    assert got.dtype == expected.dtype == np.float64, f"{what}: {got.dtype}"
    assert np.array_equal(got, expected, equal_nan=True), f"{what}: matrices differ"


@PROPERTY_SETTINGS
@given(raw=st.lists(raw_trip, max_size=40))
def test_request_features_equal_the_batch_matrix(raw):
    # given random persons' trips, some outside the window, some persons with none in it
    persons = persons_of(to_rows(raw))
    # when the service reads its matrix off the SQLite engine
    # then the persons, their order and every value (NaN where missing) are the batch path's
    assert_same(persons, "sqlite fast path")


@PROPERTY_SETTINGS
@given(raw=st.lists(raw_trip, min_size=1, max_size=20))
def test_large_requests_take_duckdb_with_the_same_numbers(raw):
    # given a request above the SQLite limit (the limit lowered to none)
    persons = persons_of(to_rows(raw))
    original = rf.SQLITE_MAX_TRIPS
    rf.SQLITE_MAX_TRIPS = 0
    try:
        # then the DuckDB path answers the same matrix
        assert_same(persons, "duckdb path")
    finally:
        rf.SQLITE_MAX_TRIPS = original


def test_no_crossings_in_the_window_gives_no_rows():
    # given one person whose only trip is after as_of
    persons = persons_of(to_rows([("p1", 1, 3600, 0, "in", "car", "CK-G1-XIJI", "")]))
    # then no row, and an empty matrix of every feature
    ids, frame = rf.request_features(persons, NOV_AS_OF, WINDOW_DAYS, con=None)
    assert ids == [], f"nobody has crossings in the window: {ids}"
    assert frame.shape == (0, len(FEATURE_NAMES)), f"empty matrix of all features: {frame.shape}"
