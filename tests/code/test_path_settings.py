"""Every path setting, defaults included, made absolute against the directory a process started in
(what `commuter serve` and a Bento's server pass to their workers: issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from commuter_badge.settings import Settings, absolute_location, absolute_paths


def test_the_defaults_are_all_made_absolute(monkeypatch, tmp_path: Path):
    for var in (
        "MLFLOW_TRACKING_URI",
        "COMMUTER_DECISIONS",
        "COMMUTER_REVIEWS",
        "COMMUTER_CALENDAR",
        "COMMUTER_PERSON_KEY_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    assert absolute_paths(Settings(), tmp_path) == {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "COMMUTER_DECISIONS": f"{tmp_path}/decisions.duckdb",
        "COMMUTER_REVIEWS": f"sqlite:///{tmp_path}/reviews.db",
        "COMMUTER_PERSON_KEY_FILE": f"{tmp_path}/person.key",
    }


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("sqlite:///reviews.db", "sqlite:////op/reviews.db"),
        ("sqlite+pysqlite:///sub/r.db?timeout=5", "sqlite+pysqlite:////op/sub/r.db?timeout=5"),
        ("sqlite:////abs/r.db", "sqlite:////abs/r.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://user@db.internal/reviews", "postgresql://user@db.internal/reviews"),
        ("http://mlflow.internal:5000", "http://mlflow.internal:5000"),
        ("databricks", "databricks"),
        ("file:./mlruns", "file:/op/mlruns"),
        ("file:///abs/mlruns", "file:///abs/mlruns"),
        ("decisions.duckdb", "/op/decisions.duckdb"),
        ("./cal/2027.txt", "/op/cal/2027.txt"),
        ("/abs/decisions.duckdb", "/abs/decisions.duckdb"),
    ],
)
def test_relative_locations_resolve_against_the_given_directory(value: str, want: str):
    assert absolute_location(value, Path("/op")) == want
