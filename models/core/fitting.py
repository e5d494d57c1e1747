"""The pure core of training: labelled data and a config in; model, metrics, gates, baseline out.

Order of use of the four person-disjoint parts (models/core/split.py):
  fit         -> booster trees (and, with --tune, the trials' trees)
  early_stop  -> number of boosting rounds (and the trials' objective)
  calibration -> Platt calibration and the Neyman–Pearson threshold (the FPR certificate)
  validation  -> every val_* metric, slices, figures and the promotion gates
The model is never refit after the threshold is chosen: the certificate is for these trees.

Nothing here touches MLflow or the registry: `fit_and_evaluate` is what the tests hit, and
models/runs/train.py is the shell that logs, registers and promotes what it returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from commuter_badge.errors import CommuterError
from commuter_badge.features.build import model_matrix
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.read import unit_weights
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.models.core.bundle import CommuterModel, ModelMeta
from commuter_badge.models.core.calibration import PlattCalibrator
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import Labelled
from commuter_badge.models.core.gates import Candidate, Decision, decide
from commuter_badge.models.core.metrics import review_metrics, truth_metrics
from commuter_badge.models.core.months import (
    CERTIFY,
    MonthsError,
    assign_parts,
    certifying_strata,
    newest_calibration,
)
from commuter_badge.models.core.stratified import StratifiedThreshold, certifying_table
from commuter_badge.models.core.threshold import NeymanPearsonThreshold, label_noise_estimate
from commuter_badge.stages import stage

BASELINE_FEATURE = "morning_entry_workdays"


class OneClassError(CommuterError, ValueError):
    """A part of the split holds only one class; the message names the real cause."""


COPY_PART = "copy"  # weekday copies of fit persons: trees only, never a certificate or metric


def fit_rows(data: pd.DataFrame) -> pd.DataFrame:
    """The rows the trees learn from: the fit part and its weekday copies."""
    return data[data["part"].isin(["fit", COPY_PART])]


def fit_booster(fit: pd.DataFrame, early: pd.DataFrame, config: TrainConfig) -> lgb.Booster:
    """LightGBM on `fit` (copies weighted by `copy_weight`), boosting rounds chosen on `early`
    only, or, with `early_stopping_folds`, by cross-validation inside `fit` (`early` unused)."""
    names = list(FEATURE_NAMES)
    weight = _sample_weight(fit)
    if "part" in fit and (fit["part"] == COPY_PART).any():
        copy = np.where(fit["part"] == COPY_PART, config.copy_weight, 1.0)
        weight = copy if weight is None else weight * copy
    train_set = lgb.Dataset(
        model_matrix(fit),
        fit["is_commuter"].to_numpy(),
        weight=weight,
        feature_name=names,
        free_raw_data=True,
    )
    if config.early_stopping_folds:
        return _fit_cross_fitted(train_set, config)
    valid_set = lgb.Dataset(
        model_matrix(early),
        early["is_commuter"].to_numpy(),
        weight=_sample_weight(early),
        reference=train_set,
    )
    return lgb.train(
        config.lgb_params(),
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


def _sample_weight(rows: pd.DataFrame) -> np.ndarray | None:
    """The labels' weights (an audit's inverse inclusion probabilities), None when all are 1."""
    if "weight" not in rows or unit_weights(rows):
        return None
    return rows["weight"].fillna(1.0).to_numpy(dtype="float64")


def _fit_cross_fitted(train_set: lgb.Dataset, config: TrainConfig) -> lgb.Booster:
    """Rounds where the mean out-of-fold log loss stops falling, then one fit on all of `fit`.
    No calibration, certificate or validation person is read, so the certificate stays valid.
    (A copy and its original may fall in different folds; that makes the rounds' estimate a
    little optimistic, never the certificate.)"""
    curves = lgb.cv(
        config.lgb_params(),
        train_set,
        num_boost_round=config.max_rounds,
        nfold=config.early_stopping_folds,
        stratified=True,
        seed=config.seed,
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    rounds = len(next(iter(curves.values())))
    booster = lgb.train(config.lgb_params(), train_set, num_boost_round=rounds)
    booster.best_iteration = rounds
    return booster


def one_class_cause(data: pd.DataFrame, name: str, part: pd.DataFrame) -> str:
    """Why a part has a single class, in words: no persons, labels of one class, or too few."""
    total = len(data)
    classes = data["is_commuter"].value_counts().to_dict()
    if total == 0:
        return "no labelled person has a crossing in the window (check --as-of against the data)"
    if len(classes) < 2:
        only = next(iter(classes))
        return (
            f"all {total:,} labelled persons with crossings in the window are labelled "
            f"is_commuter={only}; the labels need both commuters and non-commuters"
        )
    n_pos, n_neg = int(classes.get(1, 0)), int(classes.get(0, 0))
    return (
        f"the {name} part has {len(part):,} persons, all of one class: only {total:,} labelled "
        f"persons ({n_pos:,} commuters, {n_neg:,} non-commuters) are split four ways; label more"
    )


def fit_model(
    data: pd.DataFrame,
    config: TrainConfig,
    as_of: dt.date,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> tuple[CommuterModel, dict]:
    """The whole fit on a labelled frame with a `part` column, built under `calendar`; pure
    apart from LightGBM."""
    check_two_classes(data, config)
    with stage("fit"):
        early = data[data["part"] == "early_stop"]
        booster = fit_booster(fit_rows(data), early, config)
        del early
    with stage("calibration and certificate"):
        cal = data[data["part"] == "calibration"]
        margin = booster.predict(model_matrix(cal), raw_score=True)
        calibrator = PlattCalibrator().fit(margin, cal["is_commuter"].to_numpy())
        selector, certifying = certify_threshold(data, booster, calibrator, config)
    meta = ModelMeta(
        threshold=selector.threshold_,
        target_fpr=config.target_fpr,
        calib_a=calibrator.a_,
        calib_b=calibrator.b_,
        window_days=config.window_days,
        trained_as_of=as_of.isoformat(),
        calendar=calendar.fingerprint(),  # the working-day calendar travels with the model
    )
    info = {
        "best_iteration": booster.best_iteration,
        "cal_fpr": selector.fpr_,
        "cal_fpr_upper95": selector.fpr_upper_,
        "cal_negatives": selector.n_negatives_,
        "cal_mislabelled_taken_off": getattr(selector, "mislabelled_taken_off_", 0),
        "cal_label_noise_estimate": label_noise_estimate(margin, cal["is_commuter"].to_numpy()),
        "cal_persons": certifying,
        "cal_audit_design": float(isinstance(selector, StratifiedThreshold)),
        "cal_certified": float(getattr(selector, "certified_", True)),
    }
    return CommuterModel(booster, meta), info


def check_two_classes(data: pd.DataFrame, config: TrainConfig) -> None:
    """Every part the fit uses holds both classes, else a OneClassError naming the cause. Only
    the labels are sliced: a copy of every part's features would stay alive through the fit."""
    labels = data[["part", "is_commuter"]]
    for name in config.parts():
        if name == "early_stop" and config.early_stopping_folds:
            continue  # rounds come from folds of the fit part; this part may be empty
        part = labels[labels["part"] == name]
        if part["is_commuter"].nunique() < 2:
            raise OneClassError(
                f"cannot train: the {name} part has only one class ({len(part)} persons): "
                f"{one_class_cause(data, name, part)}"
            )


