"""Training end to end: certificate, MLflow contents, gates, determinism, errors."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import AS_OF

pytestmark = pytest.mark.slow

CONTRACT_METRICS = [
    "val_auc",
    "val_pr_auc",
    "val_brier",
    "threshold",
    "target_fpr",
    "val_fpr",
    "val_fpr_upper95",
    "val_recall",
    "val_precision",
]


def test_threshold_is_certified_and_validation_agrees(trained):
    r = trained["result"]
    assert r.certified_fpr_upper <= 0.01, f"certified bound {r.certified_fpr_upper} above target"
    assert r.metrics["val_fpr"] <= 0.01, f"validation FPR {r.metrics['val_fpr']} above target"
    assert r.metrics["val_auc"] > 0.97, f"AUC {r.metrics['val_auc']:.3f} too low for this world"
    assert r.metrics["val_recall"] > r.baseline_metrics["val_recall"] + 0.2, (
        f"model recall {r.metrics['val_recall']:.3f} not far above the rule's "
        f"{r.baseline_metrics['val_recall']:.3f}"
    )


def test_mlflow_run_shows_everything_reviewers_need(trained):
    client = MlflowClient(tracking_uri=trained["uri"], registry_uri=trained["uri"])
    run = client.get_run(trained["result"].run_id)
    missing = [m for m in CONTRACT_METRICS if m not in run.data.metrics]
    assert not missing, f"contract metrics missing from the run: {missing}"
    slices = [k for k in run.data.metrics if k.startswith("val_main_mode.")]
    assert any(k.endswith(".fpr") for k in slices), f"per-mode slice FPR missing: {slices}"
    assert any(k.endswith(".recall") for k in slices), f"per-mode slice recall missing: {slices}"
    assert any(k.startswith("val_main_region.") for k in run.data.metrics), (
        "per-region slices missing"
    )
    assert any(k.startswith("val_archetype.") for k in run.data.metrics), "archetype slices missing"
    assert "input_digest_sha256" in run.data.params, "input digest not logged"
    assert run.inputs.dataset_inputs, "mlflow.log_input dataset missing"
    figures = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    for name in ("roc", "precision_recall", "calibration", "fpr_recall_vs_threshold"):
        assert f"figures/val_{name}.png" in figures, f"figure {name} missing: {figures}"
    version = client.get_model_version_by_alias("commuter-badge", "champion")
    assert version.run_id == run.info.run_id, "the first passing model becomes champion"
    baseline = client.get_run(trained["result"].baseline_run_id)
    assert baseline.data.tags.get("kind") == "baseline", "rule baseline not logged as its own run"
    assert "val_recall" in baseline.data.metrics, "rule baseline run lacks its metrics"


def test_training_is_deterministic(trained):
    import pandas as pd

    from commuter_badge.models.core.data import labelled_features
    from commuter_badge.models.core.split import assign
    from commuter_badge.models.runs.train import TrainConfig, fit_model

    world = trained["world"]
    data = labelled_features(world / "trips.parquet", world / "labels.csv", AS_OF).frame
    data["part"] = assign(data["person_id"], 0)
    a, _ = fit_model(data, TrainConfig(seed=0), AS_OF)
    b, _ = fit_model(
        data.sample(frac=1, random_state=3).reset_index(drop=True).sort_values("person_id"),
        TrainConfig(seed=0),
        AS_OF,
    )
    probe = data.head(500)
    assert a.threshold == b.threshold, "same seed, same data: same threshold"
    pd.testing.assert_series_equal(
        pd.Series(a.predict_proba(probe)), pd.Series(b.predict_proba(probe))
    )


def test_champion_does_not_move_when_recall_is_worse(trained, tmp_path):
    # Given the trained champion, when a stricter model (lower recall) is trained on the same data,
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.models.runs.train import TrainConfig, train

    world = trained["world"]
    registry.configure(trained["uri"])
    import os

    os.environ["MLFLOW_TRACKING_URI"] = trained["uri"]
    result = train(
        world / "trips.parquet", world / "labels.csv", AS_OF, TrainConfig(target_fpr=0.003)
    )
    client = MlflowClient(tracking_uri=trained["uri"], registry_uri=trained["uri"])
    champion = client.get_model_version_by_alias("commuter-badge", "champion")
    # then it is registered but the champion alias stays where it was.
    assert result.version != champion.version, "a model with worse recall took the champion alias"
    assert not result.gates["recall_not_worse_than_champion"], f"recall gate passed: {result.gates}"
    # A 0.3% target is another policy than the champion's 1%: refused for that, and recall at two
    # different targets is not compared (the gate says skipped, never True).
    assert str(result.gates["policy_matches_champion"]) == "False", result.gates
    assert str(result.gates["recall_not_worse_than_champion"]) == "skipped", result.gates


def test_too_few_negatives_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from commuter_badge.cli.main import app
    from commuter_badge.simulate.world import simulate_world, write_world

    write_world(simulate_world(600, AS_OF, seed=3), tmp_path / "w")
    res = CliRunner().invoke(
        app,
        [
            "train",
            "--trips",
            str(tmp_path / "w" / "trips.parquet"),
            "--labels",
            str(tmp_path / "w" / "labels.csv"),
            "--as-of",
            str(AS_OF),
        ],
    )
    assert res.exit_code != 0, "training on 600 persons must refuse to certify 1%"
    assert "at least 299 are needed" in res.output, f"message should say how many: {res.output!r}"


def test_evaluate_logs_the_champion_on_other_labelled_data(trained, tmp_path, monkeypatch):
    # Given the champion and a labelled world it never saw (another seed),
    from commuter_badge.cli.app import run_context
    from commuter_badge.models.runs.evaluate import evaluate
    from commuter_badge.simulate.world import simulate_world, write_world

    write_world(simulate_world(4_000, AS_OF, seed=202), tmp_path / "other")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    # when it is evaluated under the context a command builds (settings read once, here),
    result = evaluate(
        tmp_path / "other" / "trips.parquet",
        tmp_path / "other" / "labels.csv",
        AS_OF,
        None,
        run_context(None),
    )
    # then an evaluation run holds the metrics at the champion's threshold.
    client = MlflowClient(tracking_uri=trained["uri"])
    run = client.get_run(result.run_id)
    assert run.data.tags["kind"] == "evaluation", "evaluation runs are tagged as such"
    for name in ("eval_auc", "eval_fpr", "eval_fpr_upper95", "eval_recall", "eval_precision"):
        assert name in run.data.metrics, f"{name} missing from the evaluation run"
    assert run.data.metrics["eval_recall"] > 0.9, (
        f"champion recall on new data {run.data.metrics['eval_recall']}"
    )
    assert result.version == trained["model"].version, "evaluated the champion version"


def test_train_warns_when_the_validation_fpr_is_above_target(tmp_path):
    # Given a month whose validation persons, under split seed 1, show an FPR above the target
    # (found by trying seeds 0-11 on this world: 3 of 12 do),
    import mlflow
    from typer.testing import CliRunner

    from commuter_badge.cli.main import app
    from commuter_badge.simulate.world import simulate_world, write_world

    write_world(simulate_world(5_000, AS_OF, seed=41), tmp_path / "w")
    # when it is trained through the command line,
    res = CliRunner().invoke(
        app,
        ["train", "--trips", str(tmp_path / "w" / "trips.parquet")]
        + ["--labels", str(tmp_path / "w" / "labels.csv"), "--as-of", str(AS_OF), "--seed", "1"]
        + ["--param", "max_rounds=150", "--param", "num_threads=1"],
    )
    assert res.exit_code == 0, res.output
    (run,) = mlflow.search_runs(filter_string="tags.kind = 'model'", output_format="list")
    m = run.data.metrics
    assert m["val_fpr"] > m["target_fpr"], (
        f"precondition: this world's validation FPR {m['val_fpr']:.2%} is no longer above target; "
        "pick another seed (the test is about the warning, not this world)"
    )
    # then the gates pass, and one warning line gives the run's own figures and what they mean.
    assert "promoted to champion" in res.output, res.output
    text = " ".join(res.output.split())
    assert (
        f"warning: validation FPR {m['val_fpr']:.2%} (upper95 {m['val_fpr_upper95']:.2%}) "
        f"is above the {m['target_fpr']:.2%} target"
    ) in text, text
    assert "within the certificate's risk" in text, text
    assert "calibration persons' bound" in text, text
    assert "`commuter monitor`" in text, text


@pytest.mark.parametrize("command", ["score", "evaluate", "monitor", "train", "recertify"])
def test_every_command_builds_features_under_the_memory_setting(trained, tmp_path, command):
    # Given the trained champion and a DuckDB memory setting that is not a size,
    from typer.testing import CliRunner

    from commuter_badge.cli.main import app

    world = trained["world"]
    args = {
        "score": ["--out", str(tmp_path / "s.parquet")],
        "evaluate": ["--labels", str(world / "labels.csv")],
        "monitor": [],
        # the months' path (train_months, recertify's months) builds under it too
        "train": ["--labels", str(world / "labels.csv"), "--no-promote"],
        "recertify": ["--labels", str(world / "labels.csv"), "--no-promote"],
    }[command]
    env = {"MLFLOW_TRACKING_URI": trained["uri"], "COMMUTER_DUCKDB_MEMORY": "lots"}
    # when the command builds the month's features,
    result = CliRunner().invoke(
        app,
        [command, "--trips", str(world / "trips.parquet"), "--as-of", str(AS_OF), *args],
        env=env,
    )
    # then the setting reached the build: refused, naming it (the library reads no environment).
    assert result.exit_code == 2, f"{command}: exit {result.exit_code}: {result.output}"
    assert "COMMUTER_DUCKDB_MEMORY" in result.output, result.output
