"""Shared fixtures: every test gets its own MLflow store and decision store under tmp_path."""

from __future__ import annotations

import datetime as dt

import pytest

AS_OF = dt.date(2021, 10, 20)  # window holds National Day holidays and two make-up working days


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