def certify_threshold(data: pd.DataFrame, booster, calibrator, config: TrainConfig):
    """The threshold certified on the newest month's persons (models/core/months.py): its
    calibration persons, or an audit's held-out persons with the audit's design. Returns the
    fitted selector and how many persons certify it."""
    if (data["part"] == CERTIFY).any():
        rows = data[data["part"] == CERTIFY]
        stratum, strata = certifying_strata(data)
        selector = StratifiedThreshold(target_fpr=config.target_fpr, confidence=config.confidence)
        if config.label_noise > 0:
            raise MonthsError(
                "an audit's verdicts are taken as the truth: train on it with label_noise=0"
            )
        proba = calibrator.predict(booster.predict(model_matrix(rows), raw_score=True))
        return selector.fit(proba, rows["is_commuter"].to_numpy(), stratum, strata), len(rows)
    rows = data[newest_calibration(data)]
    margin = booster.predict(model_matrix(rows), raw_score=True)
    selector = NeymanPearsonThreshold(
        target_fpr=config.target_fpr,
        confidence=config.confidence,
        label_noise=config.label_noise,
    )
    return selector.fit(calibrator.predict(margin), rows["is_commuter"].to_numpy()), len(rows)


def noise_floor_warning(data: pd.DataFrame, config: TrainConfig, certificate: dict) -> str | None:
    """Words for the case where the labels' own errors take most of the FPR budget.

    Commuters labelled 0 count as false positives of a certificate against labels; at the
    estimated noise they alone make `floor` of the negatives, and a threshold then has to sit above
    them, inside the commuters' scores."""
    if config.label_noise > 0:
        return None
    cal = data[data["part"] == "calibration"]
    n_pos, n_neg = int(cal["is_commuter"].sum()), int((cal["is_commuter"] == 0).sum())
    rho = float(certificate.get("cal_label_noise_estimate", 0.0))
    floor = rho * n_pos / max(n_neg, 1)
    if not floor >= config.target_fpr / 2:
        return None
    return (
        f"labels look wrong for about {rho:.2%} of persons; commuters labelled 0 alone would be "
        f"{floor:.2%} of the certificate's negatives, leaving {config.target_fpr - floor:.2%} of "
        f"the {config.target_fpr:.2%} target to the model; where the bound leaves less, the "
        "threshold has to sit inside the commuters' scores. If an audit of the labels "
        "gives their error rate, certify against the truth with --param label_noise=RATE "
        "(docs/guide/training.md, Label noise)"
    )


