"""Training across New Year 2027 with an operator's schedule file, and the calendar travelling with
the model: recorded on the run, the version and the model itself; `evaluate` warns on a change."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import pytest
from mlflow.tracking import MlflowClient

from commuter_badge.features.context import RunContext
from commuter_badge.features.workdays import LIBRARY_CALENDAR, CalendarRangeError, open_calendar
from commuter_badge.models.core.bundle import CommuterModel
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.mlflow_edge.calendar_check import MISMATCH_TAG, calendar_mismatch
from commuter_badge.models.runs.evaluate import evaluate
from commuter_badge.models.runs.train import TrainConfig, train
from commuter_badge.settings import MODEL_NAME
from commuter_badge.simulate.variation import WorldSettings
from commuter_badge.simulate.world import simulate_world, write_world
from tests.conftest import AS_OF_2027, CALENDAR_2027
from tests.model.stores import own_store

DIGEST = hashlib.sha256(CALENDAR_2027.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained_2027(tmp_path_factory):
    """4,000 simulated persons as of 2027-01-20, trained under the 2027 schedule file."""
    root = tmp_path_factory.mktemp("trained-2027")
    calendar = open_calendar(CALENDAR_2027)
    with own_store(root) as uri:
        settings = WorldSettings(calendar=calendar)
        world = simulate_world(4_000, AS_OF_2027, seed=2027, settings=settings)
        paths = write_world(world, root / "world")
        config = TrainConfig(target_fpr=0.05, seed=0)
        context = under(calendar)
        result = train(paths["trips"], paths["labels"], AS_OF_2027, config, context=context)
        model = registry.load_model(f"models:/{MODEL_NAME}/{result.version}")
    return {"result": result, "model": model, "uri": uri, "paths": paths}


def under(calendar) -> RunContext:
    """The default context (the MLflow store set already) with `calendar`."""
    return dataclasses.replace(RunContext.defaults(), calendar=calendar)


@pytest.fixture
def store(trained_2027, monkeypatch):
    """This test's MLflow calls go to the module's store (the autouse fixture re-points them)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_2027["uri"])
    registry.configure(trained_2027["uri"])
    return trained_2027


def test_training_across_new_year_2027_learns(trained_2027):
    # given a model trained on a 2027 month / when / then it separates commuters as usual
    m = trained_2027["result"].metrics
    assert m["val_auc"] > 0.9, f"val_auc {m['val_auc']:.3f}"
    assert m["val_recall"] > 0.5, f"val_recall {m['val_recall']:.3f}"


def test_the_run_and_the_version_record_the_calendar(store):
    # given the training run and its registered version
    result = store["result"]
    client = MlflowClient()
    run = client.get_run(result.run_id)
    version = client.get_model_version(MODEL_NAME, result.version)
    want = {
        "calendar_library_version": "1.11.0",
        "calendar_file_digest": DIGEST,
        "calendar_years": "2004-2027",
    }
    # when / then params, run tags and version tags all carry the calendar
    for where, found in (("params", run.data.params), ("tags", run.data.tags)):
        got = {k: found.get(k) for k in want}
        assert got == want, f"run {where}: {got}"
    got = {k: version.tags.get(k) for k in want}
    assert got == want, f"version tags: {got}"


def test_the_model_carries_its_calendar(trained_2027, calendar_2027):
    # given the loaded model / when its recorded calendar is compared with the 2027 file's
    recorded = trained_2027["model"].meta.calendar
    # then they are the same calendar, and no mismatch is reported
    assert recorded["file_digest"] == DIGEST, recorded
    assert recorded["years"] == "2004-2027", recorded
    assert recorded == calendar_2027.fingerprint(), "recorded fingerprint differs"
    assert calendar_mismatch(trained_2027["model"].meta, calendar_2027) is None


def test_evaluate_under_the_same_calendar_does_not_warn(store, calendar_2027):
    # given the training month and the same calendar / when evaluated
    paths = store["paths"]
    uri = f"models:/{MODEL_NAME}/1"
    out = evaluate(paths["trips"], paths["labels"], AS_OF_2027, uri, under(calendar_2027))
    # then no mismatch tag, and the run records the calendar
    tags = MlflowClient().get_run(out.run_id).data.tags
    assert MISMATCH_TAG not in tags, tags.get(MISMATCH_TAG)
    assert tags["calendar_file_digest"] == DIGEST, tags


def test_evaluate_warns_when_the_calendar_changed_a_year_the_model_saw(store, tmp_path, caplog):
    # given a 2027 file that moves the make-up day of Spring Festival
    text = CALENDAR_2027.read_text(encoding="utf-8").replace("2027-01-31,", "2027-01-30,")
    changed = tmp_path / "calendar_2027_v2.csv"
    changed.write_text(text, encoding="utf-8")
    calendar = open_calendar(changed)
    # when the model is evaluated under it
    paths = store["paths"]
    with caplog.at_level(
        logging.WARNING, logger="commuter_badge.models.mlflow_edge.calendar_check"
    ):
        uri = f"models:/{MODEL_NAME}/1"
        out = evaluate(paths["trips"], paths["labels"], AS_OF_2027, uri, under(calendar))
    # then a warning and a run tag name the year whose working days differ
    tag = MlflowClient().get_run(out.run_id).data.tags.get(MISMATCH_TAG, "")
    assert "for 2027" in tag, f"tag: {tag!r}"
    assert any("for 2027" in r.getMessage() for r in caplog.records), caplog.text
    assert calendar.params()["calendar_file_digest"] != DIGEST


def test_a_calendar_that_only_adds_years_is_no_mismatch(trained_2027, tmp_path):
    # given the model's 2027 file plus a 2028 year (its holiday rows moved on a year)
    rows = [
        line.replace("2027-", "2028-")
        for line in CALENDAR_2027.read_text(encoding="utf-8").splitlines()
        if ",holiday," in line  # make-up days would fall on weekdays in 2028
    ]
    both = tmp_path / "calendar_2027_2028.csv"
    both.write_text(CALENDAR_2027.read_text(encoding="utf-8") + "\n".join(rows) + "\n", "utf-8")
    calendar = open_calendar(both)
    # when / then the years the model saw are unchanged: no warning
    assert calendar_mismatch(trained_2027["model"].meta, calendar) is None


def test_evaluate_without_a_schedule_is_the_clear_error(store):
    # given the library alone / when a 2027 month is evaluated / then the one clear error
    paths = store["paths"]
    uri = f"models:/{MODEL_NAME}/1"
    with pytest.raises(CalendarRangeError, match=r"for 2027 .*--calendar FILE"):
        evaluate(paths["trips"], paths["labels"], AS_OF_2027, uri, under(LIBRARY_CALENDAR))


def test_a_version_saved_before_models_recorded_a_calendar_still_loads(trained_2027, tmp_path):
    # given a saved model whose model.json has no calendar (the format before this change)
    directory = trained_2027["model"].save(tmp_path / "old")
    meta = json.loads((directory / "model.json").read_text())
    del meta["calendar"]
    (directory / "model.json").write_text(json.dumps(meta))
    (directory / "manifest.json").unlink()  # nor a manifest (those came later still)
    # when it is loaded / then it loads, records no calendar, and is never called a mismatch
    old = CommuterModel.load(directory)
    assert old.meta.calendar == {}, old.meta.calendar
    assert calendar_mismatch(old.meta, LIBRARY_CALENDAR) is None
