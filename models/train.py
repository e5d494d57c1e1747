"""Training: split by person, fit LightGBM, calibrate, certify the threshold, log, register, gate.

Order of use of the four person-disjoint parts (models/split.py):
  fit         -> booster trees
  early_stop  -> number of boosting rounds
  calibration -> Platt calibration and the Neyman–Pearson threshold (the FPR certificate)
  validation  -> every val_* metric, slices, figures and the promotion gates
The model is never refit after the threshold is chosen: the certificate is for these trees.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from commuter_badge.features.build import model_matrix
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.workdays import calendar_fingerprint, calendar_params
from commuter_badge.models import figures, registry
from commuter_badge.models.bundle import CommuterModel, ModelError, ModelMeta
from commuter_badge.models.calibration import PlattCalibrator
from commuter_badge.models.data import Labelled, labelled_features
from commuter_badge.models.metrics import at_threshold
from commuter_badge.models.report import log_review
from commuter_badge.models.split import PARTS, assign
from commuter_badge.models.threshold import NeymanPearsonThreshold
from commuter_badge.settings import DEFAULT_WINDOW_DAYS, MODEL_NAME

log = logging.getLogger(__name__)
# Our features are deliberately float64 at the model boundary; MLflow's hint about int columns is noise.
warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
BASELINE_FEATURE = "morning_entry_workdays"


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target_fpr: float = 0.01
    confidence: float = 0.95
    seed: int = 0
    window_days: int = DEFAULT_WINDOW_DAYS
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 40
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    num_threads: int = 2

    def lgb_params(self) -> dict:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


@dataclass
class TrainResult:
    run_id: str
    baseline_run_id: str
    version: str
    threshold: float
    certified_fpr_upper: float
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    promoted: bool
    gates: dict[str, bool] = field(default_factory=dict)


def fit_booster(fit: pd.DataFrame, early: pd.DataFrame, config: TrainConfig) -> lgb.Booster:
    """LightGBM on `fit`, boosting rounds chosen on `early` only."""
    names = list(FEATURE_NAMES)
    train_set = lgb.Dataset(
        model_matrix(fit), fit["is_commuter"].to_numpy(), feature_name=names, free_raw_data=True
    )
    valid_set = lgb.Dataset(
        model_matrix(early), early["is_commuter"].to_numpy(), reference=train_set
    )
    return lgb.train(
        config.lgb_params(),
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


def fit_model(
    data: pd.DataFrame, config: TrainConfig, as_of: dt.date
) -> tuple[CommuterModel, dict]:
    """The whole fit on a labelled frame with a `part` column; pure apart from LightGBM."""
    parts = {name: data[data["part"] == name] for name in PARTS}
    for name, part in parts.items():
        if part["is_commuter"].nunique() < 2:
            raise ValueError(
                f"the {name} part has only one class ({len(part)} persons); more labels needed"
            )
    booster = fit_booster(parts["fit"], parts["early_stop"], config)
    cal = parts["calibration"]
    margin = booster.predict(model_matrix(cal), raw_score=True)
    calibrator = PlattCalibrator().fit(margin, cal["is_commuter"].to_numpy())
    selector = NeymanPearsonThreshold(target_fpr=config.target_fpr, confidence=config.confidence)
    selector.fit(calibrator.predict(margin), cal["is_commuter"].to_numpy())
    meta = ModelMeta(
        threshold=selector.threshold_,
        target_fpr=config.target_fpr,
        calib_a=calibrator.a_,
        calib_b=calibrator.b_,
        window_days=config.window_days,
        trained_as_of=as_of.isoformat(),
        calendar=calendar_fingerprint(),  # the working-day calendar travels with the model
    )
    info = {
        "best_iteration": booster.best_iteration,
        "cal_fpr": selector.fpr_,
        "cal_fpr_upper95": selector.fpr_upper_,
        "cal_negatives": selector.n_negatives_,
    }
    return CommuterModel(booster, meta), info


def baseline_score(frame: pd.DataFrame, config: TrainConfig) -> np.ndarray:
    """Morning-entry working days scaled to [0, 1] by the window length (monotone, so K = t * days)."""
    return frame[BASELINE_FEATURE].astype("float64").fillna(0).to_numpy() / config.window_days


def baseline_threshold(cal: pd.DataFrame, config: TrainConfig) -> NeymanPearsonThreshold:
    """The rule 'entered in the morning on at least K working days', K certified the same way."""
    scores = baseline_score(cal, config)
    selector = NeymanPearsonThreshold(target_fpr=config.target_fpr, confidence=config.confidence)
    return selector.fit(scores, cal["is_commuter"].to_numpy())


def _champion_recall(val: pd.DataFrame) -> tuple[str | None, float | None]:
    version = registry.champion_version()
    if version is None:
        return None, None
    try:
        champion = registry.load_model(None)
    except ModelError as exc:
        log.warning(
            "current champion v%s cannot be evaluated (%s); recall gate skipped", version, exc
        )
        return version, None
    proba = champion.predict_proba(val)
    return version, at_threshold(val["is_commuter"].to_numpy(), proba, champion.threshold)["recall"]


def train(
    trips: str | Path,
    labels: str | Path,
    as_of: dt.date,
    config: TrainConfig | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainResult:
    config = config or TrainConfig()
    registry.configure()
    registry.experiment_id()
    progress("building features")
    labelled: Labelled = labelled_features(trips, labels, as_of, config.window_days)
    data = labelled.frame.copy()
    data["part"] = assign(data["person_id"], config.seed)
    sizes = data["part"].value_counts().to_dict()

    with mlflow.start_run(run_name=f"lightgbm as_of={as_of}") as run:
        # The working-day calendar the features used: calendar_library_version, _file_digest,
        # _years, as params and tags of the run (and tags of the version, below).
        mlflow.log_params(calendar_params())
        mlflow.set_tags(calendar_params())
        mlflow.set_tags(
            {"kind": "model", "as_of": as_of.isoformat(), "input_digest": labelled.digest}
        )
        mlflow.log_params(
            {
                **config.model_dump(),
                "as_of": as_of.isoformat(),
                "trips": str(trips),
                "labels": str(labels),
                "n_features": len(FEATURE_NAMES),
                "input_digest_sha256": labelled.digest,
                **{f"n_{k}": int(v) for k, v in sizes.items()},
                "labels_without_trips": labelled.labels_without_trips,
                "persons_without_label": labelled.persons_without_label,
            }
        )
        mlflow.log_input(
            mlflow.data.from_pandas(
                data[["person_id", *FEATURE_NAMES, "is_commuter"]].astype(
                    {"person_id": "object", **dict.fromkeys(FEATURE_NAMES, "float64")}
                ),
                source=Path(trips).resolve().as_uri(),
                name=f"trips-features-{as_of}",
                targets="is_commuter",
            ),
            context="training",
        )
        progress("fitting LightGBM")
        model, info = fit_model(data, config, as_of)
        mlflow.log_metrics({k: float(v) for k, v in info.items()})

        progress("evaluating on validation")
        val = data[data["part"] == "validation"].copy()
        val["proba"] = model.predict_proba(val)
        raw = 1 / (1 + np.exp(-model.margin(val)))
        metrics = log_review("val_", val, model.threshold, config.target_fpr, raw_proba=raw)
        if "label_flipped" in val:
            mlflow.log_metric("sim_label_noise_rate", float(val["label_flipped"].mean()))
            truth = val.assign(is_commuter=val["true_commuter"])
            m_true = at_threshold(
                truth["is_commuter"].to_numpy(), truth["proba"].to_numpy(), model.threshold
            )
            mlflow.log_metrics({"val_true_fpr": m_true["fpr"], "val_true_recall": m_true["recall"]})
        gains = model.booster.feature_importance("gain")
        mlflow.log_dict(
            dict(zip(FEATURE_NAMES, map(float, gains), strict=True)), "feature_importance.json"
        )
        fig = figures.importance(FEATURE_NAMES, gains)
        mlflow.log_figure(fig, "figures/feature_importance.png")
        plt.close(fig)

        progress("registering")
        champion_version, champion_recall = _champion_recall(val)
        model = CommuterModel(
            model.booster, dataclasses.replace(model.meta, run_id=run.info.run_id)
        )
        info_model = registry.log_model(model, data[data["part"] == "fit"].head(200))
        version = str(info_model.registered_model_version)
        for key, value in calendar_params().items():
            mlflow.MlflowClient().set_model_version_tag(MODEL_NAME, version, key, value)
        gates = {
            "certified_bound_met": info["cal_fpr_upper95"] <= config.target_fpr,
            "validation_fpr_within_target": metrics["val_fpr"] <= config.target_fpr,
            "recall_not_worse_than_champion": champion_recall is None
            or metrics["val_recall"] >= champion_recall - 1e-12,
        }
        promoted = all(gates.values())
        if promoted:
            registry.set_champion(version)
        mlflow.set_tags({f"gate.{k}": str(v) for k, v in gates.items()})
        mlflow.set_tags(
            {
                "promoted": str(promoted),
                "registered_version": version,
                "previous_champion": champion_version or "none",
            }
        )
        if champion_recall is not None:
            mlflow.log_metric("champion_val_recall", champion_recall)

    progress("rule baseline")
    baseline_metrics, baseline_run = _log_baseline(data, config, as_of, labelled.digest)
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_metrics(
            {
                f"baseline_{k}": v
                for k, v in baseline_metrics.items()
                if k in ("val_recall", "val_fpr", "val_fpr_upper95")
            }
        )
    return TrainResult(
        run_id=run.info.run_id,
        baseline_run_id=baseline_run,
        version=version,
        threshold=model.threshold,
        certified_fpr_upper=info["cal_fpr_upper95"],
        metrics=metrics,
        baseline_metrics=baseline_metrics,
        promoted=promoted,
        gates=gates,
    )


def _log_baseline(data: pd.DataFrame, config: TrainConfig, as_of: dt.date, digest: str):
    cal = data[data["part"] == "calibration"]
    selector = baseline_threshold(cal, config)
    val = data[data["part"] == "validation"].copy()
    val["proba"] = baseline_score(val, config)
    with mlflow.start_run(run_name=f"rule baseline as_of={as_of}") as run:
        # The rule applied is score >= threshold; K is the smallest day count that passes it.
        k = next(
            m
            for m in range(config.window_days + 2)
            if m / config.window_days >= selector.threshold_
        )
        mlflow.set_tags(
            {
                "kind": "baseline",
                "as_of": as_of.isoformat(),
                "input_digest": digest,
                "rule": f"{BASELINE_FEATURE} >= {k}",
            }
        )
        mlflow.log_params(
            {
                "rule": "entered in the morning on at least K working days",
                "K": k,
                "target_fpr": config.target_fpr,
                "seed": config.seed,
            }
        )
        mlflow.log_metric("cal_fpr_upper95", selector.fpr_upper_)
        metrics = log_review("val_", val, selector.threshold_, config.target_fpr, figures_too=True)
    return metrics, run.info.run_id