def baseline_score(frame: pd.DataFrame, config: TrainConfig) -> np.ndarray:
    """Morning-entry working days scaled to [0, 1] by the window length (monotone, so K = t * days)."""
    return frame[BASELINE_FEATURE].astype("float64").fillna(0).to_numpy() / config.window_days


def baseline_threshold(cal: pd.DataFrame, config: TrainConfig) -> NeymanPearsonThreshold:
    """The rule 'entered in the morning on at least K working days', K certified the same way."""
    scores = baseline_score(cal, config)
    selector = NeymanPearsonThreshold(
        target_fpr=config.target_fpr,
        confidence=config.confidence,
        label_noise=config.label_noise,
    )
    return selector.fit(scores, cal["is_commuter"].to_numpy())


@dataclass(frozen=True)
class Baseline:
    """The rule baseline certified on the same calibration persons, judged on validation."""

    k: int  # "entered in the morning on at least K working days"
    threshold: float
    certificate: dict[str, float]
    metrics: dict[str, float]
    slices: pd.DataFrame
    val: pd.DataFrame  # validation persons with the rule's `proba`


def fit_baseline(data: pd.DataFrame, config: TrainConfig) -> Baseline:
    selector = baseline_threshold(data[data["part"] == "calibration"], config)
    val = data[data["part"] == "validation"].copy()
    val["proba"] = baseline_score(val, config)
    # The rule applied is score >= threshold; K is the smallest day count that passes it.
    k = next(
        m for m in range(config.window_days + 2) if m / config.window_days >= selector.threshold_
    )
    certificate = {"cal_fpr": selector.fpr_, "cal_fpr_upper95": selector.fpr_upper_}
    metrics, slices = review_metrics(
        "val_", val, selector.threshold_, config.target_fpr, certificate
    )
    return Baseline(k, selector.threshold_, certificate, metrics, slices, val)


