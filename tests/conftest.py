"""Shared fixtures: every test gets its own MLflow store and decision store under tmp_path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

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


@pytest.fixture
def calendar_2027():
    """The synthetic 2027 schedule as this process's working-day calendar, for one test."""
    from commuter_badge.features.workdays import use_calendar

    return use_calendar(CALENDAR_2027)


@pytest.fixture(autouse=True)
def library_calendar_after():
    """Whatever a test chose (`use_calendar`, an in-process `--calendar`), the next starts clean."""
    yield
    from commuter_badge.features import workdays

    if workdays.active_calendar().schedule is not None:
        workdays.use_calendar(None)
