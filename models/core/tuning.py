"""Hyperparameter search with Optuna, on the fit and early-stopping persons only.

Each trial fits LightGBM on `fit`, stops early on `early_stop`, and scores recall at the target FPR
on `early_stop` (the threshold leaving at most target x negatives above it: an empirical
objective, not a certificate). Calibration and validation persons are never touched, so the
certificate and every val_* metric of the version trained with the chosen parameters stay honest.
The early-stopping part both picks the rounds and ranks the trials, so its objective is slightly
optimistic; only the ranking is used.

Pure apart from LightGBM: a trial is reported to `on_trial`, where the caller logs it (nested
MLflow runs in models/runs/train.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import optuna
import pandas as pd

from commuter_badge.errors import CommuterError
from commuter_badge.features.build import model_matrix
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.fitting import fit_rows


class TuningError(CommuterError, ValueError):
    """Tuning cannot run with these settings; the message says which."""


TrialReport = Callable[[int, dict, float, float, int], None]  # number, params, objective, s, rounds


def recall_at_fpr(y: np.ndarray, score: np.ndarray, target_fpr: float) -> float:
    """Recall at the lowest threshold whose empirical FPR on these negatives is <= target."""
    y = np.asarray(y).astype(int)
    neg = np.sort(score[y == 0])[::-1]
    allowed = int(np.floor(target_fpr * len(neg)))
    if len(neg) == 0 or (y == 1).sum() == 0:
        return float("nan")
    cut = neg[allowed] if allowed < len(neg) else -np.inf  # badge when score > cut
    return float((score[y == 1] > cut).mean())


def suggest(trial: optuna.Trial) -> dict:
    """The search space: the parameters that move recall most on this problem."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def tune(
    data: pd.DataFrame,
    config: TrainConfig,
    n_trials: int,
    fit_booster: Callable,
    on_trial: TrialReport = lambda *_: None,
) -> tuple[dict, float]:
    """Best parameters and their objective after `n_trials` TPE trials (seeded by config.seed).

    `data` has a `part` column; only its fit (with copies) and early_stop rows are read."""
    fit = fit_rows(data)
    early = data[data["part"] == "early_stop"]
    if early["is_commuter"].nunique() < 2:
        raise TuningError(
            f"--tune scores trials on the early_stop part, which holds {len(early):,} persons of "
            "fewer than two classes; give it a share (share_early_stop) to tune"
        )
    x_early, y_early = model_matrix(early), early["is_commuter"].to_numpy()

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial)
        start = time.perf_counter()
        booster = fit_booster(fit, early, config.model_copy(update=params))
        score = booster.predict(x_early, raw_score=True)
        value = recall_at_fpr(y_early, score, config.target_fpr)
        on_trial(trial.number, params, value, time.perf_counter() - start, booster.best_iteration)
        return value

    logging.getLogger("optuna").setLevel(logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.optimize(objective, n_trials=n_trials)
    return dict(study.best_params), float(study.best_value)
