"""`commuter recertify`: the champion's trees, with calibration and threshold chosen again on a
newer labelled month, registered as a new version and promoted through the same gates as training.

Why: a month can shift the score distribution (models/core/monitor.py says when) without the ranking
going wrong; refitting the two Platt numbers and the Neyman–Pearson threshold on the new month
restores the certificate for that month without retraining. The new month is split by person
(models/core/split.py, keyed hash) into its own calibration half and validation half: calibration
and threshold are chosen on the first, every val_* figure and the promotion gates use the second,
so the certificate and the evidence about it come from different persons, as in training.
The version's `as_of` is the new month's (the certificate is for it); `trees_as_of` records the
month the trees were fitted on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from commuter_badge.features.context import RunContext
from commuter_badge.features.read import unit_weights
from commuter_badge.models.core.bundle import CommuterModel
from commuter_badge.models.core.calibration import PlattCalibrator
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import Labelled, WeightedLabelsError, counted_label_files
from commuter_badge.models.core.fitting import Fitted, OneClassError, fit_baseline, one_class_cause
from commuter_badge.models.core.gates import decide, validation_above_target
from commuter_badge.models.core.metrics import review_metrics, truth_metrics
from commuter_badge.models.core.months import (
    Month,
    assign_parts,
    check_months,
    labelled_months,
    newest_calibration,
    single_month,
)
from commuter_badge.models.core.threshold import NeymanPearsonThreshold
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.runs import promotion
from commuter_badge.models.runs.shell import (
    log_validation,
    logged_run,
    open_store,
    register_and_judge,
)
from commuter_badge.settings import MODEL_NAME

PARTS = {"calibration": 0.5, "validation": 0.5}  # the newer month's own split


def recalibrate(model: CommuterModel, data: Labelled, config: TrainConfig) -> Fitted:
    """The same trees, Platt calibration and threshold refitted on `data` (pure apart from LightGBM).

    `config` carries the policy (target FPR, confidence, window) and the split's seed."""
    if data.as_of is None:
        raise ValueError("labelled data without as_of; build it with labelled_features")
    frame = data.frame.copy()
    frame["part"] = assign_parts(frame, config.seed, PARTS)
    for name in PARTS:
        part = frame[frame["part"] == name]
        if part["is_commuter"].nunique() < 2:
            raise OneClassError(
                f"cannot recertify: the {name} half has only one class ({len(part)} persons): "
                f"{one_class_cause(frame, name, part)}"
            )
    cal = frame[frame["part"] == "calibration"]
    y_cal = cal["is_commuter"].to_numpy()
    margin = model.margin(cal)
    calibrator = PlattCalibrator().fit(margin, y_cal)
    selector = NeymanPearsonThreshold(
        target_fpr=config.target_fpr,
        confidence=config.confidence,
        label_noise=config.label_noise,
    )
    newest = newest_calibration(frame)[cal.index].to_numpy()  # the newest month certifies
    selector.fit(calibrator.predict(margin)[newest], y_cal[newest])
    meta = dataclasses.replace(
        model.meta,
        threshold=selector.threshold_,
        target_fpr=config.target_fpr,
        calib_a=calibrator.a_,
        calib_b=calibrator.b_,
        trained_as_of=data.as_of.isoformat(),
        run_id="",
        calendar=data.calendar.fingerprint(),
        extra={
            **model.meta.extra,
            "recertified_from": model.version,
            "trees_as_of": model.meta.extra.get("trees_as_of", model.meta.trained_as_of),
        },
    )
    new = CommuterModel(model.booster, meta)
    certificate = {
        "best_iteration": model.booster.best_iteration,
        "cal_fpr": selector.fpr_,
        "cal_fpr_upper95": selector.fpr_upper_,
        "cal_negatives": selector.n_negatives_,
    }
    val = frame[frame["part"] == "validation"].copy()
    val["proba"] = new.predict_proba(val)
    val["badge"] = new.decide(val["proba"].to_numpy())
    metrics, slices = review_metrics("val_", val, new.threshold, config.target_fpr, certificate)
    truth = truth_metrics("val_", val, new.threshold)
    fitted = Fitted(
        model=new,
        config=config,
        as_of=data.as_of,
        data=frame,
        certificate=certificate,
        val=val,
        raw_proba=1 / (1 + np.exp(-new.margin(val))),
        metrics=metrics,
        slices=slices,
        truth_metrics=truth,
        gates=None,  # type: ignore[arg-type]  # set just below
        baseline=fit_baseline(frame, config),
    )
    return dataclasses.replace(fitted, gates=decide(fitted.candidate(), None))


