"""The trained model as one object: booster, calibration, threshold and feature definitions.

Saved as a plain directory (`booster.txt`, `model.json`) inside an MLflow pyfunc model, so batch
scoring, the HTTP service and Spark load exactly the same numbers.

Integrity: `save` also writes `manifest.json`, the sha256 of each model file, and registration
records the same digests as version tags (`sha256.booster.txt`, `sha256.model.json`;
models/mlflow_edge/registry.py). `load` checks every file against the digests it is given (the registry's, when
the version is loaded from the registry) or else against the manifest, before LightGBM parses a
byte: an edited threshold, a changed leaf or a truncated booster is refused with one line naming
the file, instead of being served or crashing the process. A directory without a manifest (saved
before models carried one) loads unchecked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from commuter_badge.errors import CommuterError
from commuter_badge.features.build import model_matrix
from commuter_badge.features.definitions import DESCRIPTIONS, FEATURE_NAMES
from commuter_badge.models.core import provenance
from commuter_badge.models.core.calibration import PlattCalibrator
from commuter_badge.settings import DEFAULT_WINDOW_DAYS


class ModelError(CommuterError, RuntimeError):
    """The model cannot be found, loaded or used as asked."""


MODEL_FILES = ("booster.txt", "model.json")
MANIFEST = "manifest.json"
DIGEST_TAG = "sha256."  # version tag prefix: `sha256.booster.txt`, `sha256.model.json`


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(directory: str | Path) -> dict[str, str]:
    """sha256 of each model file in `directory` (what the manifest and the version tags record)."""
    return {name: sha256_file(Path(directory) / name) for name in MODEL_FILES}


def digest_tags(digests: Mapping[str, str]) -> dict[str, str]:
    return {f"{DIGEST_TAG}{name}": value for name, value in digests.items()}


def digests_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The model-file digests a registry version records (empty for versions from before them)."""
    return {k.removeprefix(DIGEST_TAG): v for k, v in tags.items() if k.startswith(DIGEST_TAG)}


