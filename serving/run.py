"""Start the service for real: `bentoml serve serving.service:CommuterBadge` with explicit workers.

`commuter serve [--port N] [--workers N]` calls `serve(...)`, which replaces the calling process
with the BentoML server (signals such as Ctrl-C then reach it directly).

BentoML 1.4's `serve` command has no workers option: the worker count is service configuration,
so it is passed as `BENTOML_CONFIG_OVERRIDES` (merged with any override already in the
environment). The server's workers run in the project root (`--working-dir`), so every path
setting, defaults included (the decision store, the review store, a SQLite tracking store, the
holiday schedule file of `--calendar` / COMMUTER_CALENDAR), is made absolute against the caller's
directory first (`settings.absolute_paths`): the service reads and writes the same stores as
`commuter score` and `commuter reviews` run there. The service does the same again in the server
process before it starts workers (`CommuterBadge._before_workers`), which is what covers a Bento.

Each server gets its own BentoML home, `<BENTOML_HOME or ./.bentoml>/commuter_badge-<port>`:
BentoML keeps its Prometheus multiprocess files in `<home>/prometheus_multiproc_dir` and wipes
that directory at start, so two services sharing a home (the default `~/bentoml`) lost each
other's counts. The server runs with umask 077: those files, like every store and output of the
project, are readable by their owner only. The host defaults to loopback (COMMUTER_HOST).

The champion alias is resolved to a version number once, here, and passed to the workers as
COMMUTER_MODEL_VERSION: a worker BentoML restarts loads the same version as its siblings, whatever
the alias says by then. A new champion is served after a restart (or a rolling restart).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from commuter_badge.models.mlflow_edge import registry
from commuter_badge.serving.service import SERVICE_NAME
from commuter_badge.settings import (
    DEFAULT_HOST,
    absolute_location,
    absolute_paths,
    load_settings,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICE_TARGET = "commuter_badge.serving.service:CommuterBadge"


def service_home(port: int, env: dict[str, str], cwd: Path | None = None) -> Path:
    """This server's own BentoML home (and so its own Prometheus directory), owner-only."""
    base = Path(env.get("BENTOML_HOME") or (cwd or Path.cwd()) / ".bentoml").expanduser()
    home = (base / f"{SERVICE_NAME}-{int(port)}").absolute()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    return home


def pinned_model_version(given: str | None, tracking_uri: str) -> str | None:
    """The one version every worker of this server loads, also after a restart: `given`
    (COMMUTER_MODEL_VERSION) or the champion now; None without a champion (the workers then
    wait for one)."""
    if given:
        return given
    registry.configure(tracking_uri)
    return registry.champion_version()


def server_env(
    workers: int,
    base: dict[str, str] | None = None,
    calendar: str | Path | None = None,
    port: int | None = None,
) -> dict[str, str]:
    """The environment for the server: the caller's, with absolute stores and the worker count."""
    env = dict(os.environ if base is None else base)
    settings = load_settings()
    env.update(absolute_paths(settings))  # every path setting, defaults included
    if calendar:
        env["COMMUTER_CALENDAR"] = absolute_location(str(calendar), Path.cwd())
    if version := pinned_model_version(settings.model_version, env["MLFLOW_TRACKING_URI"]):
        env["COMMUTER_MODEL_VERSION"] = version
    if port is not None:
        env["BENTOML_HOME"] = str(service_home(port, env))
    overrides = json.loads(env.get("BENTOML_CONFIG_OVERRIDES") or "{}")
    overrides.setdefault("services", {}).setdefault(SERVICE_NAME, {})["workers"] = int(workers)
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    # One thread per worker for OpenMP (LightGBM) and BLAS; workers are the unit of parallelism.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return env


def command(port: int = 3000, host: str = DEFAULT_HOST) -> list[str]:
    """The `bentoml serve` command line (the worker count travels in the environment)."""
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which(
        "bentoml"
    )
    head = [bentoml] if bentoml else [sys.executable, "-m", "bentoml"]
    return [
        *head,
        "serve",
        SERVICE_TARGET,
        "--working-dir",
        str(PROJECT_ROOT),
        "--host",
        host,
        "--port",
        str(int(port)),
    ]


def serve(
    port: int = 3000,
    workers: int = 1,
    host: str | None = None,
    calendar: str | Path | None = None,
) -> None:
    """Replace this process with the BentoML server on `host:port` with `workers` processes;
    `calendar` (default COMMUTER_CALENDAR) is the holiday schedule file the workers load;
    `host` None means COMMUTER_HOST, by default 127.0.0.1."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (got {workers})")
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535 (got {port})")
    argv = command(port, host or load_settings().host)
    env = server_env(workers, calendar=calendar, port=port)
    os.umask(0o077)  # inherited across exec: the server's metrics files and logs, owner-only
    os.execvpe(argv[0], argv, env)  # noqa: S606 - argv is ours, no shell
