"""What a logged model version carries so it loads anywhere: its code, its requirements, its wrapper.

A version must load with `mlflow.pyfunc.load_model` in a fresh environment built only from its own
`requirements.txt`, without this project installed. So it is logged with:
- the package code the pyfunc imports (`commuter_badge` with `features` and `models`), laid out as
  the wheel installs it (`lay_out`; the checkout's folders map onto the import names through
  pyproject's package-dir), passed to MLflow as `code_paths`;
- the distributions that code imports at load and predict time, pinned to the installed versions
  (`runtime_requirements`), instead of this project's own (never published) distribution;
- the wrapper `PyfuncCommuterModel`, logged as code (`pyfunc_entry.py`), never pickled.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterable, Mapping
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd

from commuter_badge.models.core.bundle import CommuterModel

ARTIFACT_KEY = "commuter_model"
ENTRY_FILE = Path(__file__).with_name("pyfunc_entry.py")

# The packages a scoring pyfunc imports: the root (settings, errors), features and models.
MODEL_PACKAGES = ("commuter_badge", "commuter_badge.features", "commuter_badge.models")

# Distributions the model packages import when the pyfunc loads and predicts (tests/model check
# this list against what a load and predict really import). pyarrow and duckdb compute features,
# chinesecalendar the working days, scipy and scikit-learn sit under calibration. Loading a pyfunc
# needs MLflow's client only (mlflow-skinny, the `mlflow` package without the tracking server,
# UI and their dependencies); the service adds full mlflow (serving/bento.py).
RUNTIME_DISTRIBUTIONS = (
    "mlflow-skinny",
    "lightgbm",
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "scipy",
    "scikit-learn",
    "chinesecalendar",
    "pydantic",
    "pydantic-settings",
)


def runtime_requirements() -> list[str]:
    """RUNTIME_DISTRIBUTIONS pinned to the versions installed here (those the model was tested on)."""
    return [f"{name}=={version(name)}" for name in RUNTIME_DISTRIBUTIONS]


def package_dirs(packages: Iterable[str]) -> dict[str, Path]:
    """Where each installed package's sources are (for an editable install: the checkout's folders)."""
    dirs = {}
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"package {package} is not installed")
        dirs[package] = Path(list(spec.submodule_search_locations)[0])
    return dirs


def lay_out(out: Path, dirs: Mapping[str, str | Path]) -> Path:
    """Copy each package's folder into `out` under its import path (`a.b` -> `out/a/b/`), as
    installed: with its subpackages and data files (the reviews store's migrations and their
    template), without caches; returns `out`. Anything already in `out` is replaced."""
    shutil.rmtree(out, ignore_errors=True)
    for package, folder in dirs.items():
        target = out.joinpath(*package.split("."))
        shutil.copytree(folder, target, ignore=_NOT_INSTALLED, dirs_exist_ok=True)
    return out


_NOT_INSTALLED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def model_code(out: Path) -> Path:
    """The code directory logged with a version: `out/commuter_badge/...` (MODEL_PACKAGES only)."""
    return lay_out(out, package_dirs(MODEL_PACKAGES)) / "commuter_badge"


class PyfuncCommuterModel(mlflow.pyfunc.PythonModel):
    """MLflow's view of the model: feature table in, probability and badge out."""

    def load_context(self, context) -> None:
        self.model = CommuterModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        proba = self.model.predict_proba(model_input)
        return pd.DataFrame({"commuter_probability": proba, "badge": self.model.decide(proba)})
