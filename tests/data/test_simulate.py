"""The synthetic world generator: reproducible, contract-shaped, calendar-aware and messy."""

from __future__ import annotations

import datetime as dt
import hashlib
import pathlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from commuter_badge.features.workdays import CalendarRangeError
from commuter_badge.simulate import archetypes as catalogue
from commuter_badge.simulate.archetypes import ARCHETYPES, catalogue_before_issue_31
from commuter_badge.simulate.messiness import DOUBLE_READ_RATE, EMPTY_REGION_RATE, LABEL_NOISE
from commuter_badge.simulate.variation import WorldSettings
from commuter_badge.simulate.world import World, simulate_world, write_world

AS_OF = dt.date(2021, 10, 20)  # window holds National Day 10-01..07 and make-up days 09-26, 10-09
PERSONS = 2_000
TRIPS_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("direction", pa.string()),
        ("mode", pa.string()),
        ("site_id", pa.string()),
        ("region", pa.string()),
    ]
)


@pytest.fixture(scope="module")
def world() -> World:
    return simulate_world(PERSONS, AS_OF, seed=7)


@pytest.fixture(scope="module")
def trips(world) -> pd.DataFrame:
    """Trips with local (Asia/Shanghai) calendar day and the person's true archetype."""
    df = world.trips.to_pandas()
    df["local_day"] = df["ts"].dt.tz_convert("Asia/Shanghai").dt.date
    return df.merge(world.persons[["person_id", "archetype"]], on="person_id", how="left")


def test_same_seed_gives_identical_tables():
    # given two runs with the same arguments
    a = simulate_world(PERSONS, AS_OF, seed=11)
    b = simulate_world(PERSONS, AS_OF, seed=11)
    # then every table is identical, row order included
    assert a.trips.equals(b.trips), "same seed must give identical trips"
    assert a.labels.equals(b.labels), "same seed must give identical labels"
    assert a.persons.equals(b.persons), "same seed must give identical persons"


