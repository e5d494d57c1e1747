"""benchmarks/quality_bench.py: its worlds differ from the training world, its oracle holds its FPR."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from commuter_badge.simulate import ARCHETYPES, UNSEEN_KINDS, simulate_world

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "quality_bench.py"
_SPEC = importlib.util.spec_from_file_location("quality_bench", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
sys.modules["quality_bench"] = bench  # dataclasses look their module up while it runs
_SPEC.loader.exec_module(bench)


def test_every_world_builds_and_differs_from_the_training_world():
    # given the benchmark's world list at a tiny size
    persons = 300
    train = simulate_world(persons, bench.ORDINARY_TRAIN, bench.TRAIN_SEED)
    worlds = bench.unseen_worlds(lambda n: simulate_world(n, bench.ORDINARY_TEST, 7))
    trained_kinds = set(train.persons["archetype"])
    # when each is made
    made = {w.name: w.make(persons) for w in worlds}
    # then every world has persons of both truths, and each holds what its name promises
    for name, world in made.items():
        assert world.persons["true_commuter"].nunique() == 2, f"{name}: one truth class only"
        assert len(world.persons) == persons, name
    unseen = set(made["unseen_kinds"].persons["archetype"]) - trained_kinds
    assert unseen, "no unseen kind in unseen_kinds"
    assert unseen <= {k.name for k in UNSEEN_KINDS}, f"unexpected kinds {unseen}"
    assert "festival_visitor" in set(made["spring_festival"].persons["archetype"])
    assert {w.kind for w in worlds if w.name == "spring_festival"} == {"holiday"}
    default = {a.name: a for a in ARCHETYPES}
    for seed in bench.TEST.perturb_seeds:
        perturbed = bench.WorldSettings().perturbed(seed, bench.SPREAD).archetypes
        assert any(a != default[a.name] for a in perturbed), f"perturbed_{seed} equals default"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=2, max_size=400),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.001, 0.01, 0.2]),
)
def test_oracle_threshold_never_passes_more_negatives_than_allowed(proba, seed, fpr):
    # given scores with truth drawn at random (ties included: many equal floats)
    rng = np.random.default_rng(seed)
    proba = np.round(np.array(proba), 2)
    truth = rng.integers(0, 2, len(proba))
    if truth.min() == truth.max():
        truth[0], truth[-1] = 0, 1
    # when the oracle threshold is chosen on these negatives
    recall, achieved = bench.oracle_recall(truth, proba, fpr)
    # then its FPR is within the budget and the recall a proportion
    assert achieved <= fpr + 1e-12, f"FPR {achieved} over {fpr}"
    assert 0.0 <= recall <= 1.0


def test_plain_reference_counts_what_its_names_say():
    # given a week of a weekly commuter and one crossing outside the window, local times +08:00
    import datetime as dt

    import pyarrow as pa

    reference = sys.modules["plain_reference"]
    local = [
        ("2021-10-08T07:10:00", "in"),  # Friday morning, in
        ("2021-10-08T07:10:02", "in"),  # the same crossing read twice (a plain count keeps it)
        ("2021-10-10T18:30:00", "out"),  # Sunday evening, out
        ("2021-10-11T06:50:00", "in"),  # Monday morning, in
        ("2021-10-11T17:00:00", "out"),  # Monday evening, out
        ("2021-10-20T08:00:00", "in"),  # as_of itself: outside the window
    ]
    ts = [dt.datetime.fromisoformat(t + "+08:00") for t, _ in local]
    trips = pa.table(
        {
            "person_id": ["p"] * len(local),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "direction": [d for _, d in local],
            "mode": ["rail", "rail", "rail", "car", "car", "car"],
            "site_id": ["RL-WUQING"] * 3 + ["CK-G1-XIJI"] * 3,
            "region": ["tianjin-wuqing"] * 6,
        }
    )
    # when the 21 counts are taken as of 2021-10-20 (window 09-22 .. 10-19)
    row = reference.counts(trips, dt.date(2021, 10, 20)).set_index("person_id").loc["p"]
    # then each is what its name says of these five crossings on three days
    assert len(reference.COLUMNS) == 21
    expected = {
        "crossings": 5,
        "entries": 3,
        "exits": 2,
        "active_days": 3,
        "morning_entry_days": 2,
        "evening_exit_days": 2,
        "weekday_active_days": 2,
        "weekend_active_days": 1,
        "friday_entries": 1,
        "sunday_exits": 1,
        "monday_entries": 1,
        "friday_exits": 0,
        "active_weeks": 2,  # Fri-Sun is one calendar week, Monday the next
        "first_active_day": 16,  # 10-08 is the 17th day from 09-22
        "last_active_day": 19,
        "round_trip_days": 1,  # only Monday has an entry before an exit
        "n_sites": 2,
        "rail_crossings": 3,
        "night_crossings": 0,
    }
    assert {k: row[k] for k in expected} == expected
