"""Month sequences: the same persons month after month, some starting or stopping commuting."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.simulate import (
    UNSEEN_KINDS,
    DriftSettings,
    monthly_as_ofs,
    simulate_months,
    simulate_world,
    write_months,
)

AS_OFS = monthly_as_ofs(dt.date(2021, 10, 20), 3)
PERSONS = 4_000


@pytest.fixture(scope="module")
def months():
    return simulate_months(PERSONS, AS_OFS, seed=9)


def _persons(world) -> pd.DataFrame:
    return world.persons.set_index("person_id")


def test_first_month_is_the_plain_world_and_same_seed_same_months(months):
    first = simulate_world(PERSONS, AS_OFS[0], seed=9)
    assert list(months) == AS_OFS, f"one world per as_of, in order: {list(months)}"
    assert months[AS_OFS[0]].trips.equals(first.trips), "month 1 is simulate_world's world"
    assert months[AS_OFS[0]].persons.equals(first.persons), "month 1 persons as simulate_world"
    again = simulate_months(PERSONS, AS_OFS[:2], seed=9)
    assert again[AS_OFS[1]].trips.equals(months[AS_OFS[1]].trips), "same seed, same months"
    assert again[AS_OFS[1]].labels.equals(months[AS_OFS[1]].labels), "same seed, same labels"


def test_person_ids_persist_across_months(months):
    ids = [tuple(w.persons["person_id"]) for w in months.values()]
    assert all(x == ids[0] for x in ids), "every month holds the same persons, in the same order"
    assert len(set(ids[0])) == PERSONS, "ids are unique"
    a, b = (_persons(months[d]) for d in AS_OFS[:2])
    same_kind = a["archetype"] == b["archetype"]
    kept = (a["home_region"] == b["home_region"])[same_kind].mean()
    assert kept == 1.0, f"persons of unchanged kind keep their home ({kept:.3f})"
    assert not months[AS_OFS[0]].trips.equals(months[AS_OFS[1]].trips), "behaviour is redrawn"


def test_starters_and_stoppers_change_truth_and_labels(months):
    a, b = (_persons(months[d]) for d in AS_OFS[:2])
    stopped = (a["true_commuter"] == 1) & (b["archetype"] == "stopped_commuting")
    started = (a["true_commuter"] == 0) & (b["archetype"] == "new_job")
    # then about the catalogue's shares stop (4%) and start (2%)
    assert 0.03 * PERSONS < stopped.sum() <= 0.04 * PERSONS, f"{stopped.sum()} stoppers"
    assert 0.015 * PERSONS < started.sum() <= 0.02 * PERSONS, f"{started.sum()} starters"
    assert (b.loc[stopped, "true_commuter"] == 0).all(), "stoppers are no longer commuters"
    assert (b.loc[started, "true_commuter"] == 1).all(), "starters are commuters"
    la, lb = (months[d].labels.set_index("person_id")["is_commuter"] for d in AS_OFS[:2])
    unflipped = ~a["label_flipped"] & ~b["label_flipped"]
    assert (la[stopped & unflipped] == 1).all(), "stoppers were labelled commuters"
    assert (lb[stopped & unflipped] == 0).all(), "stoppers are labelled non-commuters next month"
    assert (lb[started & unflipped] == 1).all(), "starters are labelled commuters next month"
    # and last month's starters settle into daily commuting, its stoppers into rare visits
    c = _persons(months[AS_OFS[2]])
    settled = c.loc[b["archetype"] == "new_job", "archetype"]
    assert settled.isin(["daily_rail", "daily_car_dawn"]).all(), f"settled: {set(settled)}"
    gone = c.loc[stopped, "archetype"]
    assert (gone == "occasional_visitor").all(), f"former commuters became {set(gone)}"


def test_without_drift_the_mix_is_the_catalogues_every_month(months):
    mixes = [w.persons["archetype"].value_counts().sort_index() for w in months.values()]
    for m in mixes[1:]:
        assert m.equals(mixes[0]), f"an undrifted month must keep the mix:\n{m - mixes[0]}"


def test_drift_changes_the_mix_and_brings_new_kinds():
    drift = DriftSettings(mix={"hospital_carer": 3.0}, new_kinds=UNSEEN_KINDS[:3])
    worlds = simulate_months(PERSONS, AS_OFS[:2], seed=9, drift=drift)
    before, after = (w.persons["archetype"].value_counts(normalize=True) for w in worlds.values())
    assert after["hospital_carer"] > 2.4 * before["hospital_carer"], "hospital carers tripled"
    for kind in UNSEEN_KINDS[:3]:
        assert kind.name not in before, f"{kind.name} must not be in the first month"
        assert after[kind.name] == pytest.approx(kind.share, abs=0.003), f"{kind.name} share"
    assert abs(after.sum() - 1) < 1e-9, "everyone has a kind"
    ids = [tuple(w.persons["person_id"]) for w in worlds.values()]
    assert ids[0] == ids[1], "drift keeps the same persons"


def test_more_churn_more_stoppers():
    worlds = simulate_months(PERSONS, AS_OFS[:2], seed=9, drift=DriftSettings(churn=2.0))
    a, b = (_persons(w) for w in worlds.values())
    stopped = ((a["true_commuter"] == 1) & (b["true_commuter"] == 0)).sum()
    assert stopped > 0.07 * PERSONS, f"churn 2 should double the stoppers, got {stopped}"


def test_as_ofs_must_increase():
    with pytest.raises(ValueError, match="increasing order"):
        simulate_months(10, [AS_OFS[1], AS_OFS[0]], seed=1)


def test_monthly_as_ofs_clamps_to_the_month_end():
    got = monthly_as_ofs(dt.date(2021, 12, 31), 3)
    assert got == [dt.date(2021, 12, 31), dt.date(2022, 1, 31), dt.date(2022, 2, 28)], got


def test_write_months_writes_one_directory_per_as_of(months, tmp_path):
    paths = write_months(months, tmp_path / "world")
    assert sorted(p.name for p in (tmp_path / "world").iterdir()) == [d.isoformat() for d in AS_OFS]
    for day, files in paths.items():
        assert pq.read_table(files["trips"]).equals(months[day].trips), f"{day} trips round-trip"


def test_commuter_simulate_months_writes_each_month_under_its_as_of(tmp_path):
    # when asking the command line for two months of the same 300 persons
    out = tmp_path / "world"
    args = ["simulate", "--persons", "300", "--seed", "3", "--as-of", "2021-10-20"]
    result = CliRunner().invoke(app, [*args, "--months", "2", "--out", str(out)])
    # then each month has its own directory, the same persons, and the first is the plain world
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["2021-10-20", "2021-11-20"], result.output
    first, second = (
        pq.read_table(out / d / "persons.parquet").to_pandas() for d in ("2021-10-20", "2021-11-20")
    )
    assert first["person_id"].tolist() == second["person_id"].tolist(), "persons persist"
    plain = simulate_world(300, dt.date(2021, 10, 20), seed=3)
    assert pq.read_table(out / "2021-10-20" / "trips.parquet").equals(plain.trips), "month 1"
