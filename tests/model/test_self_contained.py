"""A model version is self-contained: it loads anywhere from its own code and requirements, and
it says which code it was trained with, so other code refuses it by naming that code version."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core import provenance
from commuter_badge.models.core.bundle import CommuterModel, ModelError
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.mlflow_edge.packaging import RUNTIME_DISTRIBUTIONS
from commuter_badge.settings import MODEL_NAME
from tests.conftest import AS_OF

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Runs inside the environment under test: load the logged model, predict, and say from where the
# package came. Fails if the project can be imported before the model puts its own code in place.
_LOAD_AND_PREDICT = """
import importlib.util, json, sys, time
model_dir, features, out = sys.argv[1:4]
assert importlib.util.find_spec("commuter_badge") is None, "the project is importable already"
start = time.perf_counter()
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(model_dir)
loaded = time.perf_counter() - start
import pandas as pd
frame = pd.read_parquet(features)
names = model.metadata.get_input_schema().input_names()
pred = model.predict(frame[names].astype("float64"))
pred.insert(0, "person_id", frame["person_id"].astype(str).to_numpy())
pred.to_parquet(out, index=False)
import commuter_badge
print(json.dumps({"load_seconds": loaded, "package_file": commuter_badge.__file__}))
"""

# Runs in this project's environment: the distributions that the package modules a load and a
# predict import name in their own import statements (what pip must install for them; optional
# imports inside third-party packages are those packages' business).
_IMPORTED_DISTRIBUTIONS = """
import ast, json, sys
from importlib.metadata import packages_distributions
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
names = model.metadata.get_input_schema().input_names()
model.predict(pd.read_parquet(sys.argv[2])[names].astype("float64"))
ours = [m for name, m in sys.modules.items() if name.split(".")[0] == "commuter_badge"]
top = set()
for module in ours:
    for node in ast.walk(ast.parse(open(module.__file__).read())):
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top.add(node.module.split(".")[0])
dists = packages_distributions()
print(json.dumps({"files": sorted(m.__file__ for m in ours),
                  "dists": {t: dists[t] for t in sorted(top - {"commuter_badge"}) if t in dists}}))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("MLFLOW_", "COMMUTER_"))
    }
    env.update(extra)
    return env


