"""The training job: build the labelled data, run the pure core in the run shell, register, promote.

The work itself is pure and lives in models/core/fitting.py (`fit_and_evaluate(data, config)`:
model, metrics, gate outcomes and baseline, no MLflow). This module records it through the run
shell every job shares (models/runs/shell.py):
  1. one MLflow run of kind `model`: every config value as params (and config.toml), the data
     digest, metrics, slices, figures, the validation persons the gates compare on, the card;
  2. with `--tune N`, N nested runs of kind `trial` before the fit (models/core/tuning.py);
  3. a registered version with a description and tags (models/reporting/card.py, contract §4);
  4. the promotion decision, serialised with any other training (models/runs/promotion.py);
  5. a separate run of kind `baseline` for the rule the model must beat.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd

from commuter_badge.features.build import memory_cap
from commuter_badge.features.context import RunContext
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core import tuning
from commuter_badge.models.core.config import TrainConfig, to_toml
from commuter_badge.models.core.data import Labelled
from commuter_badge.models.core.fitting import (  # noqa: F401  (the names callers import from here)
    BASELINE_FEATURE,
    COPY_PART,
    Fitted,
    baseline_score,
    baseline_threshold,
    fit_and_evaluate,
    fit_booster,
    fit_model,
    noise_floor_warning,
    split,
)
from commuter_badge.models.core.gates import Outcome, validation_above_target
from commuter_badge.models.core.months import (
    Month,
    check_months,
    labelled_months,
    months_params,
    single_month,
    uncertified_warning,
)
from commuter_badge.models.reporting.report import log_review
from commuter_badge.models.runs.shell import (
    RunInput,
    log_validation,
    logged_run,
    open_store,
    register_and_judge,
)
from commuter_badge.stages import stage

log = logging.getLogger(__name__)


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
    gates: dict[str, Outcome] = field(default_factory=dict)
    decision: str = ""  # promoted, or why not, in words
    labels_without_trips: int = 0
    labels_without_trips_share: float = 0.0
    warnings: tuple[str, ...] = ()
    tuned: dict = field(default_factory=dict)
    labels_from_reviews: int = 0
    labels_by_file: tuple[tuple[str, int], ...] = ()
    certificate: str = ""  # in words: the bound, which month and how many persons certify it


def _log_trial(number: int, params: dict, value: float, seconds: float, rounds: int) -> None:
    with mlflow.start_run(run_name=f"trial {number}", nested=True):
        mlflow.set_tag("kind", "trial")
        mlflow.log_params(params)
        mlflow.log_metrics(
            {"early_stop_recall_at_target": value, "trial_seconds": seconds, "rounds": rounds}
        )


def train(
    trips: str | Path,
    labels: str | Path | list,
    as_of: dt.date,
    config: TrainConfig | None = None,
    progress: Callable[[str], None] = lambda _: None,
    *,
    promote: bool = True,
    tune: int = 0,
    config_source: str = "",
    context: RunContext | None = None,
) -> TrainResult:
    """Train, log, register and (through the gates, unless promote=False) promote."""
    return train_months(
        [single_month(trips, labels, as_of)],
        config,
        progress,
        promote=promote,
        tune=tune,
        config_source=config_source,
        context=context,
    )


def train_months(
    months: list[Month],
    config: TrainConfig | None = None,
    progress: Callable[[str], None] = lambda _: None,
    *,
    promote: bool = True,
    tune: int = 0,
    config_source: str = "",
    context: RunContext | None = None,
) -> TrainResult:
    """`train` on several labelled months (models/core/months.py), the newest certifying."""
    config = config or TrainConfig()
    context = context or RunContext.defaults()
    months = check_months(months, "train")  # before MLflow, LightGBM or any feature
    open_store(context, registered_model=True)
    copies = config.copy_weight > 0
    progress("checking coverage and building features" + (" and weekday copies" if copies else ""))
    memory = context.settings.duckdb_memory
    with stage("features"):
        labelled = labelled_months(months, config.window_days, copies, memory, context.calendar)
    as_of = labelled.as_of
    with stage("split"):
        frame = split(labelled, config)
    trips = months[-1].trips if len(months) == 1 else "; ".join(str(m.trips) for m in months)
    label_paths = [p for m in months for p in m.labels]
    params = _run_params(trips, label_paths, labelled, frame, tune, config_source)
    params["duckdb_memory_cap"] = memory_cap(memory)  # features were built under this cap
    with logged_run(
        "model",
        f"lightgbm as_of={as_of}",
        calendar=context.calendar,
        as_of=as_of,
        digest=labelled.digest,
        # The working-day calendar the features used, as params too (tags come with the shell).
        params={**context.calendar.params(), **params, **months_params(labelled.months)},
        inputs=[_training_input(frame, labelled.months[-1]["trips"], as_of)],
    ) as run:
        mlflow.log_dict(list(labelled.months), "months.json")
        config, tuned = _tune(frame, config, tune, progress)
        mlflow.log_params(config.model_dump())  # every value the model depends on
        mlflow.log_text(to_toml(config), "config.toml")
        progress("fitting LightGBM")
        fitted = fit_and_evaluate(labelled, config, frame)
        progress("evaluating on validation")
        with stage("validation artifacts"):
            validated = log_validation(fitted, context)
            gains = fitted.model.booster.feature_importance("gain")
            importance = dict(zip(FEATURE_NAMES, map(float, gains), strict=True))
            mlflow.log_dict(importance, "feature_importance.json")
        progress("registering and judging by the promotion gates")
        judged = register_and_judge(
            fitted, labelled, validated, run, how="train", promote=promote, drivers=True
        )
    progress("rule baseline")
    with stage("baseline run"):
        baseline_run = _log_baseline(fitted, labelled)
        with mlflow.start_run(run_id=run.info.run_id):
            mlflow.log_metrics(
                {
                    f"baseline_{k}": v
                    for k, v in fitted.baseline.metrics.items()
                    if k in ("val_recall", "val_fpr", "val_fpr_upper95")
                }
            )
    return _result(run.info.run_id, baseline_run, fitted, labelled, validated, judged, tuned)


def _run_params(trips, label_paths, labelled: Labelled, frame, tune: int, source: str) -> dict:
    """The training run's params beside the config: inputs, sizes, label bookkeeping."""
    sizes = frame["part"].value_counts().to_dict()
    return {
        "as_of": labelled.as_of.isoformat(),
        "trips": str(trips),
        "labels": ",".join(map(str, label_paths)),
        "config_source": source or "defaults",
        "n_features": len(FEATURE_NAMES),
        "input_digest_sha256": labelled.digest,
        **{f"n_{k}": int(v) for k, v in sizes.items()},
        "labels_without_trips": labelled.labels_without_trips,
        "labels_without_trips_share": round(labelled.labels_without_trips_share, 6),
        "persons_without_label": labelled.persons_without_label,
        "labels_from_reviews": labelled.labels_from_reviews,  # reviews exported as labels
        "labels_by_file": ", ".join(f"{Path(f).name}={n}" for f, n in labelled.labels_by_file)[
            :500
        ],
        "tune_trials": tune,
    }


