"""A registered version's files are what was registered, and MLflow holds no person's data.

One small training (its own store); each test changes the version's files on disk the way the
adversarial probe did (the threshold in model.json, a leaf value in booster.txt, a truncated
booster.txt) and puts them back afterwards. `commuter score` must refuse with one line naming the
file; the pyfunc (what `mlflow models serve` and a fresh environment load) must refuse too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core.bundle import MANIFEST, ModelError, file_digests
from tests.conftest import AS_OF
from tests.model.stores import own_store

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL_NAME = "commuter-badge"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from commuter_badge.features.build import build_features
    from commuter_badge.models.runs.train import TrainConfig, train
    from commuter_badge.simulate.world import simulate_world, write_world

    root = tmp_path_factory.mktemp("integrity")
    paths = write_world(simulate_world(3000, AS_OF, seed=31), root / "world")
    with own_store(root) as uri:
        result = train(paths["trips"], paths["labels"], AS_OF, TrainConfig(target_fpr=0.05, seed=0))
    files = sorted(root.glob("mlruns/**/artifacts/commuter_model/booster.txt"))
    assert len(files) == 1, files
    return {
        "root": root,
        "uri": uri,
        "paths": paths,
        "version": result.version,
        "result": result,
        "dir": files[0].parent,
        "features": build_features(paths["trips"], AS_OF),
    }


@contextlib.contextmanager
def tampered(directory: Path) -> Iterator[Path]:
    """The registered files, put back as they were afterwards, whatever the test did to them."""
    saved = {p: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    try:
        yield directory
    finally:
        for p, data in saved.items():
            p.write_bytes(data)


def edit_threshold(d: Path) -> str:
    meta = json.loads((d / "model.json").read_text())
    meta["threshold"] = 0.05
    (d / "model.json").write_text(json.dumps(meta, indent=2))
    # and the manifest beside it, as a careful attacker would: the registry's tags still know
    (d / MANIFEST).write_text(json.dumps({"sha256": file_digests(d)}))
    return "model.json"


def edit_leaf(d: Path) -> str:
    text = (d / "booster.txt").read_text()
    line = re.search(r"^leaf_value=(\S+)", text, re.M)
    first = line.group(1)
    changed = ("1" if first[0] != "1" else "2") + first[1:]  # same length
    (d / "booster.txt").write_text(text[: line.start(1)] + changed + text[line.end(1) :])
    assert len((d / "booster.txt").read_text()) == len(text)
    return "booster.txt"


def truncate(d: Path) -> str:
    data = (d / "booster.txt").read_bytes()
    (d / "booster.txt").write_bytes(data[: len(data) // 2])
    return "booster.txt"


TAMPERS = {"threshold": edit_threshold, "leaf": edit_leaf, "truncated": truncate}


def score(store, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": str(BIN),
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": store["uri"],
        "COMMUTER_DECISIONS": str(tmp_path / "decisions.duckdb"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    argv = [str(BIN / "commuter"), "score", "--trips", str(store["paths"]["trips"])]
    argv += ["--as-of", AS_OF.isoformat(), "--out", str(tmp_path / "scores.parquet")]
    argv += ["--model", f"models:/{MODEL_NAME}/{store['version']}"]  # champion or not
    return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, check=False)


def test_a_version_records_the_digest_of_every_model_file(store):
    tags = MlflowClient(store["uri"], store["uri"]).get_model_version(MODEL_NAME, store["version"])
    digests = file_digests(store["dir"])
    assert {k: v for k, v in tags.tags.items() if k.startswith("sha256.")} == {
        f"sha256.{name}": value for name, value in digests.items()
    }
    assert json.loads((store["dir"] / MANIFEST).read_text()) == {"sha256": digests}


def test_the_untouched_version_scores(store, tmp_path):
    done = score(store, tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("how", TAMPERS)
def test_score_refuses_a_changed_model_file_in_one_line_naming_it(store, tmp_path, how):
    # given a registered version whose file was changed on disk after registration
    with tampered(store["dir"]) as d:
        name = TAMPERS[how](d)
        # when `commuter score` loads it
        done = score(store, tmp_path)
    # then it refuses: one error line naming the file, no traceback, no abort, no output
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert f"model file {name} does not match the sha256 recorded in the registry" in errors[0]
    assert f"models:/{MODEL_NAME}/{store['version']}" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "scores.parquet").exists()


@pytest.mark.parametrize("how", TAMPERS)
def test_the_pyfunc_refuses_a_changed_copy_naming_the_file(store, tmp_path, how):
    # given the version downloaded as a plain MLflow model (what a fresh environment, a Bento or
    # `mlflow models serve` loads: no registry to ask, only the manifest inside it) and changed
    with own_store(store["root"]):
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{MODEL_NAME}/{store['version']}", dst_path=str(tmp_path)
            )
        )
    d = local / "artifacts" / "commuter_model"
    if how == "threshold":  # the manifest stays: a copy's own manifest is all it can check
        meta = json.loads((d / "model.json").read_text())
        meta["threshold"] = 0.05
        (d / "model.json").write_text(json.dumps(meta, indent=2))
        name = "model.json"
    else:
        name = TAMPERS[how](d)
    # when it is loaded / then one line names the file
    with pytest.raises(Exception, match=rf"model file {re.escape(name)} does not match") as caught:
        mlflow.pyfunc.load_model(str(local))
    assert "\n" not in str(caught.value).strip()
    from commuter_badge.models.mlflow_edge import registry

    with pytest.raises(ModelError, match=rf"model file {re.escape(name)} does not match"):
        registry.load_model(str(local), version=store["version"])


def test_validation_persons_carry_keyed_hashes_not_ids(store):
    # given the persons the promotion gates read from the run
    with own_store(store["root"]):
        local = mlflow.artifacts.download_artifacts(
            run_id=store["result"].run_id, artifact_path="validation/persons.parquet"
        )
        persons = pd.read_parquet(local)
    ids = set(pd.read_csv(store["paths"]["labels"], dtype={"person_id": str})["person_id"])
    # then no column holds a person id, and the keys are HMACs under the owner-only secret
    assert "person_id" not in persons.columns
    for column in persons.columns:
        assert not ids & set(persons[column].astype(str)), column
    key_file = store["root"] / "person.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = bytes.fromhex(key_file.read_text().strip())
    some = sorted(ids)
    keys = {hmac.new(secret, i.encode(), hashlib.sha256).hexdigest()[:32] for i in some}
    assert set(persons["person_key"]) <= keys
    assert len(set(persons["person_key"])) == len(persons)


def test_the_input_examples_are_invented_persons_not_real_rows(store):
    from commuter_badge.models.mlflow_edge.example import synthetic_example

    # given the examples MLflow keeps inside the model (and so inside every Bento)
    d = store["dir"].parents[1]  # the MLflow model directory
    example = json.loads((d / "input_example.json").read_text())
    serving = json.loads((d / "serving_input_example.json").read_text())["dataframe_split"]
    assert serving["columns"] == example["columns"] == list(FEATURE_NAMES)
    assert serving["data"] == example["data"]
    rows = pd.DataFrame(example["data"], columns=example["columns"], dtype="float64")
    # then they are the invented persons of models/mlflow_edge/example.py for the model's window, and the
    # daily commuter among them, whose crossings are on the minute, matches no real person's row
    invented = synthetic_example(AS_OF, 28)
    pd.testing.assert_frame_equal(rows, invented, check_exact=False, rtol=1e-12)
    real = store["features"][list(FEATURE_NAMES)].astype("float64").to_numpy()
    row = rows.to_numpy()[0]
    assert not np.all((real == row) | (np.isnan(real) & np.isnan(row)), axis=1).any()


def test_the_documented_body_for_mlflow_models_serve_is_accepted(store):
    """The issuer's guide documents the body `mlflow models serve` takes; the logged pyfunc
    predicts on it."""
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    guide = (PROJECT_ROOT / "docs" / "guide" / "issuer.md").read_text()
    block = re.search(r"<!-- mlflow-serve-body -->\s*```json\n(.*?)```", guide, re.S)
    assert block, "docs/guide/issuer.md has no mlflow-serve-body example"
    body = json.loads(block.group(1))
    with own_store(store["root"]):
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{store['version']}")
    frame = infer_and_parse_data(body, model.metadata.get_input_schema())
    answer = model.predict(frame)
    assert list(answer.columns) == ["commuter_probability", "badge"]
    assert len(answer) == len(body["dataframe_split"]["data"])
