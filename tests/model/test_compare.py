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
    from commuter_badge.models.runs.train import TrainConfig, train
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
    from commuter_badge.models.mlflow_edge import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", two_trainings["uri"])
    registry.configure(two_trainings["uri"])
    return two_trainings


def cli(*args: str):
    from commuter_badge.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_versions_and_run_ids_name_the_same_runs(store):
    from commuter_badge.models.reporting.compare import compare

    a, b = store["results"]
    by_version = compare(f"v{a.version}", f"models:/commuter-badge/{b.version}")
    by_run = compare(a.run_id, b.version)
    assert (by_version.a.run_id, by_version.b.run_id) == (a.run_id, b.run_id), "versions resolved"
    assert (by_run.a.run_id, by_run.b.run_id) == (a.run_id, b.run_id), "run ids resolved"
    assert by_run.a.version == a.version, "a run id still finds its registered version"
    assert by_version.headline.equals(by_run.headline), "same runs, same headline table"


def test_headline_is_at_full_precision_and_per_10000(store):
    from commuter_badge.models.reporting.compare import compare

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
    from commuter_badge.models.reporting.compare import FEW, compare

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


def test_gates_fit_a_terminal_rates_have_a_legend_and_different_persons_are_flagged(store):
    # Given two versions trained on different months' persons (two worlds, split seeds 11, 12),
    a, b = store["results"]
    # when compared by their runs (issue 27, newcomer 5),
    res = cli("compare", f"v{a.version}", f"v{b.version}")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    # then the gates table holds outcomes only, the decisions in words follow it, wrapped,
    start = next(i for i, line in enumerate(lines) if line.strip() == "gates")
    end = next(i for i, line in enumerate(lines) if "promotion decision:" in line)
    assert max(len(line) for line in lines[start:end]) <= 100, "\n".join(lines[start:end])
    assert all(len(line) <= 100 for line in lines if "promotion" in line), res.output
    # the per-10,000 columns and the k/n counts are explained,
    text = " ".join(res.output.split())
    assert "false positives per 10,000 labelled non-commuters" in text, text
    assert "k false positives of n labelled non-commuters" in text, text
    # and a warning says the figures are on different persons, and how to compare on one month.
    assert "warning:" in text, text
    assert "measured on different persons" in text, text
    assert "input data (digest)" in text, text
    assert "split seed 11 vs 12" in text, text
    assert f"commuter compare v{a.version} v{b.version} --trips" in text, text


def test_two_versions_are_compared_on_one_labelled_month(store):
    # Given v1 and v2 and the labelled month v1 was trained on,
    from commuter_badge.models.core.data import labelled_features
    from commuter_badge.models.core.metrics import at_threshold
    from commuter_badge.models.mlflow_edge import registry

    a, b = store["results"]
    world = store["root"] / "world11"
    args = ["--trips", str(world / "trips.parquet"), "--labels", str(world / "labels.csv")]
    # when both are scored on it,
    res = cli("compare", f"v{a.version}", f"v{b.version}", *args, "--as-of", str(AS_OF))
    assert res.exit_code == 0, res.output
    # then the table is of evaluation figures on the same persons, with no caveat,
    text = " ".join(res.output.split())
    assert "scored on" in text, text
    assert "warning:" not in text, text
    from commuter_badge.models.reporting.compare import compare_on_month

    cmp = compare_on_month(f"v{a.version}", f"v{b.version}", *args[1::2], AS_OF)
    row = cmp.headline.set_index("metric")
    assert row.loc["n_neg", "a"] == row.loc["n_neg", "b"], "the same labelled non-commuters"
    assert cmp.a.persons_digest == cmp.b.persons_digest
    # each figure being what the version scores on those persons.
    model = registry.load_model(f"models:/commuter-badge/{b.version}")
    frame = labelled_features(*args[1::2], AS_OF, model.meta.window_days).frame
    m = at_threshold(frame["is_commuter"], model.predict_proba(frame), model.threshold)
    assert row.loc["fpr", "b"] == pytest.approx(m["fpr"]), "B's FPR on the month"
    assert row.loc["recall", "b"] == pytest.approx(m["recall"])
    # Half the month's options is refused in one line.
    res = cli("compare", f"v{a.version}", f"v{b.version}", *args)
    assert res.exit_code == 2, res.output
    assert "needs all of --trips, --labels and --as-of" in res.output


def test_promote_normalises_the_version_number(two_trainings, tmp_path, monkeypatch):
    # Given a private copy of the store, when version 1 is named `01`,
    from tests.model.stores import private_copy

    private_copy(two_trainings["root"] / "mlflow.db", tmp_path, monkeypatch)
    res = cli("promote", "01")
    # then every message names version 1, as the registry does (issue 27, adversarial 12).
    assert "01" not in res.output, res.output
    assert "version 1 " in res.output, res.output
