"""A version certified under label noise is judged under it later: evaluate and monitor.

Trained with `label_noise=0.01` on a month whose labels are wrong in 1% of each class, the
version's FPR against labels carries the mislabelled commuters (about 0.7 points); what is compared
with its target afterwards is the FPR against the truth under that assumption, as its certificate.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.settings import MODEL_NAME
from tests.model.stores import own_store, private_copy

FIRST, NEXT = dt.date(2021, 11, 20), dt.date(2021, 12, 20)
NOISE = 0.01


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    from commuter_badge.models.runs.train import TrainConfig, train
    from commuter_badge.simulate import simulate_months, write_months

    root = tmp_path_factory.mktemp("noisy")
    months = write_months(simulate_months(10_000, [FIRST, NEXT], 8, label_noise=NOISE), root)
    with own_store(root):
        config = TrainConfig(seed=0, label_noise=NOISE)
        result = train(months[FIRST]["trips"], months[FIRST]["labels"], FIRST, config)
    return {"db": root / "mlflow.db", "version": result.version, "next": months[NEXT]}


@pytest.fixture
def store(noisy, tmp_path, monkeypatch):
    return private_copy(noisy["db"], tmp_path, monkeypatch)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_evaluate_compares_the_fpr_against_the_truth_with_the_target(noisy, store):
    # Given the version certified under 1% label noise and its next month's (noisy) labels,
    month = noisy["next"]
    # when evaluated,
    res = run(
        "evaluate", "--trips", month["trips"], "--labels", month["labels"], "--as-of", NEXT
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    tags = dict(MlflowClient().get_model_version(MODEL_NAME, noisy["version"]).tags)
    m = MlflowClient().get_run(tags["evaluation.run_id"]).data.metrics
    # then the policy's FPR has the mislabelled commuters taken off, lands near the truth's,
    assert m["eval_label_noise"] == NOISE
    assert m["eval_fpr_against_truth"] < m["eval_fpr"], m
    gap_policy = abs(m["eval_fpr_against_truth"] - m["eval_true_fpr"])
    assert gap_policy < abs(m["eval_fpr"] - m["eval_true_fpr"]), m
    # and it is the figure the breach and the version's tag are about.
    assert tags["evaluation.fpr_breach"] == str(m["eval_fpr_against_truth"] > 0.01)
    assert float(tags["evaluation.fpr"]) == pytest.approx(m["eval_fpr_against_truth"], rel=1e-4)
    assert "against the truth at the version's label noise 0.01" in res.output


def test_monitor_estimates_the_fpr_under_the_versions_label_noise(noisy, store, tmp_path):
    report = tmp_path / "report.json"
    res = run("monitor", "--trips", noisy["next"]["trips"], "--as-of", NEXT, "--report", report)
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["estimates"]["label_noise"] == NOISE
    assert data["estimated_fpr"] < data["estimates"]["estimated_fpr_labels"], data["estimates"]


def test_a_breach_under_label_noise_gives_the_corrected_figure_and_the_labels_one(
    noisy, store, tmp_path
):
    # Given the version certified under 1% noise and a month with 4% more commuters labelled 0,
    from tests.model.test_monitoring import noisier_labels

    labels = noisier_labels(noisy["next"], tmp_path / "noisier", 0.04, both=False)
    res = run("evaluate", "--trips", noisy["next"]["trips"], "--labels", labels, "--as-of", NEXT)
    tags = dict(MlflowClient().get_model_version(MODEL_NAME, noisy["version"]).tags)
    m = MlflowClient().get_run(tags["evaluation.run_id"]).data.metrics
    assert res.exit_code == 0, res.output
    assert tags["evaluation.fpr_breach"] == "True", m
    # then the breach line gives the figure compared (against the truth at 0.01) and the labels'.
    text = " ".join(res.output.split())
    assert (
        f"FPR BREACH: {m['eval_fpr_against_truth']:.4%} against the truth at the version's label "
        f"noise 0.01 ({m['eval_fpr']:.4%} on these labels"
    ) in text, text
    assert "taken off as commuters labelled 0" in text, text