@dataclass(frozen=True)
class Fitted:
    """Everything one training produced before anything is logged."""

    model: CommuterModel
    config: TrainConfig
    as_of: dt.date
    data: pd.DataFrame  # the labelled frame with its `part` column
    certificate: dict[str, float]  # best_iteration, cal_fpr, cal_fpr_upper95, cal_negatives
    val: pd.DataFrame  # validation persons with `proba` and `badge`
    raw_proba: np.ndarray  # uncalibrated probabilities of `val` (for the calibration figure)
    metrics: dict[str, float]  # val_* metrics (docs/contract.md §4)
    slices: pd.DataFrame
    truth_metrics: dict[str, float]  # against simulated truth, when the world has one
    gates: Decision  # the rules that need no champion (policy and recall ones: skipped)
    baseline: Baseline
    # An audited newest month's held-out persons with `proba`, `badge` and their stratum's design
    # (models/core/stratified.py `certifying_table`): what the gates judge the champion on.
    certifying: pd.DataFrame | None = None

    def candidate(self, version: str = "") -> Candidate:
        return Candidate(
            version=version,
            policy=self.config.policy(),
            as_of=self.as_of,
            cal_fpr_upper95=self.certificate["cal_fpr_upper95"],
            is_commuter=self.val["is_commuter"].to_numpy().astype(int),
            badge=self.val["badge"].to_numpy().astype(bool),
        )


def certifying_persons(frame: pd.DataFrame, model: CommuterModel) -> pd.DataFrame | None:
    """The audited persons that certified the threshold, scored, with their design; None when
    the certificate is on a fully labelled month."""
    if not (frame["part"] == CERTIFY).any():
        return None
    stratum, strata = certifying_strata(frame)
    rows = frame[frame["part"] == CERTIFY].copy()
    rows["proba"] = model.predict_proba(rows)
    rows["badge"] = model.decide(rows["proba"].to_numpy())
    return certifying_table(rows, stratum, strata)


def split(data: Labelled, config: TrainConfig) -> pd.DataFrame:
    """The labelled frame with its `part`; with copies (and `copy_weight` > 0), the copies of the
    fit persons follow as part `copy`, with their original's label."""
    frame = data.frame.copy()
    frame["part"] = assign_parts(frame, config.seed, config.parts())
    if data.copies is None or config.copy_weight == 0:
        return frame
    keep = ["person_id", "is_commuter", *(["weight"] if "weight" in frame else [])]
    fit = frame.loc[frame["part"] == "fit", keep]
    copies = data.copies.merge(fit.rename(columns={"person_id": "copy_of"}), on="copy_of")
    return pd.concat([frame, copies.assign(part=COPY_PART)], ignore_index=True)


def fit_and_evaluate(
    data: Labelled, config: TrainConfig, frame: pd.DataFrame | None = None
) -> Fitted:
    """Split, fit, calibrate, certify, evaluate on validation, and the rule baseline.

    `frame` is `split(data, config)` when the caller has it already (tuning splits first)."""
    if data.as_of is None:
        raise ValueError("labelled data without as_of; build it with labelled_features")
    frame = split(data, config) if frame is None else frame
    model, certificate = fit_model(frame, config, data.as_of, data.calendar)
    with stage("validation scoring and metrics"):
        val = frame[frame["part"] == "validation"].copy()
        val["proba"] = model.predict_proba(val)
        val["badge"] = model.decide(val["proba"].to_numpy())
        raw = 1 / (1 + np.exp(-model.margin(val)))
        metrics, slices = review_metrics(
            "val_", val, model.threshold, config.target_fpr, certificate
        )
        truth = truth_metrics("val_", val, model.threshold)
        if "label_flipped" in val:  # a simulated world says which labels it flipped
            truth = {"sim_label_noise_rate": float(val["label_flipped"].mean()), **truth}
    with stage("rule baseline"):
        baseline = fit_baseline(frame, config)
        certifying = certifying_persons(frame, model)
    fitted = Fitted(
        model=model,
        config=config,
        as_of=data.as_of,
        data=frame,
        certificate=certificate,
        val=val,
        raw_proba=raw,
        metrics=metrics,
        slices=slices,
        truth_metrics=truth,
        gates=None,  # type: ignore[arg-type]  # set just below, from the fitted candidate
        baseline=baseline,
        certifying=certifying,
    )
    own = decide(fitted.candidate(), None)
    return Fitted(**{**fitted.__dict__, "gates": own})
