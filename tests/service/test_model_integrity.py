"""A real `commuter serve` refuses a champion whose files changed after registration.

The adversarial probe edited the champion's threshold in `model.json` (served: `/readyz` ready,
`/score` answered with threshold 0.05) and truncated its `booster.txt` (the workers crash-looped on
LightGBM fatal errors and UnicodeDecodeError tracebacks, `/livez` never came up). Now the service
comes up alive and not ready, `/readyz` names the file, and no worker dies over it. The files are
put back afterwards, so the session's other servers serve the champion as before.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import World, start_server, stop_server, wait_until
from tests.service.procs import bento_workers


def champion_dir(world: World) -> Path:
    from mlflow.tracking import MlflowClient

    uri = world.env["MLFLOW_TRACKING_URI"]
    version = MlflowClient(uri, uri).get_model_version("commuter-badge", world.model_version)
    digest = version.tags["sha256.booster.txt"]
    for booster in world.root.glob("mlruns/**/artifacts/commuter_model/booster.txt"):
        from commuter_badge.models.core.bundle import sha256_file

        if sha256_file(booster) == digest:
            return booster.parent
    raise AssertionError("the champion's files are not under the world's mlruns")


@contextlib.contextmanager
def restored(directory: Path) -> Iterator[Path]:
    saved = {p: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    try:
        yield directory
    finally:
        for p, data in saved.items():
            p.write_bytes(data)


def lower_threshold(d: Path) -> str:
    meta = json.loads((d / "model.json").read_text())
    meta["threshold"] = 0.05
    (d / "model.json").write_text(json.dumps(meta, indent=2))
    return "model.json"


def truncate_booster(d: Path) -> str:
    data = (d / "booster.txt").read_bytes()
    (d / "booster.txt").write_bytes(data[: len(data) // 2])
    return "booster.txt"


@pytest.mark.parametrize(
    "tamper", [lower_threshold, truncate_booster], ids=["threshold", "truncated"]
)
def test_serve_refuses_a_changed_champion_without_crashing(world, tamper):
    with restored(champion_dir(world)) as d:
        name = tamper(d)
        srv = start_server(world.env, world.root, workers=1)
        try:
            # then it is alive (no crash loop) but not ready, and says which file and why
            wait_until(srv, "/livez", 200)
            workers = {p.pid for p in bento_workers(srv.process.pid)}
            answer = httpx.get(srv.url + "/readyz", timeout=10)
            assert answer.status_code == 503, answer.text
            missing = " ".join(answer.json()["missing"])
            assert f"model file {name} does not match the sha256 recorded in the registry" in (
                missing
            ), missing
            score = httpx.post(
                srv.url + "/score",
                json={"as_of": "2021-10-20", "persons": []},
                headers={
                    "Authorization": f"Bearer {world.env['COMMUTER_API_TOKENS'].split(',')[0]}"
                },
                timeout=30,
            )
            assert score.status_code == 503, score.text
            time.sleep(6)  # past one retry of the model load
            assert httpx.get(srv.url + "/readyz", timeout=10).status_code == 503
            assert {p.pid for p in bento_workers(srv.process.pid)} == workers, "a worker restarted"
            logs = srv.logs()
            assert "Traceback" not in logs, logs[-3000:]
            assert "LightGBMError" not in logs, logs[-3000:]
        finally:
            stop_server(srv)