def _training_input(frame: pd.DataFrame, trips, as_of: dt.date) -> RunInput:
    """The labelled persons the model saw (weekday copies left out), as the run's dataset."""
    columns = ["person_id", *FEATURE_NAMES, "is_commuter"]
    persons = frame.loc[frame["part"] != COPY_PART, columns].astype(
        {"person_id": "object", **dict.fromkeys(FEATURE_NAMES, "float64")}
    )
    return RunInput(persons, trips, f"trips-features-{as_of}", "training")


def _tune(frame, config: TrainConfig, trials: int, progress) -> tuple[TrainConfig, dict]:
    """With `--tune N`, N nested trial runs and the config updated with the best; else as given."""
    if not trials:
        return config, {}
    progress(f"tuning ({trials} trials on fit + early-stopping persons)")
    tuned, best = tuning.tune(frame, config, trials, fit_booster, on_trial=_log_trial)
    mlflow.log_metric("tune_best_early_stop_recall", best)
    mlflow.log_dict(tuned, "tuned_params.json")
    return config.model_copy(update=tuned), tuned


def _result(
    run_id, baseline_run, fitted: Fitted, labelled, validated, judged, tuned
) -> TrainResult:
    config, info, metrics = fitted.config, fitted.certificate, validated.metrics
    warnings = (
        *labelled.warnings,
        uncertified_warning(info, fitted.as_of, config, judged.version),
        noise_floor_warning(fitted.data, config, info),
        validation_above_target(
            metrics, config.target_fpr, config.label_noise, info["cal_fpr_upper95"]
        ),
    )
    move = judged.move
    return TrainResult(
        run_id=run_id,
        baseline_run_id=baseline_run,
        version=judged.version,
        threshold=judged.model.threshold,
        certified_fpr_upper=info["cal_fpr_upper95"],
        metrics=metrics,
        baseline_metrics=fitted.baseline.metrics,
        promoted=move.moved,
        gates=dict(move.decision.gates),
        decision=move.summary(),
        labels_without_trips=labelled.labels_without_trips,
        labels_without_trips_share=labelled.labels_without_trips_share,
        warnings=tuple(w for w in warnings if w),
        tuned=tuned,
        labels_from_reviews=labelled.labels_from_reviews,
        labels_by_file=labelled.labels_by_file,
        certificate=judged.tags["certificate"],
    )


def _log_baseline(fitted: Fitted, labelled: Labelled) -> str:
    b, config = fitted.baseline, fitted.config
    with logged_run(
        "baseline",
        f"rule baseline as_of={fitted.as_of}",
        calendar=labelled.calendar,
        as_of=fitted.as_of,
        digest=labelled.digest,
        tags={"rule": f"{BASELINE_FEATURE} >= {b.k}"},
        params={
            "rule": "entered in the morning on at least K working days",
            "K": b.k,
            "target_fpr": config.target_fpr,
            "seed": config.seed,
        },
    ) as run:
        mlflow.log_metric("cal_fpr_upper95", b.certificate["cal_fpr_upper95"])
        log_review("val_", b.val, b.threshold, config.target_fpr, certificate=b.certificate)
    return run.info.run_id
