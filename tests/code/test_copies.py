"""Weekday copies (features/copies.py) and where training puts them (models/core/fitting.py `split`)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from commuter_badge.features.build import features_from_trips
from commuter_badge.features.copies import COPY_PREFIX, copies_sql, weekday_copies
from commuter_badge.features.read import register_trips
from commuter_badge.features.sql import Window
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import Labelled
from commuter_badge.models.core.fitting import COPY_PART, split
from tests.code.test_features import NOV_WORKDAYS
from tests.code.tripdata import NOV_AS_OF, SH, assert_same_features, flat_rows, trip, write_parquet


def _round_trips(days, in_h=7, out_h=18):
    return [t for d in days for t in (trip(d, in_h), trip(d, out_h, direction="out"))]


def _night_shifts(days):  # in at 21:30, out the next morning at 06:30
    return [
        t
        for d in days
        for t in (trip(d, 21, 30), trip(d + dt.timedelta(days=1), 6, 30, direction="out"))
    ]


def _copy_rows(path, as_of=NOV_AS_OF) -> pd.DataFrame:
    """The copies' crossings themselves, with local day and weekday."""
    con = duckdb.connect()
    register_trips(con, path, "trips")
    ids = pd.DataFrame(
        {"person_id": con.sql("SELECT DISTINCT person_id FROM trips").df()["person_id"]}
    )
    con.register("ids", ids)
    rows = con.sql(copies_sql("trips", Window(as_of), "ids")).df()
    rows["local"] = pd.to_datetime(rows["t"], unit="s", utc=True).dt.tz_convert(SH)
    rows["weekday"] = rows["local"].dt.dayofweek
    return rows


NIGHTS = [d for d in NOV_WORKDAYS if d.weekday() < 4]  # Monday to Thursday nights


@pytest.fixture
def persons():
    return [
        ("daily", _round_trips(NOV_WORKDAYS)),
        ("night", _night_shifts(NIGHTS)),
        # two weekdays only: a copy would be the person again
        ("tue_thu", _round_trips([d for d in NOV_WORKDAYS if d.weekday() in (1, 3)])),
        # three weekdays, one visit each: a copy would have fewer than three visits
        (
            "three",
            _round_trips([dt.date(2021, 11, 8), dt.date(2021, 11, 9), dt.date(2021, 11, 10)]),
        ),
    ]


def test_a_copy_keeps_two_or_three_weekdays_of_whole_visits(tmp_path, persons):
    # a crossing at as_of itself is outside the window and must not reach a copy
    late = ("daily", [trip(NOV_AS_OF, 8)])
    path = write_parquet(tmp_path / "t.parquet", flat_rows([*persons, late]))
    rows = _copy_rows(path)
    # then only the daily commuter and the night shift have copies
    assert sorted(rows["person_id"].unique()) == [COPY_PREFIX + "daily", COPY_PREFIX + "night"]
    assert rows["local"].max() < pd.Timestamp(NOV_AS_OF, tz=SH)
    daily = rows[rows["person_id"] == COPY_PREFIX + "daily"]
    kept = set(daily["weekday"])
    assert 2 <= len(kept) <= 3
    assert kept <= {0, 1, 2, 3, 4}
    # and every working day on a kept weekday is there whole, an entry and an exit
    expected = [d for d in NOV_WORKDAYS if d.weekday() in kept]
    assert len(daily) == 2 * len(expected)
    # a night shift's visit belongs to the evening it began: each entry keeps its next-morning exit
    night = rows[rows["person_id"] == COPY_PREFIX + "night"].sort_values("t")
    assert (night["direction"].to_numpy()[::2] == "in").all()
    assert (night["direction"].to_numpy()[1::2] == "out").all()
    entry_days = set(night.loc[night["direction"] == "in", "weekday"])
    assert 2 <= len(entry_days) <= 3