def _digest(world: World) -> str:
    """A fingerprint of every value of the three tables, in row order."""
    h = hashlib.sha256()
    for table in (
        world.trips,
        pa.Table.from_pandas(world.labels, preserve_index=False),
        pa.Table.from_pandas(world.persons, preserve_index=False),
    ):
        for name in table.column_names:
            column = table[name]
            if pa.types.is_timestamp(column.type):
                column = pc.cast(column, pa.int64())
            h.update(name.encode())
            h.update("\x1f".join(map(str, column.to_pylist())).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(
    ("persons", "as_of", "seed", "catalogue", "expected"),
    [
        (1500, dt.date(2021, 10, 20), 7, "before_issue_31", "05f839ee46f2897c"),
        (800, dt.date(2022, 2, 18), 20261126, "before_issue_31", "e1a42367d632368b"),
        (1500, dt.date(2021, 10, 20), 7, "default", "84d8117b419b249b"),
        (800, dt.date(2022, 2, 18), 20261126, "default", "23d9f36f39406d6f"),
    ],
)
def test_default_worlds_are_the_ones_the_features_were_measured_on(
    persons, as_of, seed, catalogue, expected
):
    # given the default settings (the digests were taken from the generator before the simulator
    # became a package: typed archetypes must not change a single value, issue 11); the default
    # catalogue changed on purpose in issue 31 (starters on every day of the window, short
    # visits), and the catalogue before it still gives the very worlds the old digests pinned
    before = WorldSettings(archetypes=catalogue_before_issue_31())
    settings = before if catalogue == "before_issue_31" else None
    world = simulate_world(persons, as_of, seed=seed, settings=settings)
    # then the world is bit-identical to the one it always was
    assert _digest(world) == expected, "default worlds changed: features would no longer match"


def test_different_seed_gives_different_world():
    # given two runs differing only in the seed
    a = simulate_world(PERSONS, AS_OF, seed=11)
    b = simulate_world(PERSONS, AS_OF, seed=12)
    # then trips and pseudonyms differ
    assert not a.trips.equals(b.trips), "different seeds must give different trips"
    shared = set(a.persons["person_id"]) & set(b.persons["person_id"])
    assert len(shared) < 5, f"pseudonyms should depend on the seed, {len(shared)} shared"


def test_trips_have_exactly_the_contract_schema(world):
    # when inspecting the trips table, then it has the 6 contract columns with their types
    assert world.trips.schema.equals(TRIPS_SCHEMA), f"unexpected schema:\n{world.trips.schema}"
    assert world.trips.num_rows > PERSONS * 10, f"too few crossings: {world.trips.num_rows}"


def test_labels_and_persons_have_the_documented_dtypes(world):
    labels, persons = world.labels, world.persons
    assert list(labels.columns) == ["person_id", "is_commuter"], f"label columns {labels.columns}"
    assert pd.api.types.is_string_dtype(labels["person_id"]), "labels.person_id must be strings"
    assert pd.api.types.is_integer_dtype(labels["is_commuter"]), "labels.is_commuter must be int"
    assert set(labels["is_commuter"].unique()) <= {0, 1}, "is_commuter must be 0/1"
    expected = [
        "person_id",
        "archetype",
        "true_commuter",
        "label_flipped",
        "home_region",
        "main_mode",
    ]
    assert list(persons.columns) == expected, f"person columns {list(persons.columns)}"
    for column in ("person_id", "archetype", "home_region", "main_mode"):
        assert pd.api.types.is_string_dtype(persons[column]), f"persons.{column} must be strings"
    assert pd.api.types.is_integer_dtype(persons["true_commuter"]), "true_commuter must be int"
    assert pd.api.types.is_bool_dtype(persons["label_flipped"]), "label_flipped must be bool"
    assert set(persons["main_mode"]) <= {"rail", "car", "bus"}, "main_mode must be a contract mode"
    assert (persons["home_region"] != "").all(), "everyone has a home region"


def test_values_are_within_the_contract(world, trips):
    assert set(trips["direction"]) == {"in", "out"}, f"directions {set(trips['direction'])}"
    assert set(trips["mode"]) == {"rail", "car", "bus"}, f"modes {set(trips['mode'])}"
    assert (trips["site_id"].str.len() > 0).all(), "site_id must never be empty"
    ids = world.persons["person_id"]
    assert ids.is_unique, "person ids must be unique"
    assert ids.str.fullmatch(r"[0-9a-f]{16}").all(), "person ids must be 16 hex chars"
    assert ids.str.match(r"[a-f]").all(), "ids start with a letter, so CSV never reads a number"
    assert set(trips["person_id"]) <= set(ids), "every trip belongs to a simulated person"


def test_ts_is_timezone_aware_utc(trips):
    assert str(trips["ts"].dt.tz) == "UTC", f"ts must be tz-aware UTC, got {trips['ts'].dt.tz}"


def test_some_trips_fall_before_the_window_and_at_or_after_as_of(trips):
    # given the default 28-day window ending at AS_OF
    window_start = AS_OF - dt.timedelta(days=28)
    # then the world also holds trips outside it, on both sides (point-in-time tests need them)
    before = (trips["local_day"] < window_start).sum()
    after = (trips["local_day"] >= AS_OF).sum()
    assert before > 100, f"expected trips before the window, got {before}"
    assert after > 100, f"expected trips at/after as_of, got {after}"


def test_true_commuter_share_matches_configuration(world):
    configured = sum(a.share for a in ARCHETYPES if a.is_commuter)
    actual = world.persons["true_commuter"].mean()
    assert abs(actual - configured) < 0.03, f"commuter share {actual:.3f} vs {configured}"
    names = {a.name for a in ARCHETYPES}
    assert set(world.persons["archetype"]) == names, "every archetype must be present"
    undocumented = [name for name in names if name not in catalogue.__doc__]
    assert not undocumented, f"archetypes missing from the module docstring: {undocumented}"


def test_labels_are_noisy_at_about_the_configured_rate(world):
    persons = world.persons
    flip_rate = persons["label_flipped"].mean()
    assert 0.0 < flip_rate < 3 * LABEL_NOISE, f"flip rate {flip_rate:.4f} vs {LABEL_NOISE}"
    labels = world.labels.set_index("person_id")["is_commuter"]
    truth = persons.set_index("person_id")
    expected = truth["true_commuter"] ^ truth["label_flipped"].astype(int)
    assert labels.loc[truth.index].equals(expected), "labels must be the truth plus the flips"


def test_no_label_noise_means_labels_equal_truth():
    world = simulate_world(500, AS_OF, seed=3, label_noise=0.0)
    assert not world.persons["label_flipped"].any(), "label_noise=0 must flip nothing"
    labels, truth = world.labels["is_commuter"], world.persons["true_commuter"]
    assert (labels.to_numpy() == truth.to_numpy()).all(), "label_noise=0 must give the true labels"


def test_labels_cover_persons_without_trips(world, trips):
    assert len(world.labels) == PERSONS, f"one label per person, got {len(world.labels)}"
    silent = set(world.labels["person_id"]) - set(trips["person_id"])
    assert silent, "some persons (e.g. business travellers) have no trips yet still get a label"


def test_daily_rail_follows_the_statutory_calendar(trips):
    # given daily rail commuters around National Day 2021
    rail = trips[trips["archetype"] == "daily_rail"]
    riders = rail["person_id"].nunique()
    # then they commute on the make-up working weekend days ...
    for makeup in (dt.date(2021, 9, 26), dt.date(2021, 10, 9)):
        on_day = rail.loc[rail["local_day"] == makeup, "person_id"].nunique()
        assert on_day > 0.8 * riders, f"only {on_day}/{riders} daily_rail commuters on {makeup}"
    # ... and not on a statutory holiday
    holiday = (rail["local_day"] == dt.date(2021, 10, 4)).sum()
    assert holiday == 0, f"{holiday} daily_rail crossings on the 2021-10-04 holiday"


def test_feed_is_messy(trips):
    # double reads: same person, site and direction within 30 s
    ordered = trips.sort_values(["person_id", "site_id", "direction", "ts"])
    same = (
        ordered[["person_id", "site_id", "direction"]].shift()
        == ordered[["person_id", "site_id", "direction"]]
    ).all(axis=1)
    gap = ordered["ts"].diff().dt.total_seconds()
    doubles = (same & (gap >= 1) & (gap <= 30)).mean()
    assert 0.3 * DOUBLE_READ_RATE < doubles < 2 * DOUBLE_READ_RATE, f"double reads {doubles:.4f}"
    empty = (trips["region"] == "").mean()
    assert 0.5 * EMPTY_REGION_RATE < empty < 2 * EMPTY_REGION_RATE, f"empty regions {empty:.4f}"
    assert not trips["ts"].is_monotonic_increasing, "rows must arrive in random order"


def test_progress_is_reported_up_to_the_total():
    calls: list[tuple[int, int]] = []
    simulate_world(200, AS_OF, seed=1, progress=lambda done, total: calls.append((done, total)))
    assert calls, "progress must be called"
    assert [done for done, _ in calls] == sorted(done for done, _ in calls), "progress is monotone"
    assert calls[-1][0] == calls[-1][1], f"last progress call must be complete, got {calls[-1]}"


def test_calendar_outside_known_years_is_a_clear_error():
    with pytest.raises(CalendarRangeError):
        simulate_world(10, dt.date(2030, 1, 10), seed=1)


def test_write_world_writes_three_files_atomically(world, tmp_path):
    # given an output directory that does not exist yet
    out = tmp_path / "nested" / "world"
    # when writing the world
    paths = write_world(world, out)
    # then the three files exist, nothing temporary is left, and they read back unchanged
    assert set(paths) == {"trips", "labels", "persons"}, f"returned keys {set(paths)}"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["labels.csv", "persons.parquet", "trips.parquet"], f"files in out dir: {names}"
    assert all(isinstance(p, pathlib.Path) for p in paths.values()), "paths must be Paths"
    assert pq.read_table(paths["trips"]).equals(world.trips), "trips.parquet must round-trip"
    labels = pd.read_csv(paths["labels"], dtype={"person_id": str})
    assert list(labels.columns) == ["person_id", "is_commuter"], f"labels.csv has {labels.columns}"
    assert np.array_equal(labels["is_commuter"], world.labels["is_commuter"]), "labels round-trip"
    assert labels["person_id"].tolist() == world.labels["person_id"].tolist(), "ids round-trip"
    persons = pq.read_table(paths["persons"]).to_pandas()
    assert len(persons) == len(world.persons), "persons.parquet must hold every person"
    # and writing again replaces the files in place
    write_world(world, out)
    assert len(list(out.iterdir())) == 3, "rewriting must not leave extra files"
