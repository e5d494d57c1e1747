"""One model version per running service, and a Bento per version, over real HTTP.

- `commuter serve` resolves the champion once: after the alias moves and BentoML restarts a killed
  worker, every `/score` and `/readyz` answer still names the version the service started with.
- `python -m commuter_badge.serving.bento` stages and builds a Bento of a version (in a private
  temporary directory, removed afterwards); `bentoml serve` of it from another directory, with no
  registry to read and the default stores, answers `/score` as the service does, and a review
  POSTed to it lands in that directory's review store, where `commuter reviews list` finds it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from .conftest import (
    AS_OF,
    BIN,
    PROJECT_ROOT,
    TOKENS,
    Server,
    free_port,
    run_python,
    start_server,
    stop_server,
    wait_until,
)

pytestmark = pytest.mark.service

AUTH = {"Authorization": f"Bearer {TOKENS[0]}"}
WORKER_MODULE = "_bentoml_impl.worker.service"

# Registers the champion's artifacts again as a new version (only its number differs) and prints it.
_REGISTER_AGAIN = """
from mlflow.tracking import MlflowClient
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.settings import MODEL_NAME
registry.configure()
client = MlflowClient()
champion = client.get_model_version(MODEL_NAME, registry.champion_version())
print(client.create_model_version(MODEL_NAME, source=champion.source, run_id=champion.run_id).version)
"""

_MOVE_ALIAS = """
import sys
from commuter_badge.models.mlflow_edge import registry
registry.configure()
registry.set_champion(sys.argv[1])
print(registry.champion_version())
"""


def score_body(world, n: int = 30) -> dict:
    ids = world.batch["person_id"].head(n).tolist()
    return {
        "as_of": AS_OF.isoformat(),
        "persons": [{"person_id": p, "trips": world.trips_of(p)} for p in ids],
    }


def worker_pids(server: Server) -> list[int]:
    """The BentoML worker processes under the server (their command line runs WORKER_MODULE)."""
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if any(WORKER_MODULE in part for part in child.cmdline()):
                found.append(child.pid)
        except psutil.Error:  # exited meanwhile
            continue
    return sorted(found)


REVIEWER_TOKEN = "model-version-reviewer-token"


def post_review(server: Server, person_id: str) -> str:
    """A grant for `person_id` POSTed to `server`; its case id."""
    body = {
        "person_id": person_id,
        "decision": "grant",
        "reason": "residence and employment proof checked at the community office",
        "evidence": ["residence_permit"],
        "reviewer": "xianghe-community-07",
        "valid_until": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
    }
    headers = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}
    r = httpx.post(server.url + "/reviews", json=body, headers=headers, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


def readyz_version(server: Server) -> str:
    r = httpx.get(server.url + "/readyz", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def test_a_restarted_worker_serves_the_version_the_service_started_with(world, tmp_path):
    """The alias moves, a worker is killed and restarted by BentoML: every answer still names the
    version the service started with; restarting the service serves the new champion."""
    shutil.copy(world.root / "mlflow.db", tmp_path / "mlflow.db")  # artifacts stay where they are
    env = {**world.env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    pinned = world.model_version
    newer = run_python(_REGISTER_AGAIN, env, tmp_path)
    assert newer != pinned
    srv = start_server(env, tmp_path, workers=2)
    try:
        wait_until(srv, "/readyz", 200)
        assert {readyz_version(srv) for _ in range(6)} == {pinned}
        moved = run_python(
            f"import sys; sys.argv = ['x', {newer!r}]\n" + _MOVE_ALIAS, env, tmp_path
        )
        assert moved == newer
        before = worker_pids(srv)
        assert len(before) == 2, f"expected two workers, found {before}:\n{srv.logs()[-3000:]}"
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = worker_pids(srv)
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"BentoML did not restart the killed worker:\n{srv.logs()[-3000:]}")
        restarted = (set(now) - set(before)).pop()
        wait_until(srv, "/readyz", 200)
        body = score_body(world, 5)
        answers = []
        for _ in range(16):  # a new connection each time, so both workers answer
            r = httpx.post(srv.url + "/score", json=body, headers=AUTH, timeout=60)
            assert r.status_code == 200, r.text
            answers.append(r.json()["model_version"])
        answers += [readyz_version(srv) for _ in range(8)]
        assert set(answers) == {pinned}, f"answers named {answers}; pinned {pinned}"
        assert psutil.pid_exists(restarted), "the restarted worker died again"
    finally:
        stop_server(srv)
    # A restart of the service is what picks up the new champion.
    srv = start_server(env, tmp_path, workers=1)
    try:
        wait_until(srv, "/readyz", 200)
        assert readyz_version(srv) == newer
    finally:
        stop_server(srv)


@pytest.mark.slow
def test_a_bento_serves_the_same_answers_from_another_directory(world, server, tmp_path, capsys):
    version = readyz_version(server)
    env = {**world.env, "BENTOML_HOME": str(tmp_path / "bentoml-home")}
    done = subprocess.run(
        [str(BIN / "python"), "-m", "commuter_badge.serving.bento"]
        + ["--model", f"models:/commuter-badge/{version}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    built = re.search(r"built Bento (\S+) in ([\d.]+) s", done.stdout)
    assert built, done.stdout
    tag, seconds = built.group(1), float(built.group(2))
    staged = re.search(
        r"staged model version \S+ in (\S+) \(removed after the build\)", done.stdout
    )
    assert staged, done.stdout
    assert not Path(staged.group(1)).is_relative_to(PROJECT_ROOT), "staged outside the checkout"
    assert not Path(staged.group(1)).exists(), "and removed after the build"

    # Another directory, no tracking store and no checkout on the path: the model and the code
    # can only come from the Bento. Every store is the default, a file of this directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(world.decisions_path, elsewhere / "decisions.duckdb")
    stores = ("PYTHONPATH", "MLFLOW_TRACKING_URI", "COMMUTER_DECISIONS", "COMMUTER_REVIEWS")
    serve_env = {k: v for k, v in env.items() if k not in stores}
    serve_env["COMMUTER_REVIEWER_TOKENS"] = REVIEWER_TOKEN
    port = free_port()
    log_path = elsewhere / "bento.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            env=serve_env,
            cwd=elsewhere,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    bento = Server(
        url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, env=serve_env
    )
    try:
        wait_until(bento, "/readyz", 200, timeout=180)
        assert readyz_version(bento) == version
        body = score_body(world, 40)
        want = httpx.post(server.url + "/score", json=body, headers=AUTH, timeout=60)
        got = httpx.post(bento.url + "/score", json=body, headers=AUTH, timeout=60)
        assert want.status_code == got.status_code == 200, got.text
        assert got.json() == want.json()
        case_id = post_review(bento, world.batch["person_id"].iloc[0])
        assert (elsewhere / "reviews.db").exists(), "the review store of the serving directory"
        assert not list((tmp_path / "bentoml-home" / "bentos").glob("*/*/src/reviews.db*"))
        listed = subprocess.run(
            [str(BIN / "commuter"), "reviews", "list"],
            env=serve_env, cwd=elsewhere, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert case_id in listed.stdout, listed.stdout + listed.stderr
        src = (tmp_path / "bentoml-home" / "bentos").glob(
            "*/*/src/commuter_badge/serving/service.py"
        )
        assert list(src), "the Bento carries no service code of its own"
    finally:
        stop_server(bento)
    with capsys.disabled():
        print(f"\nbentoml build of model version {version}: {seconds:.1f} s ({tag})")