@dataclasses.dataclass(frozen=True)
class RecertifyResult:
    run_id: str
    version: str
    from_version: str
    threshold: float
    previous_threshold: float
    certified_fpr_upper: float
    metrics: dict[str, float]
    promoted: bool
    decision: str
    gates: dict
    warnings: tuple[str, ...] = ()


def policy_of(model: CommuterModel, seed: int) -> TrainConfig:
    """The champion's policy (from its version tags), as the config recalibration runs under."""
    tags: dict = {}
    if model.version:
        tags = dict(MlflowClient().get_model_version(MODEL_NAME, model.version).tags)
    policy = promotion.version_policy(tags)
    confidence = policy.confidence if policy else TrainConfig().confidence
    return TrainConfig(
        target_fpr=model.target_fpr,
        confidence=confidence,
        label_noise=policy.label_noise if policy else 0.0,
        window_days=model.meta.window_days,
        seed=seed,
    )


def recertify(
    trips: str | Path,
    labels: str | Path | list,
    as_of: dt.date,
    model_uri: str | None,
    *,
    seed: int = 0,
    promote: bool = True,
    progress: Callable[[str], None] = lambda _: None,
    context: RunContext | None = None,
    months: list[Month] | None = None,
) -> RecertifyResult:
    """Recalibrate the model at `model_uri` on the month, log a run, register, judge by the gates."""
    context = context or RunContext.defaults()
    open_store(context, registered_model=True)
    old = registry.load_model(model_uri)
    config = policy_of(old, seed)
    progress("building features")
    months = check_months(months or [single_month(trips, labels, as_of)], "recertify")
    labelled = _labelled(months, config.window_days, context)
    as_of = labelled.as_of
    progress("recalibrating")
    fitted = recalibrate(old, labelled, config)
    trees_as_of = fitted.model.meta.extra["trees_as_of"]
    params = {
        "trips": "; ".join(str(m.trips) for m in months),
        "labels": "; ".join(str(p) for m in months for p in m.labels),
        "as_of": as_of.isoformat(),
        "recertified_from": old.version,
        "trees_as_of": trees_as_of,
        "previous_threshold": old.threshold,
        "split": ", ".join(f"{k}={v}" for k, v in PARTS.items()),
        **{f"n_{k}": int(v) for k, v in fitted.data["part"].value_counts().items()},
        **config.model_dump(),
    }
    with logged_run(
        "model",
        f"recertify v{old.version or '?'} as_of={as_of}",
        calendar=context.calendar,
        as_of=as_of,
        digest=labelled.digest,
        tags={"recertified_from": old.version},
        params=params,
        model=old.meta,
    ) as run:
        validated = log_validation(fitted, context)
        progress("registering and judging by the promotion gates")
        judged = register_and_judge(
            fitted,
            labelled,
            validated,
            run,
            how="recertify",
            promote=promote,
            lineage={"recertified_from": old.version, "trees_as_of": trees_as_of},
            decision_prefix=f"recertified from v{old.version}: ",
        )
    move, info, metrics = judged.move, fitted.certificate, validated.metrics
    breach = validation_above_target(
        metrics, config.target_fpr, config.label_noise, info["cal_fpr_upper95"]
    )
    return RecertifyResult(
        run_id=run.info.run_id,
        version=judged.version,
        from_version=old.version,
        threshold=judged.model.threshold,
        previous_threshold=old.threshold,
        certified_fpr_upper=info["cal_fpr_upper95"],
        metrics=metrics,
        promoted=move.moved,
        decision=move.summary(),
        gates={k: str(v) for k, v in move.decision.gates.items()},
        warnings=(breach,) if breach else (),
    )


def _labelled(months: list[Month], window_days: int, context: RunContext) -> Labelled:
    """The months' labelled features; an audit's weighted labels are refused before any feature
    is built (recertify keeps the trees, so it has no persons to hold out from them)."""
    if not unit_weights(counted_label_files(list(months[-1].labels))[0]):
        raise WeightedLabelsError(
            f"{months[-1].labels[-1]}: `commuter recertify` keeps the trees and certifies on "
            "labels counted once each; to use an audit's weighted labels train on it: "
            "`commuter train --month` (the labelled month before) `--month` (the audited one)"
        )
    memory = context.settings.duckdb_memory
    return labelled_months(months, window_days, False, memory, context.calendar)
