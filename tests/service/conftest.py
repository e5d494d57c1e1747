"""A real `commuter serve` process on a simulated world, a trained champion and published decisions.

Built once per session: simulate 3,000 persons, train (`commuter train`, or a small booster when the
command is not there), score and publish (`commuter score`, or `stores.decisions.publish`), then
start the server through `serving.run.serve` in a subprocess with its own stores, BentoML home and
tokens. The global autouse fixture re-points MLflow per test; everything here passes its own
environment explicitly instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.service.bodies import trip_entries

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AS_OF = dt.date(2021, 10, 20)
TOKENS = ("svc-test-token-alpha", "svc-test-token-beta")
# A worker imports BentoML, FastAPI, MLflow and LightGBM before it answers: about 7 s of CPU, but
# minutes of wall time when the machine's two cores are shared with other test runs.
READY_TIMEOUT = 300.0


@dataclass
class World:
    root: Path
    env: dict[str, str]
    trips: pd.DataFrame  # contract columns, ts as tz-aware pandas timestamps
    persons: pd.DataFrame  # archetype and truth per person
    batch: pd.DataFrame  # person_id, commuter_probability, badge, threshold, model_version
    model_version: str
    how: dict[str, str] = field(default_factory=dict)  # which path built the model and decisions

    @property
    def decisions_path(self) -> Path:
        return Path(self.env["COMMUTER_DECISIONS"])

    def trips_of(self, person_id: str) -> list[dict]:
        return trip_entries(self.trips[self.trips["person_id"] == person_id])


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def store_env(root: Path, tokens: tuple[str, ...] = TOKENS) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "COMMUTER_", "BENTOML_"))
    }
    env.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "COMMUTER_DECISIONS": str(root / "decisions.duckdb"),
            "COMMUTER_API_TOKENS": ",".join(tokens),
            "BENTOML_HOME": str(root / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    return env


def has_command(name: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [str(BIN / "commuter"), name, "--help"], env=env, capture_output=True, check=False
    )
    return done.returncode == 0


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(BIN / "commuter"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"commuter {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def run_python(code: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"helper failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


# Ensures a champion exists after `commuter train` (which promotes only when its gates pass: the
# service tests need a champion, not a promotion decision) and prints its version.
_ENSURE_CHAMPION = """
from mlflow.tracking import MlflowClient
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.settings import MODEL_NAME
registry.configure()
version = registry.champion_version()
if version is None:
    versions = MlflowClient().search_model_versions(f"name='{MODEL_NAME}'")
    version = str(max(int(v.version) for v in versions))
    registry.set_champion(version)
print(version)
"""

# Fallback when `commuter train` does not exist: a small booster, uncalibrated, registered by hand.
_TRAIN_SMALL = """
import sys, datetime as dt
import lightgbm as lgb, mlflow, pandas as pd
from commuter_badge.features.build import build_features, model_matrix
from commuter_badge.features.read import read_labels
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.core.bundle import CommuterModel, ModelMeta
registry.configure()
trips, labels, as_of = sys.argv[1], sys.argv[2], dt.date.fromisoformat(sys.argv[3])
frame = build_features(trips, as_of).merge(read_labels(labels), on="person_id")
booster = lgb.train({"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1,
                     "seed": 0}, lgb.Dataset(model_matrix(frame), frame["is_commuter"]), 60)
model = CommuterModel(booster, ModelMeta(threshold=0.5, target_fpr=0.05, calib_a=1.0, calib_b=0.0))
mlflow.set_experiment("commuter-badge")
registry.ensure_registered_model()
with mlflow.start_run():
    info = registry.log_model(model, frame)
registry.set_champion(str(info.registered_model_version))
print(info.registered_model_version)
"""

# Fallback when `commuter score` does not exist: the same numbers through the library.
_SCORE_AND_PUBLISH = """
import sys, datetime as dt
import pandas as pd
from commuter_badge.features.build import build_features
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.stores.decisions import publish
registry.configure()
model = registry.load_model(None)
trips, as_of, out = sys.argv[1], dt.date.fromisoformat(sys.argv[2]), sys.argv[3]
features = build_features(trips, as_of, model.meta.window_days)
proba = model.predict_proba(features)
frame = pd.DataFrame({"person_id": features["person_id"].astype(str), "commuter_probability": proba,
                      "badge": model.decide(proba), "threshold": model.threshold,
                      "model_version": str(model.version)})
frame.to_parquet(out, index=False)
publish(frame, as_of, __import__("os").environ["COMMUTER_DECISIONS"])
print(len(frame))
"""


def _with_argv(code: str, *argv: str) -> str:
    return f"import sys; sys.argv = ['helper', *{list(argv)!r}]\n" + code


def build_world(root: Path) -> World:
    from commuter_badge.simulate.world import simulate_world, write_world

    env = store_env(root)
    paths = write_world(simulate_world(persons=3000, as_of=AS_OF, seed=11), root / "world")
    trips, labels, as_of = str(paths["trips"]), str(paths["labels"]), AS_OF.isoformat()
    how = {}
    if has_command("train", env):
        run_cli(
            [
                "train",
                "--trips",
                trips,
                "--labels",
                labels,
                "--as-of",
                as_of,
                "--target-fpr",
                "0.05",
            ],
            env,
            root,
        )
        version = run_python(_ENSURE_CHAMPION, env, root)
        how["model"] = "commuter train"
    else:
        version = run_python(_with_argv(_TRAIN_SMALL, trips, labels, as_of), env, root)
        how["model"] = "small booster"
    scores = root / "scores.parquet"
    if has_command("score", env):
        run_cli(
            ["score", "--trips", trips, "--as-of", as_of, "--out", str(scores), "--publish"],
            env,
            root,
        )
        how["decisions"] = "commuter score"
    else:
        run_python(_with_argv(_SCORE_AND_PUBLISH, trips, as_of, str(scores)), env, root)
        how["decisions"] = "stores.decisions.publish"
    trips_frame = pd.read_parquet(paths["trips"])
    return World(
        root=root,
        env=env,
        trips=trips_frame,
        persons=pd.read_parquet(paths["persons"]),
        batch=pd.read_parquet(scores),
        model_version=str(version),
        how=how,
    )


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], cwd: Path, workers: int = 1) -> Server:
    port = free_port()
    log_path = cwd / f"server-{port}.log"
    log = log_path.open("wb")
    code = f"from commuter_badge.serving.run import serve; serve(port={port}, workers={workers}, host='127.0.0.1')"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, env=env)


def wait_until(server: Server, path: str, want: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode}:\n{server.logs()[-5000:]}")
        try:
            r = httpx.get(server.url + path, timeout=2)
            last = f"{r.status_code} {r.text[:200]}"
            if r.status_code == want:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    stop_server(server)
    pytest.fail(
        f"server did not answer {want} on {path} within {timeout:.0f} s (last: {last}):\n"
        f"{server.logs()[-5000:]}"
    )


def stop_server(server: Server) -> None:
    if server.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("service-world"))


@pytest.fixture(scope="session")
def server(world: World) -> Iterator[Server]:
    """The service with two workers (as in production), ready to answer."""
    srv = start_server(world.env, world.root, workers=2)
    try:
        wait_until(srv, "/readyz", 200)
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def empty_server(tmp_path_factory) -> Iterator[Server]:
    """The service with no champion and no decision store: alive, not ready."""
    root = tmp_path_factory.mktemp("service-empty")
    srv = start_server(store_env(root), root, workers=1)
    try:
        wait_until(srv, "/livez", 200)
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[0]}"}


@pytest.fixture
def client(server: Server, auth: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as c:
        yield c
