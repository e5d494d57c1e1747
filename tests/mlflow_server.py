"""A real shared MLflow tracking server for tests: `mlflow server` on a free loopback port.

Its backend store is a fresh database in a PostgreSQL cluster (tests/postgres.py) and its artifacts
are proxied (`--serve-artifacts` with `--artifacts-destination` a temp directory), as a team runs
it: clients hold only `http://host:port` and never touch the database or the artifact files. One
worker, so the machine's other tests keep their cores. Stopped (process group) after use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.postgres import Postgres, fresh_database

START_TIMEOUT = 180.0  # a fresh database runs every MLflow migration first


@dataclass
class MlflowServer:
    url: str  # http://127.0.0.1:PORT, the MLFLOW_TRACKING_URI clients use
    backend: str  # the server's own database URL (never given to clients)
    artifacts: Path
    log: Path
    process: subprocess.Popen


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"mlflow server not ready in {START_TIMEOUT:.0f} s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(pg: Postgres, database: str = "mlflow") -> Iterator[MlflowServer]:
    """`mlflow server` on a new database `database` of `pg`, with proxied artifacts."""
    backend = fresh_database(pg, database).replace("postgresql://", "postgresql+psycopg://", 1)
    root = Path(tempfile.mkdtemp(prefix="commuter-mlflow-server-"))
    artifacts, log = root / "artifacts", root / "server.log"
    artifacts.mkdir()
    port = _free_port()
    cmd = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", backend,
        "--serve-artifacts", "--artifacts-destination", artifacts.as_uri(),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # MLflow's job runner (Huey consumers for GenAI judges and trace roll-ups, several processes
    # each importing MLflow) does nothing for tracking, the registry or artifacts: off, so the
    # server starts in less time and leaves the 2 cores to the commands under test.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield MlflowServer(url, backend, artifacts, log, process)
    finally:
        _stop(process)
