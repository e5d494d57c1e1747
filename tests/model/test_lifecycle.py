"""The model lifecycle on a real MLflow store: promotion rules, rollback, metadata, concurrency, tuning."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import AS_OF

pytestmark = pytest.mark.slow
NEXT_AS_OF = AS_OF + dt.timedelta(days=28)
FAST = {"max_rounds": 150}  # small worlds need few rounds; keeps each training short
GATE_VALUES = {"True", "False", "skipped"}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    from commuter_badge.simulate.world import simulate_world, write_world

    root = tmp_path_factory.mktemp("lifecycle")
    # Clean labels: these tests are about the registry's moves. With noisy labels, a 5,000-person
    # month can have more mislabelled commuters among its ~800 certificate negatives than a 1%
    # bound allows, and its threshold then sits inside the commuters' scores (docs/guide/training.md, "Label noise").
    write_world(simulate_world(5_000, AS_OF, seed=41, label_noise=0.0), root / "m1")
    write_world(simulate_world(5_000, NEXT_AS_OF, seed=42, label_noise=0.0), root / "m2")
    return root


def _train(world: Path, as_of: dt.date, **kwargs):
    from commuter_badge.models.core.config import TrainConfig
    from commuter_badge.models.runs.train import train

    promote = kwargs.pop("promote", True)
    tune = kwargs.pop("tune", 0)
    config = TrainConfig(**{**FAST, **kwargs})
    return train(
        world / "trips.parquet", world / "labels.csv", as_of, config, promote=promote, tune=tune
    )


def _version(client: MlflowClient, v: str):
    return client.get_model_version("commuter-badge", v)


def _champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias("commuter-badge", "champion").version)


def test_scripted_sequence_of_promotions_and_a_rollback(worlds, isolated_stores):
    from commuter_badge.models.runs import promotion

    client = MlflowClient(tracking_uri=isolated_stores, registry_uri=isolated_stores)
    m1, m2 = worlds / "m1", worlds / "m2"
    # Given a 1% champion,
    first = _train(m1, AS_OF)
    assert first.promoted, f"first certified version must become champion: {first.decision}"
    # when a 2% candidate is trained on the same month, it is refused for its policy;
    loose = _train(m1, AS_OF, target_fpr=0.02)
    assert not loose.promoted, "a looser target took over silently"
    assert str(loose.gates["policy_matches_champion"]) == "False", loose.gates
    assert str(loose.gates["recall_not_worse_than_champion"]) == "skipped", loose.gates
    # an identical retrain (registered only) is a tie on the same data, and `promote` refuses it;
    same = _train(m1, AS_OF, promote=False)
    assert not same.promoted, same.decision
    assert "--no-promote" in same.decision, same.decision
    assert _champion(client) == first.version, "--no-promote touched the alias"
    refused = promotion.promote(same.version)
    assert not refused.moved, "an identical retrain was promoted"
    assert str(refused.decision.gates["newer_data_on_tie"]) == "False", refused.decision.gates
    # a newer month under the same policy is promoted;
    newer = _train(m2, NEXT_AS_OF)
    assert newer.promoted, f"newer month refused: {newer.decision}"
    _check_descriptions(client, first, loose, newer)
    # the 2% version goes in only with a stated policy change, recorded on it;
    with_reason = promotion.promote(loose.version, policy_change="board decision: 2% for 2021-12")
    assert with_reason.moved, with_reason.summary()
    tags = _version(client, loose.version).tags
    assert tags["policy_change_reason"] == "board decision: 2% for 2021-12", tags
    assert tags["previous_champion"] == newer.version, tags
    assert _version(client, newer.version).tags["replaced_by"] == loose.version
    # and a rollback puts the newer-month version back, recorded on both versions.
    left, restored = promotion.rollback()
    assert (left, restored) == (loose.version, newer.version), (left, restored)
    assert _champion(client) == newer.version, "rollback did not move the alias"
    assert _version(client, loose.version).tags["rolled_back_to"] == newer.version
    assert _version(client, newer.version).tags["rollback_from"] == loose.version
    history = client.get_registered_model("commuter-badge").tags["champion_history"]
    assert history == (
        f"{first.version}:train,{newer.version}:train,{loose.version}:promote,"
        f"{newer.version}:rollback"
    ), history
    for result in (first, loose, same, newer):
        gates = {
            k: v for k, v in _version(client, result.version).tags.items() if k.startswith("gate.")
        }
        assert len(gates) == 5, gates
        assert set(gates.values()) <= GATE_VALUES, gates


def _check_descriptions(client: MlflowClient, good, bad, compared) -> None:
    """Each version carries the contract's tags, a description and a model card; a refused one
    is visibly marked; the run logs every config value and the champion comparison."""
    for result in (good, bad):
        mv = _version(client, result.version)
        for tag in (
            "as_of",
            "target_fpr",
            "cal_fpr_upper95",
            "certificate",
            "val_recall",
            "val_fpr",
            "data_digest",
            "git_commit",
            "package_version",
        ):
            assert mv.tags.get(tag), f"version {mv.version} lacks tag {tag}: {mv.tags}"
        assert float(mv.tags["cal_fpr_upper95"]) == pytest.approx(result.certified_fpr_upper)
        text = Path(client.download_artifacts(result.run_id, "model_card.md")).read_text()
        for heading in ("Intended use", "Data window", "Certificate", "Slices", "Whom it gets"):
            assert heading in text, f"model card lacks '{heading}'"
        assert "commuter rollback" in text, "model card does not say how to roll back"
    assert _version(client, bad.version).description.startswith("GATES FAILED"), "not marked"
    assert _version(client, bad.version).tags["gates_passed"] == "False"
    assert _version(client, good.version).description.startswith("Gates passed")
    assert client.get_registered_model("commuter-badge").description, "model has no description"
    run = client.get_run(bad.run_id)
    assert run.data.params["feature_fraction"] == "0.9"
    assert "share_validation" in run.data.params
    assert "champion_val_fpr" not in run.data.metrics, "policies differ: nothing compared"
    metrics = client.get_run(compared.run_id).data.metrics
    assert {"champion_val_fpr", "champion_val_recall"} <= set(metrics), metrics


def test_two_trainings_at_once_on_a_fresh_store_end_with_one_champion(worlds, tmp_path):
    # Given a fresh store and two `commuter train` processes started together on the same month,
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [
        str(Path(sys.executable).with_name("commuter")),
        "train",
        "--trips",
        str(worlds / "m1" / "trips.parquet"),
        "--labels",
        str(worlds / "m1" / "labels.csv"),
        "--as-of",
        str(AS_OF),
        "--param",
        "max_rounds=150",
    ]
    procs = [
        subprocess.Popen(
            cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # noqa: S603
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    # then both succeed (no migration race), exactly one is promoted,
    for p, (stdout, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, f"training failed: {stderr[-2000:]}"
    promoted = [o for o, _ in outs if "promoted to champion (was none)" in o]
    assert len(promoted) == 1, f"expected one promotion: {[o[-600:] for o, _ in outs]}"
    # and the other was judged against the winner: a tie on the same data.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = _champion(client)
    other = next(v for v in ("1", "2") if v != champion)
    tags = _version(client, other).tags
    assert tags["judged_against"] == champion, tags
    assert tags["gate.newer_data_on_tie"] == "False", tags
    assert tags["gates_passed"] == "False", tags


def test_tuning_runs_nested_trials_and_never_reads_calibration_or_validation(worlds):
    from commuter_badge.models.core.config import TrainConfig
    from commuter_badge.models.core.data import labelled_features
    from commuter_badge.models.core.fitting import fit_booster, split
    from commuter_badge.models.core.tuning import tune

    labelled = labelled_features(
        worlds / "m1" / "trips.parquet", worlds / "m1" / "labels.csv", AS_OF
    )
    config = TrainConfig(max_rounds=60, early_stopping_rounds=20)
    frame = split(labelled, config)
    # Given the same fit and early-stopping persons, with and without the other two parts,
    kept = frame[frame["part"].isin(["fit", "early_stop"])]
    a = tune(frame, config, 2, fit_booster)
    b = tune(kept, config, 2, fit_booster)
    # then the search chooses the same parameters with the same objective.
    assert a == b, f"tuning depends on calibration/validation persons: {a} vs {b}"

    # When the command-line path tunes, each trial is a nested run under the training run.
    result = _train(worlds / "m1", AS_OF, tune=2, promote=False, early_stopping_rounds=20)
    client = MlflowClient()
    trials = client.search_runs(
        [client.get_run(result.run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{result.run_id}' and tags.kind = 'trial'",
    )
    assert len(trials) == 2, f"{len(trials)} trial runs"
    assert set(result.tuned) <= set(TrainConfig.model_fields), result.tuned
    params = client.get_run(result.run_id).data.params
    assert float(params["learning_rate"]) == pytest.approx(result.tuned["learning_rate"])


def test_fit_and_evaluate_needs_no_tracking_store(worlds, tmp_path):
    from commuter_badge.models.core.config import TrainConfig
    from commuter_badge.models.core.data import labelled_features
    from commuter_badge.models.core.fitting import fit_and_evaluate

    labelled = labelled_features(
        worlds / "m1" / "trips.parquet", worlds / "m1" / "labels.csv", AS_OF
    )
    fitted = fit_and_evaluate(labelled, TrainConfig(**FAST))
    assert not (tmp_path / "mlflow.db").exists(), "the pure core opened the tracking store"
    assert fitted.gates.passed, fitted.gates.reasons
    assert fitted.baseline.metrics["val_recall"] < fitted.metrics["val_recall"], "rule beat model"
    assert str(fitted.gates.gates["recall_not_worse_than_champion"]) == "skipped"


def test_cross_fitted_early_stopping_reads_only_the_fit_part(worlds):
    """Rounds by 5-fold cross-validation inside the fit part; the certificate's and validation's
    persons are exactly those of the default split, so neither was seen by the trees."""
    from commuter_badge.models.core.config import TrainConfig
    from commuter_badge.models.core.data import labelled_features
    from commuter_badge.models.core.fitting import fit_and_evaluate, split

    labelled = labelled_features(
        worlds / "m1" / "trips.parquet", worlds / "m1" / "labels.csv", AS_OF
    )
    config = TrainConfig(**FAST, early_stopping_folds=5, share_fit=0.55, share_early_stop=0.0)
    frame = split(labelled, config)
    default = split(labelled, TrainConfig(**FAST))
    assert "early_stop" not in set(frame["part"])
    for part in ("calibration", "validation"):  # the fit part took the early-stopping persons
        assert set(frame.loc[frame["part"] == part, "person_id"]) == set(
            default.loc[default["part"] == part, "person_id"]
        )
    fitted = fit_and_evaluate(labelled, config, frame)
    rounds = fitted.model.booster.num_trees()
    assert 0 < rounds <= FAST["max_rounds"]
    assert fitted.certificate["best_iteration"] == rounds
    assert fitted.metrics["val_auc"] > 0.95
    assert fitted.gates.passed, fitted.gates.reasons
