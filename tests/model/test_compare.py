"""`commuter compare`: two real small trainings in one store, compared by version and by run id."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.conftest import AS_OF
from tests.model.stores import own_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_trainings(tmp_path_factory):
    """Two trainings on different small worlds, registered as v1 and v2 in one store."""
    from commuter_badge.models.train import TrainConfig, train
    from commuter_badge.simulate.world import simulate_world, write_world

    root = tmp_path_factory.mktemp("compare")
    results = []
    with own_store(root) as uri:
        for seed in (11, 12):
            world = root / f"world{seed}"
            write_world(simulate_world(7_000, AS_OF, seed=seed), world)
            results.append(
                train(
                    world / "trips.parquet",
                    world / "labels.csv",
                    AS_OF,
                    TrainConfig(seed=seed, num_threads=1),
                )
            )
    return {"uri": uri, "results": results, "root": root}


@pytest.fixture
def store(two_trainings, monkeypatch):
    from commuter_badge.models import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", two_trainings["uri"])
    registry.configure(two_trainings["uri"])
    return two_trainings


def cli(*args: str):
    from commuter_badge.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_versions_and_run_ids_name_the_same_runs(store):
    from commuter_badge.models.compare import compare

    a, b = store["results"]
    by_version = compare(f"v{a.version}", f"models:/commuter-badge/{b.version}")
    by_run = compare(a.run_id, b.version)
    assert (by_version.a.run_id, by_version.b.run_id) == (a.run_id, b.run_id), "versions resolved"
    assert (by_run.a.run_id, by_run.b.run_id) == (a.run_id, b.run_id), "run ids resolved"
    assert by_run.a.version == a.version, "a run id still finds its registered version"
    assert by_version.headline.equals(by_run.headline), "same runs, same headline table"


def test_headline_is_at_full_precision_and_per_10000(store):
    from commuter_badge.models.compare import compare

    a, b = store["results"]
    cmp = compare(a.run_id, b.run_id)
    runs = [MlflowClient().get_run(r.run_id).data.metrics for r in (a, b)]
    row = cmp.headline.set_index("metric").loc["fpr"]
    assert row["a"] == runs[0]["val_fpr"], "logged floats, unrounded"
    assert row["b"] == runs[1]["val_fpr"], "logged floats, unrounded"
    assert row["a_per10k"] == pytest.approx(runs[0]["val_fpr"] * 1e4), "per 10,000 persons"
    assert row["delta"] == pytest.approx(runs[1]["val_fpr"] - runs[0]["val_fpr"]), "B - A"
    cert = cmp.headline.set_index("metric").loc["cal_fpr_upper95"]
    assert cert["a"] == pytest.approx(a.certified_fpr_upper), "the certificate is in the table"
    assert runs[0]["val_fpr_per10k"] == pytest.approx(runs[0]["val_fpr"] * 1e4), (
        "training logs rates per 10,000 for MLflow's compare page"
    )
    assert runs[0]["cal_fpr_upper95_per10k"] == pytest.approx(a.certified_fpr_upper * 1e4)


def test_cli_prints_tables_and_writes_markdown_html_and_a_run(store, tmp_path):
    a, b = store["results"]
    metrics = MlflowClient().get_run(a.run_id).data.metrics
    md, page = tmp_path / "cmp.md", tmp_path / "cmp.html"
    res = cli("compare", f"v{a.version}", b.run_id, "--out", str(md))
    assert res.exit_code == 0, res.output
    assert repr(metrics["val_fpr"]) in res.output, "full-precision FPR on the terminal"
    assert f"{metrics['val_fpr'] * 1e4:.4f}" in res.output, "FPR per 10,000 on the terminal"
    for name in ("headline metrics", "gates", "slices", "main_mode", "promoted"):
        assert name in res.output, f"{name!r} missing from the terminal output"
    text = md.read_text()
    for heading in ("## Headline metrics", "## Gates", "## Slices"):
        assert heading in text, f"{heading} missing from the markdown"
    assert repr(metrics["val_fpr"]) in text, "full precision in the markdown too"
    assert (md.stat().st_mode & 0o077) == 0, "written readable by owner only"

    res = cli("compare", a.run_id, f"v{b.version}", "--out", str(page), "--log")
    assert res.exit_code == 0, res.output
    assert page.read_text().startswith("<!doctype html>"), "an HTML page"
    assert "<table>" in page.read_text(), "with tables"
    logged = MlflowClient().search_runs(
        [MlflowClient().get_run(a.run_id).info.experiment_id], "tags.kind = 'comparison'"
    )
    assert logged, "--log records a run of kind comparison"
    artifacts = {f.path for f in MlflowClient().list_artifacts(logged[0].info.run_id)}
    assert {"comparison.md", "comparison.html"} <= artifacts, artifacts


def test_slice_rates_on_few_persons_are_counts(store):
    from commuter_badge.models.compare import FEW, compare

    a, b = store["results"]
    cmp = compare(a.run_id, b.run_id)
    few = cmp.slices[[isinstance(n, int) for n in cmp.slices["n_a"]]]
    side = cmp.a.slices.set_index(["slice", "value"])
    checked = 0
    for row in few.itertuples():
        n_neg = int(side.loc[(row.slice, row.value), "n_neg"])
        if n_neg < FEW:
            fp = int(side.loc[(row.slice, row.value), "false_positives"])
            assert row.fpr_per10k_a == f"{fp}/{n_neg}", f"{row.slice}={row.value}: counts expected"
            assert row.fpr_delta_per10k == "", "no delta on a handful of persons"
            checked += 1
    assert checked, "a small world has archetypes with few negatives"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["v99", "v1"], "no version 99"),
        (["not-a-run", "v1"], "is neither a run id nor a model version"),
        (["v1", "v2", "--out", "cmp.txt"], "write a .md or .html file"),
    ],
)
def test_bad_references_are_one_line_errors(store, args, message):
    res = cli("compare", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
