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
