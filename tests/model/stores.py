"""A test module's own MLflow store: trained into once, copied privately for each test."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow


@contextlib.contextmanager
def own_store(root: Path) -> Iterator[str]:
    """Inside: tracking on `root/mlflow.db`, artifacts under `root/mlruns`; restored after."""
    from commuter_badge.models.mlflow_edge import registry

    uri = f"sqlite:///{root / 'mlflow.db'}"
    old, cwd = os.environ.get("MLFLOW_TRACKING_URI"), os.getcwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.chdir(root)  # artifacts under root/mlruns
    try:
        registry.configure(uri)
        yield uri
    finally:
        os.chdir(cwd)
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def private_copy(db: Path, tmp_path: Path, monkeypatch) -> str:
    """A test's own copy of the trained store's registry (artifacts are only ever added to)."""
    copy = tmp_path / "store.db"
    shutil.copy(db, copy)
    uri = f"sqlite:///{copy}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