def manifest_digests(directory: Path) -> dict[str, str] | None:
    """The digests in `directory`'s manifest; None when it has none (saved before manifests)."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        digests = json.loads(path.read_text())["sha256"]
        if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
            raise TypeError
        return digests
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(
            f"{path} is damaged (not a model manifest): the model directory was changed after "
            "it was saved; restore it or retrain"
        ) from None


def verify_files(
    directory: Path, expected: Mapping[str, str] | None = None, where: str = ""
) -> None:
    """Refuse (ModelError, one line naming the file) a model file whose sha256 is not the one
    recorded: `expected` (the registry version's tags) when given, else the manifest's."""
    manifest = manifest_digests(directory)
    source = (
        "in the registry when the version was registered"
        if expected
        else f"in its {MANIFEST} when it was saved"
    )
    reference = dict(expected or manifest or {})
    shown = where or str(directory)
    for name in sorted(reference):
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{shown}: model file {name} is missing; restore it or retrain")
        if sha256_file(path) != reference[name]:
            raise ModelError(
                f"{shown}: model file {name} does not match the sha256 recorded {source} "
                "(changed or damaged since); refusing to load it: restore the file from a backup "
                "or retrain"
            )
    if expected and manifest is not None and manifest != dict(expected):
        raise ModelError(
            f"{shown}: {MANIFEST} does not match the digests recorded in the registry (edited "
            "since registration); refusing to load it: restore it from a backup or retrain"
        )


@dataclass(frozen=True)
class ModelMeta:
    threshold: float
    target_fpr: float
    calib_a: float
    calib_b: float
    feature_names: tuple[str, ...] = FEATURE_NAMES
    window_days: int = DEFAULT_WINDOW_DAYS
    trained_as_of: str = ""
    run_id: str = ""
    extra: dict = field(default_factory=dict)
    # The working-day calendar it was certified under (features/workdays.py `WorkingCalendar.fingerprint`);
    # empty for versions trained before models recorded one.
    calendar: dict = field(default_factory=dict)


class CommuterModel:
    """Calibrated commuter probability, badge decision and per-person reasons."""

    def __init__(self, booster: lgb.Booster, meta: ModelMeta, version: str = "") -> None:
        recorded = meta.extra.get("code", {})
        if (why := provenance.mismatch(recorded, meta.feature_names, meta.window_days)) is not None:
            trained_with = (
                f"deploy {provenance.code_label(recorded)} to score it"
                if recorded
                else "it records no code version (trained before versions carried one)"
            )
            raise ModelError(
                f"model version {version or '?'} cannot be scored by this code: {why}; "
                f"{trained_with}, or retrain it"
            )
        self.booster = booster
        self.meta = meta
        self.version = version
        self.calibrator = PlattCalibrator.from_params(meta.calib_a, meta.calib_b)

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    @property
    def target_fpr(self) -> float:
        return self.meta.target_fpr

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(model_matrix(frame), raw_score=True, num_threads=1)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 0:
            return np.zeros(0)
        return self._proba(model_matrix(frame))

    def _proba(self, x: np.ndarray) -> np.ndarray:
        return self.calibrator.predict(self.booster.predict(x, raw_score=True, num_threads=1))

    def decide(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(proba) >= self.threshold

    def explain(self, frame: pd.DataFrame, k: int = 3) -> tuple[np.ndarray, list[list[dict]]]:
        """Probabilities and reasons together, building the model matrix once (the service's path)."""
        if len(frame) == 0:
            return np.zeros(0), []
        x = model_matrix(frame)
        return self._proba(x), self._reasons(x, k)

    def reasons(self, frame: pd.DataFrame, k: int = 3) -> list[list[dict]]:
        """The k largest TreeSHAP contributions (log-odds, toward the badge) per person, in words."""
        if len(frame) == 0:
            return []
        return self._reasons(model_matrix(frame), k)

    def _reasons(self, x: np.ndarray, k: int) -> list[list[dict]]:
        contrib = self.booster.predict(x, pred_contrib=True, num_threads=1)[:, :-1]
        out = []
        for i in range(len(x)):
            order = np.argsort(-np.abs(contrib[i]), kind="stable")[:k]
            out.append([_reason(FEATURE_NAMES[j], x[i, j], contrib[i, j]) for j in order])
        return out

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(d / "booster.txt"))
        meta = asdict(self.meta)
        meta["feature_names"] = list(self.meta.feature_names)
        (d / "model.json").write_text(json.dumps(meta, indent=2))
        (d / MANIFEST).write_text(json.dumps({"sha256": file_digests(d)}, indent=2))
        return d

    @classmethod
    def load(
        cls,
        directory: str | Path,
        version: str = "",
        *,
        expected: Mapping[str, str] | None = None,
        where: str = "",
    ) -> CommuterModel:
        """Load a saved model after checking its files (`verify_files`: against `expected`, the
        registry's digests, when given, else the manifest); `where` names it in errors."""
        d = Path(directory)
        verify_files(d, expected, where)
        try:
            booster = lgb.Booster(model_file=str(d / "booster.txt"))
            meta = json.loads((d / "model.json").read_text())
        except (OSError, lgb.basic.LightGBMError, ValueError) as exc:
            raise ModelError(f"{d}: not a commuter model directory ({exc})") from None
        meta["feature_names"] = tuple(meta["feature_names"])
        return cls(booster, ModelMeta(**meta), version=version)


def _reason(name: str, value: float, contribution: float) -> dict:
    shown: float | int | None = None if np.isnan(value) else value
    if shown is not None and float(shown).is_integer():
        shown = int(shown)
    elif shown is not None:
        shown = round(float(shown), 3)
    return {
        "feature": name,
        "description": DESCRIPTIONS[name],
        "value": shown,
        "contribution": round(float(contribution), 4),
    }
