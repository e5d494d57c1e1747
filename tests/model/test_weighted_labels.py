"""An audit's verdicts as weighted labels, through the real commands on a real store.

A model trained on one simulated month is scored on a next month where new kinds of behaviour
appeared (its FPR moves); an audit of that month is drawn, verified against the simulated truth
and certified with `--labels-out`. The weighted labels stand for the whole month: their weights
sum to its population, and `commuter evaluate` on them estimates the month's true FPR. Given alone
to a command that certifies a threshold, they are refused, pointing to `train --month`.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from tests.model.stores import own_store, private_copy

FIRST, NEXT = dt.date(2021, 11, 20), dt.date(2021, 12, 20)  # windows without public holidays
AUDIT = 1_000


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    """Trained on month one (its own store); month two shifted by new kinds of behaviour."""
    from commuter_badge.models.runs.train import TrainConfig, train
    from commuter_badge.simulate import UNSEEN_KINDS, DriftSettings, simulate_months, write_months

    root = tmp_path_factory.mktemp("weighted")
    drift = DriftSettings(new_kinds=UNSEEN_KINDS)
    paths = write_months(simulate_months(12_000, [FIRST, NEXT], 9, drift=drift), root / "shift")
    with own_store(root):
        result = train(paths[FIRST]["trips"], paths[FIRST]["labels"], FIRST, TrainConfig(seed=0))
    return {"db": root / "mlflow.db", "version": result.version, "next": paths[NEXT]}


@pytest.fixture
def store(months, tmp_path, monkeypatch):
    return private_copy(months["db"], tmp_path, monkeypatch)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def audited(months, store, tmp_path):
    """The next month scored, an audit drawn, verified by the truth and certified --labels-out."""
    month = months["next"]
    scores, sample = tmp_path / "scores.csv", tmp_path / "sample.csv"
    res = run("score", "--trips", month["trips"], "--as-of", NEXT, "--out", scores)
    assert res.exit_code == 0, res.output
    res = run("audit", "draw", "--scores", scores, "--n", AUDIT, "--seed", 4, "--out", sample)
    assert res.exit_code == 0, res.output
    truth = pd.read_parquet(month["persons"]).set_index("person_id")["true_commuter"]
    drawn = pd.read_csv(sample, dtype={"person_id": str})
    verdicts = tmp_path / "verdicts.csv"
    pd.DataFrame(
        {"person_id": drawn["person_id"], "is_commuter": truth[drawn["person_id"]].to_numpy()}
    ).to_csv(verdicts, index=False)
    labels = tmp_path / "audit-labels.csv"
    res = run(
        "audit", "certify", "--sample", sample, "--verdicts", verdicts, "--as-of", NEXT,
        "--labels-out", labels,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    scored = pd.read_csv(scores, dtype={"person_id": str})
    scored["truth"] = truth[scored["person_id"]].to_numpy()
    return {"labels": labels, "scores": scored, "sample": drawn, "output": res.output}


def test_audit_labels_out_weights_stand_for_the_month(audited):
    # Given an audit certified with --labels-out,
    labels = pd.read_csv(audited["labels"], dtype={"person_id": str})
    scored, sample = audited["scores"], audited["sample"]
    # then it holds one weighted label per verified person, owner-only,
    assert list(labels.columns) == ["person_id", "is_commuter", "weight"]
    assert len(labels) == AUDIT
    assert set(labels["person_id"]) == set(sample["person_id"])
    assert oct(audited["labels"].stat().st_mode & 0o777) == "0o600", "owner-only"
    # each weight the inverse of the person's inclusion probability in its stratum,
    merged = labels.merge(sample, on="person_id")
    expected = merged["stratum_size"] / merged["stratum_sampled"]
    assert merged["weight"].to_numpy() == pytest.approx(expected.to_numpy())
    # so the weights sum to the month's population (every scored person),
    assert labels["weight"].sum() == pytest.approx(len(scored), rel=1e-9)
    assert f"standing for {len(scored):,} persons" in audited["output"], audited["output"]
    # and the labels are the verdicts.
    truth = scored.set_index("person_id")["truth"]
    assert (labels["is_commuter"].to_numpy() == truth[labels["person_id"]].to_numpy()).all()


def test_weighted_evaluate_estimates_the_months_true_fpr(months, audited):
    # Given the audit's weighted labels of a month whose true FPR is known (simulated),
    scored = audited["scores"]
    badge, neg = scored["badge"].astype(bool), scored["truth"] == 0
    true_fpr = (badge & neg).sum() / neg.sum()
    # and the design's standard error of the weighted FPR (delta method over the two strata,
    # without-replacement sampling, from the month's truth),
    sample = audited["sample"]
    var = {}
    counts = {}
    for holds in (True, False):
        stratum = scored[badge == holds]
        n = int((sample["badge"].astype(bool) == holds).sum())
        size, k = len(stratum), int((stratum["truth"] == 0).sum())
        counts[holds] = k
        var[holds] = size**2 * (1 - n / size) * (k / size) * (1 - k / size) / n
    k_h, k_o = counts[True], counts[False]
    se = math.sqrt(k_o**2 * var[True] + k_h**2 * var[False]) / (k_h + k_o) ** 2
    # when the model is evaluated on them,
    res = run(
        "evaluate", "--trips", months["next"]["trips"], "--labels", audited["labels"],
        "--as-of", NEXT,
    )  # fmt: skip
    # then it reports a weighted point estimate without a Clopper–Pearson bound, says so,
    assert res.exit_code in (0, 3), res.output
    assert "no exact FPR bound on weighted counts" in res.output, res.output
    run_ = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("commuter-badge").experiment_id],
        "tags.kind = 'evaluation'",
    )[0]
    metrics = run_.data.metrics
    assert run_.data.tags["weighted_labels"] == "True"
    assert metrics["eval_weight_sum"] == pytest.approx(len(scored))
    assert math.isnan(metrics.get("eval_fpr_upper95", math.nan))
    # and the estimate is within 4 design standard errors of the month's true FPR.
    assert abs(metrics["eval_fpr"] - true_fpr) <= 4 * se, (metrics["eval_fpr"], true_fpr, se)
    # It is the audit's own point estimate (the same design, the same verdicts),
    audit = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("commuter-badge").experiment_id],
        "tags.kind = 'audit'",
    )[0]
    assert metrics["eval_fpr"] == pytest.approx(audit.data.metrics["fpr_estimate"], rel=1e-9)
    # (and the month's non-commuters within 4 standard errors of their count)
    count_se = math.sqrt(var[True] + var[False])
    assert abs(metrics["eval_n_neg"] - neg.sum()) <= 4 * count_se
    print(f"true FPR {true_fpr:.4%}, weighted {metrics['eval_fpr']:.4%}, design SE {se:.4%}")


@pytest.mark.parametrize("command", ["train", "recertify"])
def test_an_audit_alone_is_refused_pointing_to_train_month(months, audited, command):
    # Given the audit's weighted labels, when they are given alone to a command that certifies a
    # threshold (an audit certifies, it cannot train alone; recertify counts persons once),
    res = run(
        command, "--trips", months["next"]["trips"], "--labels", audited["labels"],
        "--as-of", NEXT,
    )  # fmt: skip
    # then it refuses in one line naming the file and pointing to `train --month` with the
    # labelled month before (docs/guide/runbook.md).
    assert res.exit_code != 0, res.output
    assert "weighted labels" in res.output
    assert audited["labels"].name in res.output
    assert "commuter train --month" in " ".join(res.output.split())
    assert "Traceback" not in res.output
