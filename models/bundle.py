"""The trained model as one object: booster, calibration, threshold and feature definitions.

Saved as a plain directory (`booster.txt`, `model.json`) inside an MLflow pyfunc model, so batch
scoring, the HTTP service and Spark load exactly the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from commuter_badge.errors import CommuterError
from commuter_badge.features.build import model_matrix
from commuter_badge.features.definitions import DESCRIPTIONS, FEATURE_NAMES
from commuter_badge.models import provenance
from commuter_badge.models.calibration import PlattCalibrator
from commuter_badge.settings import DEFAULT_WINDOW_DAYS


class ModelError(CommuterError, RuntimeError):
    """The model cannot be found, loaded or used as asked."""


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
    # The working-day calendar it was certified under (features/workdays.py `calendar_fingerprint`);
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
        return d

    @classmethod
    def load(cls, directory: str | Path, version: str = "") -> CommuterModel:
        d = Path(directory)
        try:
            booster = lgb.Booster(model_file=str(d / "booster.txt"))
            meta = json.loads((d / "model.json").read_text())
        except (OSError, lgb.basic.LightGBMError, json.JSONDecodeError) as exc:
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