def _run(argv: list, env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A version logged and registered through `registry.log_model` (a small booster on a simulated
    month, so this does not hang on training), downloaded as a plain MLflow model directory, with
    its features and the `commuter score` answers for that month."""
    import lightgbm as lgb

    from commuter_badge.features.build import build_features, model_matrix
    from commuter_badge.features.read import read_labels
    from commuter_badge.models.core.bundle import ModelMeta
    from commuter_badge.simulate.world import simulate_world, write_world

    root = tmp_path_factory.mktemp("self-contained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry.configure(uri)
    paths = write_world(simulate_world(persons=3000, as_of=AS_OF, seed=23), root / "world")
    frame = build_features(paths["trips"], AS_OF).merge(
        read_labels(paths["labels"]), on="person_id"
    )
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(model_matrix(frame), frame["is_commuter"]), 60)
    meta = ModelMeta(threshold=0.5, target_fpr=0.05, calib_a=1.3, calib_b=-0.2)
    mlflow.set_experiment("commuter-badge")
    registry.ensure_registered_model()  # log_model registers into it (it creates none)
    with mlflow.start_run():
        info = registry.log_model(CommuterModel(booster, meta), frame)
    version = str(info.registered_model_version)
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=str(root / "model")
        )
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "COMMUTER_DECISIONS": str(root / "d.duckdb")}
    trips, as_of = paths["trips"], AS_OF.isoformat()
    features, scores = root / "features.parquet", root / "scores.parquet"
    _run(
        [BIN / "commuter", "features", "--trips", trips, "--as-of", as_of, "--out", features],
        env,
        root,
    )
    model_uri = f"models:/{MODEL_NAME}/{version}"
    _run(
        [BIN / "commuter", "score", "--trips", trips, "--as-of", as_of, "--out", scores]
        + ["--model", model_uri],
        env,
        root,
    )
    return {
        "root": root,
        "dir": model_dir,
        "features": features,
        "scores": scores,
        "version": version,
        "model": registry.load_model(model_uri),
    }


def test_requirements_name_real_runtime_dependencies_pinned(logged):
    lines = (logged["dir"] / "requirements.txt").read_text().split()
    assert not any(line.startswith("commuter-badge") for line in lines), lines
    pinned = {_normal(line.split("==")[0]): line.split("==")[1] for line in lines if "==" in line}
    missing = [d for d in RUNTIME_DISTRIBUTIONS if _normal(d) not in pinned]
    assert not missing, f"requirements.txt lacks {missing}: {lines}"
    assert len(pinned) == len([line for line in lines if line.strip()]), f"unpinned: {lines}"


def test_every_project_dependency_a_load_imports_is_required(logged):
    """Every distribution the loaded package modules import is in the version's requirements."""
    out = _run(
        [sys.executable, "-c", _IMPORTED_DISTRIBUTIONS, logged["dir"], logged["features"]],
        _clean_env(),
        logged["root"],
    )
    found = json.loads(out.strip().splitlines()[-1])
    code_dir = str(logged["dir"].resolve())
    assert all(f.startswith(code_dir) for f in found["files"]), "loaded the checkout's code"
    listed = {_normal(d) for d in RUNTIME_DISTRIBUTIONS}
    unlisted = {
        top: dists
        for top, dists in found["dists"].items()
        if not listed & {_normal(d) for d in dists}
    }
    assert not unlisted, f"a load imports {unlisted}, not in packaging.RUNTIME_DISTRIBUTIONS"
    assert {"lightgbm", "duckdb", "pandas"} <= set(found["dists"]), found["dists"]


def test_version_records_the_code_it_was_trained_with(logged):
    meta = mlflow.models.Model.load(str(logged["dir"] / "MLmodel")).metadata["code"]
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["feature_sql_sha256"] == provenance.feature_sql_digest(
        logged["model"].meta.window_days
    )
    assert meta["package_version"]
    assert len(meta["git_commit"].split("+")[0]) == 40, meta["git_commit"]
    assert logged["model"].meta.extra["code"] == meta


def test_other_features_are_refused_naming_the_code_to_deploy(logged):
    """As after a feature is added: the old version's message names its package and commit."""
    model = logged["model"]
    code = model.meta.extra["code"]
    older = dataclasses.replace(model.meta, feature_names=model.meta.feature_names[:-1])
    with pytest.raises(ModelError) as err:
        CommuterModel(model.booster, older, version="3")
    message = str(err.value)
    assert "model version 3" in message
    assert code["package_version"] in message, message
    assert code["git_commit"] in message, message
    changed_sql = dataclasses.replace(
        model.meta, extra={"code": {**code, "feature_sql_sha256": "0" * 64}}
    )
    with pytest.raises(ModelError, match="feature SQL differs"):
        CommuterModel(model.booster, changed_sql, version="3")


@pytest.mark.slow
def test_loads_in_a_fresh_venv_from_its_own_requirements(logged, capsys):
    """New venv outside the checkout, only the version's requirements.txt, no project installed:
    the pyfunc loads and its probabilities equal `commuter score`'s within 1e-6."""
    root = logged["root"]
    assert not root.resolve().is_relative_to(PROJECT_ROOT)
    venv = root / "venv"
    start = time.perf_counter()
    _run([sys.executable, "-m", "venv", venv], _clean_env(), root)
    _run(
        [
            venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "-q",
            "-r",
            logged["dir"] / "requirements.txt",
        ],
        _clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        root,
        timeout=1500,
    )
    install_seconds = time.perf_counter() - start
    predicted = root / "fresh.parquet"
    start = time.perf_counter()
    out = _run(
        [
            venv / "bin" / "python",
            "-c",
            _LOAD_AND_PREDICT,
            logged["dir"],
            logged["features"],
            predicted,
        ],
        _clean_env(),
        root,
    )
    run_seconds = time.perf_counter() - start
    info = json.loads(out.strip().splitlines()[-1])
    assert Path(info["package_file"]).resolve().is_relative_to(logged["dir"].resolve()), info

    fresh = pd.read_parquet(predicted)
    batch = pd.read_parquet(logged["scores"])
    both = batch.merge(fresh, on="person_id", suffixes=("_batch", "_fresh"))
    assert len(both) == len(batch) == len(fresh) > 1000
    gap = np.abs(both["commuter_probability_batch"] - both["commuter_probability_fresh"]).max()
    assert gap <= 1e-6, f"fresh-venv probabilities differ from commuter score by {gap}"
    assert (both["badge_batch"] == both["badge_fresh"]).all()
    with capsys.disabled():
        print(
            f"\nfresh venv: create + pip install {install_seconds:.1f} s; "
            f"mlflow.pyfunc.load_model {info['load_seconds']:.1f} s "
            f"(process with load and predict of {len(fresh)} persons {run_seconds:.1f} s)"
        )