def test_copy_features_are_the_feature_query_on_the_kept_crossings(tmp_path, persons):
    path = write_parquet(tmp_path / "t.parquet", flat_rows(persons))
    got = weekday_copies(path, NOV_AS_OF, pd.Series(["daily", "night", "tue_thu", "three"]))
    rows = _copy_rows(path)
    kept = rows.groupby("person_id")["weekday"].agg(set)
    kept_night = set(
        rows.query("person_id == @COPY_PREFIX + 'night' and direction == 'in'")["weekday"]
    )
    # what a copy should be: the same person's visits that began on the kept weekdays
    want = features_from_trips(
        [
            (
                COPY_PREFIX + "daily",
                _round_trips(
                    [d for d in NOV_WORKDAYS if d.weekday() in kept[COPY_PREFIX + "daily"]]
                ),
            ),
            (
                COPY_PREFIX + "night",
                _night_shifts([d for d in NIGHTS if d.weekday() in kept_night]),
            ),
        ],
        NOV_AS_OF,
    )
    assert got["copy_of"].tolist() == ["daily", "night"]
    assert_same_features(got.drop(columns="copy_of"), want, "copies")
    # the same input gives the same copies
    again = weekday_copies(path, NOV_AS_OF, pd.Series(["daily", "night", "tue_thu", "three"]))
    pd.testing.assert_frame_equal(got, again)
    # only the persons asked for are copied
    only = weekday_copies(path, NOV_AS_OF, pd.Series(["night"]))
    assert only["copy_of"].tolist() == ["night"]


def _labelled(n: int = 400) -> Labelled:
    ids = [f"p{i:04d}" for i in range(n)]
    frame = pd.DataFrame({"person_id": ids, "is_commuter": [i % 2 for i in range(n)]})
    frame["crossings"] = 1
    copies = pd.DataFrame({"person_id": [COPY_PREFIX + i for i in ids], "copy_of": ids})
    copies["crossings"] = 2
    return Labelled(frame, 0, 0, "digest", as_of=NOV_AS_OF, copies=copies)


def test_only_fit_persons_are_copied_and_the_held_out_parts_do_not_change():
    data = _labelled()
    config = TrainConfig(copy_weight=0.3)
    with_copies = split(data, config)
    without = split(dataclasses.replace(data, copies=None), config)
    copies = with_copies[with_copies["part"] == COPY_PART]
    fit_ids = set(without.loc[without["part"] == "fit", "person_id"])
    # then each copy is of a fit person, with that person's label
    assert set(copies["copy_of"]) == fit_ids
    labels = without.set_index("person_id")["is_commuter"]
    assert (copies["is_commuter"].to_numpy() == labels[copies["copy_of"]].to_numpy()).all()
    # and the early-stopping, certificate and validation persons are exactly as without copies
    for part in ("early_stop", "calibration", "validation"):
        a = with_copies[with_copies["part"] == part].drop(columns="copy_of")
        b = without[without["part"] == part]
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    # copy_weight 0, the default, adds none
    off = split(data, config.model_copy(update={"copy_weight": 0.0}))
    assert (off["part"] != COPY_PART).all()


@pytest.mark.slow  # > 10 s: make test only, not the edit loop (make test-fast)
def test_training_with_copies_certifies_on_the_same_persons(tmp_path):
    from commuter_badge.models.core.data import labelled_features
    from commuter_badge.models.core.fitting import fit_and_evaluate
    from commuter_badge.simulate import simulate_world, write_world

    as_of = dt.date(2021, 11, 20)
    paths = write_world(simulate_world(3000, as_of, seed=5), tmp_path / "w")
    data = labelled_features(paths["trips"], paths["labels"], as_of, copies=True)
    plain = fit_and_evaluate(data, TrainConfig())
    copied = fit_and_evaluate(data, TrainConfig(copy_weight=0.3))
    parts = copied.data["part"].value_counts()
    # then the copies are in the trees' data, a copy for most fit persons
    assert parts[COPY_PART] > 0.5 * parts["fit"]
    # the certificate counts the same calibration negatives, validation the same persons
    assert copied.certificate["cal_negatives"] == plain.certificate["cal_negatives"]
    assert copied.val["person_id"].tolist() == plain.val["person_id"].tolist()
    # and the copies changed the trees
    assert not np.allclose(copied.val["proba"], plain.val["proba"])
