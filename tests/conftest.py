"""Shared fixtures: every test gets its own MLflow store and decision store under tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so CI's verdict never rests on luck;
# HYPOTHESIS_PROFILE=explore searches afresh (do that when changing a property or its code).
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

AS_OF = dt.date(2021, 10, 20)  # window holds National Day holidays and two make-up working days
# A synthetic 2027 holiday schedule (chinesecalendar 1.11.0 stops at 2026) and an as_of whose
# 28-day window spans New Year 2027.
CALENDAR_2027 = Path(__file__).resolve().parent / "data" / "calendar_2027.csv"
AS_OF_2027 = dt.date(2027, 1, 20)


@pytest.fixture(autouse=True)
def isolated_stores(tmp_path, monkeypatch):
    """Point MLflow tracking/registry and the decision store at tmp_path, so no test touches real ones."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("COMMUTER_DECISIONS", str(tmp_path / "decisions.duckdb"))
    monkeypatch.chdir(tmp_path)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@pytest.fixture(scope="session")
def shared_postgres():
    """One PostgreSQL cluster for the run, for tests that need only databases of their own
    (tests/postgres.py `fresh_database`, each under a name no other test uses): initdb and a start
    cost seconds each time. Tests that stop or restart the server start a cluster of their own."""
    from tests.postgres import postgres_cluster

    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def calendar_2027():
    """The synthetic 2027 schedule as a working-day calendar, for a test to pass where it builds
    features or a world (no process-wide calendar to set or reset)."""
    from commuter_badge.features.workdays import open_calendar

    return open_calendar(CALENDAR_2027)


def pytest_sessionfinish(session, exitstatus):
    """With COMMUTER_TEST_DURATIONS=FILE, write the slowest tests' durations there (JSON)."""
    out = os.environ.get("COMMUTER_TEST_DURATIONS")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not out or reporter is None:
        return
    reports = [r for kind in ("passed", "failed") for r in reporter.stats.get(kind, [])]
    per_test: dict[str, float] = {}
    for r in reports:
        per_test[r.nodeid] = per_test.get(r.nodeid, 0.0) + r.duration
    for r in reporter.stats.get("", []):  # setup and teardown phases
        if hasattr(r, "nodeid") and hasattr(r, "duration"):
            per_test[r.nodeid] = per_test.get(r.nodeid, 0.0) + r.duration
    slowest = sorted(per_test.items(), key=lambda kv: -kv[1])[:40]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    body = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit or None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "exit_status": int(exitstatus),
        "total_seconds": round(sum(per_test.values()), 1),
        "tests": len(per_test),
        "slowest": [{"test": k, "seconds": round(v, 2)} for k, v in slowest],
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(body, indent=2) + "\n")
